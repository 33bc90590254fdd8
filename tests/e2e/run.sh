#!/bin/sh
# ctest entry of the browser tests (e2e.demo): installs playwright-core and prebid.js from
# package-lock.json once (no browser download: Debian's chromium is used), then runs the tests
# (demo.test.js: the publisher tag; prebid.test.js: Prebid.js s2s) with node's runner.
# Exits 77 (skipped) when Node.js or Chromium is missing (run scripts/setup.sh).
set -eu
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "e2e: node is not installed: skipped"; exit 77; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "e2e: chromium is not installed: skipped"; exit 77; }
if [ ! -d node_modules/playwright-core ] || [ ! -f node_modules/prebid.js/dist/not-for-prod/prebid.js ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-reporter=spec demo.test.js prebid.test.js
