#!/usr/bin/env bash
# Builds the release binary into build/adplatform (gcc, warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAP_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
