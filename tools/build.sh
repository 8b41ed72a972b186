#!/usr/bin/env bash
# Configures and builds one preset (release by default; `debug` = ASan + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
bash tools/bootstrap.sh
[ -f "build/$preset/build.ninja" ] || cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -- -j"$(nproc)"
