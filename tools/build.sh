#!/usr/bin/env bash
# Configures and builds one preset (release by default; `debug` = ASan + UBSan with GCC;
# `sanitize` = clang ASan + UBSan + libFuzzer; `tsan` = clang ThreadSanitizer).
#   bash tools/build.sh [preset] [target ...]    (no targets: everything)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
bash tools/bootstrap.sh
# ccache rewrites paths under the checkout to relative ones, so that a fresh clone in another folder
# (CI's) hits the cache that this machine's earlier builds filled; the sanitizer presets' debug
# line tables would otherwise put the build folder in every hash.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
[ -f "build/$preset/build.ninja" ] || cmake --preset "$preset" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build --preset "$preset" "${targets[@]}" -- -j"$(nproc)"
