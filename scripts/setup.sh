#!/usr/bin/env bash
# Installs everything AdPlatform needs to build, run and test, from Debian 12 packages.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config clang libclang-rt-14-dev git
  # libraries (linked by pkg-config)
  libsqlite3-dev libsodium-dev libjansson-dev liburcu-dev liburing-dev libcmocka-dev
  libcurl4-openssl-dev
  # request context: geo (libmaxminddb; tor-geoipdb's country data, converted at start-up),
  # User-Agent rules (uap-core's regexes.yaml, libyaml, PCRE2), zlib (gzip, demo images)
  libmaxminddb-dev tor-geoipdb uap-core libyaml-dev libpcre2-dev zlib1g-dev
  # tests and benchmarks
  python3 curl ca-certificates nginx-light wrk
  # browser tests (tests/e2e: Playwright drives Debian's Chromium)
  nodejs chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Some nodejs builds bundle npm (and conflict with Debian's npm package): add it only if absent.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx-light's package starts a system nginx on port 80; we only use its binary.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
$SUDO pkill -x nginx 2>/dev/null || true
