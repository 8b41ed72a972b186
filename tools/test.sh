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
bash tools/bootstrap.sh browser      # headless chromium for the dashboard's browser test
export TIERGATE_REQUIRE_MODEL=1       # a missing model (e.g. a wrong TIERGATE_MODEL) fails the run, not skips it
# ctest's own closing lines end with the list of skipped GPU tests where no GPU is usable; its
# summary line is repeated last so that it is what a reader of the log's tail sees.
status=0
ctest --preset "$preset" -j"$(nproc)" "$@" 2>&1 | tee "build/$preset/ctest.log" || status=$?
summary=$(grep -E '[0-9]+% tests passed' "build/$preset/ctest.log" | tail -1 || true)
echo "tiergate: ${summary:-ctest printed no summary}; $(grep -c '(Skipped)' "build/$preset/ctest.log" || true) skipped (GPU tests where no GPU is usable)"
exit "$status"
