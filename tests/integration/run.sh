#!/usr/bin/env bash
# ctest entry for the integration tests: pytest from the project's venv (tools/test.sh creates it
# with the `openai` client), against the freshly built binary.
#   run.sh path/to/tiergate [pytest arguments; default: every test under tests/integration]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "integration: $python missing; run tools/test.sh (it creates the venv with openai and pytest)" >&2
  exit 1
fi
export TIERGATE_BINARY="${1:?usage: run.sh path/to/tiergate}"
cd "$root"
shift
[ $# -gt 0 ] || set -- tests/integration
exec "$python" -m pytest -q -p no:cacheprovider "$@"
