#!/usr/bin/env bash
# Cross-compiles the kernel and engine tests for AArch64 (tests/aarch64) and runs them under
# qemu-user: every CPU kernel level of that architecture (scalar, neon, neon-dotprod) against the
# scalar reference, and the engine (greedy output against llama.cpp's fixtures) on NEON.
# Correctness, not speed. Run by ctest as aarch64_qemu_tests; extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "aarch64_tests: $tool missing: run bash tools/bootstrap.sh" >&2; exit 1; }
done
build=build/aarch64
# A forced level names an x86 level when the native suite runs with one; AArch64 picks its own.
unset TIERGATE_CPU_ISA
[ -f "$build/build.ninja" ] || cmake -S tests/aarch64 -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" >/dev/null
cmake --build "$build" -- -j"${AARCH64_JOBS:-2}"
# Under emulation the model runs ~50x slower than natively, so by default the tests that run the
# whole model (Engine.*, which do not depend on the instruction set, and GreedyReference.*, ~10
# minutes emulated) are left out of the suite: every kernel level is checked bit for bit against
# the scalar level, which the native suite checks against llama.cpp's logits, and the engine's
# GGUF, tokenizer and sampler tests run on AArch64. `bash tools/aarch64_tests.sh -R .` runs
# everything.
if (($# == 0)); then set -- -E '^Engine\.|^GreedyReference\.(FreeRunning|BatchInvariance|TeacherForced)'; fi
ctest --test-dir "$build" --output-on-failure -j"${AARCH64_JOBS:-2}" "$@"
