#!/usr/bin/env bash
# Cross-compiles the kernel and engine tests for AArch64 (tests/aarch64) and runs them under
# qemu-user: every CPU kernel level of that architecture (scalar, neon, neon-dotprod) against the
# scalar reference, and the engine (greedy output equal to llama.cpp's fixtures) on NEON.
# Correctness, not speed. Run by ctest as aarch64_qemu_tests; extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "aarch64_tests: $tool missing: run bash tools/bootstrap.sh" >&2; exit 1; }
done
build=build/aarch64
[ -f "$build/build.ninja" ] || cmake -S tests/aarch64 -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" >/dev/null
cmake --build "$build" -- -j"${AARCH64_JOBS:-2}"
# The engine tests' slowest cases run the model; under emulation they take minutes, so the NEON
# level (the one an AArch64 CPU would pick) carries them and the kernel tests cover every level.
ctest --test-dir "$build" --output-on-failure -j"${AARCH64_JOBS:-2}" "$@"
