#!/usr/bin/env bash
# Quick start: install what is needed, build, and run AdPlatform in the foreground on embedded
# storage (./data) with demo data. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
DATA_DIR=${ADPLATFORM_DATA_DIR:-./data}
mkdir -p "$DATA_DIR"
if ./build/adplatform help | grep -q '^  demo'; then
  ./build/adplatform demo --data-dir "$DATA_DIR"
fi
exec ./build/adplatform serve --data-dir "$DATA_DIR" "$@"
