#!/usr/bin/env bash
# ctest entry for the integration tests: pytest from the project's venv (tools/test.sh creates it
# with the `openai` client), against the freshly built binary and the model TIERGATE_MODEL names
# (default: the one tools/fetch_model.sh fetches). Without the model this run is reported as
# skipped (ctest matches "integration: SKIPPED"), or fails where the model is required: CI=true,
# or TIERGATE_REQUIRE_MODEL=1 as tools/test.sh sets.
#   run.sh path/to/tiergate [pytest arguments; default: every test under tests/integration]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "integration: $python missing; run tools/test.sh (it creates the venv with openai and pytest)" >&2
  exit 1
fi
export TIERGATE_BINARY="${1:?usage: run.sh path/to/tiergate [pytest arguments (default: tests/integration)]}"
shift
export TIERGATE_MODEL="${TIERGATE_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ ! -f "$TIERGATE_MODEL" ]; then
  if [ "${CI:-}" = "true" ] || { [ -n "${TIERGATE_REQUIRE_MODEL:-}" ] && [ "$TIERGATE_REQUIRE_MODEL" != 0 ]; }; then
    echo "integration: model not found at $TIERGATE_MODEL (run tools/fetch_model.sh); CI=true or TIERGATE_REQUIRE_MODEL requires it" >&2
    exit 1
  fi
  echo "integration: SKIPPED: model not found at $TIERGATE_MODEL (run tools/fetch_model.sh)"
  exit 0
fi
cd "$root"
if [ $# -eq 0 ]; then set -- tests/integration; fi
exec "$python" -m pytest -q -p no:cacheprovider "$@"
