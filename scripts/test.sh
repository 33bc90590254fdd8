#!/usr/bin/env bash
# Runs every test, as CI does: install what is needed, then
#  1. style checks (banned functions);
#  2. gcc -O2 -Werror build: unit, integration and fuzz-corpus replay tests, the dashboard's
#     vitest tests (web.unit) and browser tests (e2e.*) (ctest);
#  3. clang ASan+UBSan build: unit and integration tests, corpus replay, and a short libFuzzer
#     run of each fuzz target (ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)
bash scripts/check-style.sh

echo "== gcc release build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAP_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 900

echo "== clang ASan+UBSan build =="
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAP_SANITIZE=ON -DAP_FUZZ=ON \
  -DAP_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 900 -L 'unit|integration|fuzz'
