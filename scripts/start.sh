#!/usr/bin/env bash
# Quick start: install what is needed, build, load the demo data on embedded storage (./data)
# and run AdPlatform in the foreground. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# the dashboard (web/dist, served by the control plane at http://127.0.0.1:8081/)
(cd web && { [ -d node_modules/vite ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build)
DATA_DIR=${ADPLATFORM_DATA_DIR:-./data}
mkdir -p "$DATA_DIR"
./build/adplatform demo --data-dir "$DATA_DIR"
if [ ! -f "$DATA_DIR/admin-credentials.json" ]; then
  # first run: an administrator for the API and CLI (shown once, kept in the data dir, 0600)
  (umask 077; ./build/adplatform admin create --data-dir "$DATA_DIR" --email admin@example.com \
     --json > "$DATA_DIR/admin-credentials.json")
fi
echo
echo "Administrator (also in $DATA_DIR/admin-credentials.json):"
cat "$DATA_DIR/admin-credentials.json"
echo
echo "Demo publisher page: http://127.0.0.1:8080/demo"
echo "Dashboard: http://127.0.0.1:8081/ (log in with the e-mail and password above)"
echo "CLI: ADPLATFORM_API_KEY=<api_key above> ./build/adplatform campaign list"
exec ./build/adplatform serve --data-dir "$DATA_DIR" "$@"
