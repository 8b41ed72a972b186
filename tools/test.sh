#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what is missing, builds, runs ctest.
#   bash tools/test.sh            release build (what CI runs)
#   bash tools/test.sh debug      AddressSanitizer + UndefinedBehaviorSanitizer build
# Extra arguments go to ctest (e.g. -R Admission, -L gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="release"
if [ "${1:-}" = "release" ] || [ "${1:-}" = "debug" ]; then preset="$1"; shift; fi
bash tools/build.sh "$preset"
bash tools/fetch_model.sh >/dev/null  # the engine tests run the default GGUF
bash tools/python_env.sh              # the integration tests' client: the official openai package
ctest --preset "$preset" -j"$(nproc)" "$@"
