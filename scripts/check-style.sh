#!/usr/bin/env bash
# Fails when a banned C function is called in src/ or tests/ (STYLE.md rule 15).
set -euo pipefail
cd "$(dirname "$0")/.."
banned='\b(gets|strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|alloca)[[:space:]]*\('
if grep -rnE "$banned" --include='*.c' --include='*.h' src tests | grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)'; then
  echo "check-style: banned functions used (see STYLE.md rule 15)" >&2
  exit 1
fi
echo "check-style: ok"
