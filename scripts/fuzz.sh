#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang and runs each
# for FUZZ_SECONDS (default 60). Crashes are written to build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
CC=clang BUILD_DIR=build-fuzz scripts/build.sh -DRT_FUZZ=ON -DCMAKE_C_COMPILER=clang
mkdir -p build-fuzz/crashes
for f in build-fuzz/fuzz/fuzz_*; do
  echo "=== $(basename "$f") for ${FUZZ_SECONDS:-60}s"
  "$f" -max_total_time="${FUZZ_SECONDS:-60}" -artifact_prefix=build-fuzz/crashes/ \
    -print_final_stats=1 2>&1 | tail -5
done
