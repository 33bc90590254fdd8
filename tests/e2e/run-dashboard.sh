#!/bin/sh
# ctest entry of the dashboard's browser test (e2e.dashboard): installs playwright-core (once)
# and the dashboard's packages (npm ci, once), builds the dashboard into web/dist, then runs
# dashboard.test.js and campaigns-10k.test.js (the 10,000-campaign list, ~25 s) with node's
# runner, one after the other. Exits 77 (skipped) when Node.js or Chromium is missing.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
web="$here/../../web"
command -v node >/dev/null 2>&1 || { echo "e2e: node is not installed: skipped"; exit 77; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "e2e: chromium is not installed: skipped"; exit 77; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d "$web/node_modules/vite" ]; then
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$web" && npm run --silent build >/dev/null)
cd "$here"
exec node --test --test-concurrency=1 --test-reporter=spec dashboard.test.js campaigns-10k.test.js
