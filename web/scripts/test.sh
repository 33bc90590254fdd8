#!/bin/sh
# ctest entry web.unit: installs the dashboard's packages from package-lock.json once (npm ci),
# then runs its vitest unit tests. Exits 77 (skipped) when Node.js is missing.
set -eu
cd "$(dirname "$0")/.."
command -v node >/dev/null 2>&1 || { echo "web: node is not installed: skipped"; exit 77; }
[ -d node_modules/vitest ] || npm ci --no-audit --no-fund --loglevel=error
exec npx vitest run
