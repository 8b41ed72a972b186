#!/usr/bin/env bash
# A bounded soak run of the real server on loopback (tools/soak.py): a mixed workload at twice the
# engine's batch for a fixed time; prints the machine, statuses, RSS and fd figures and checks them.
#   bash tools/soak.sh [minutes=10] [soak.py flags, e.g. --max-num-seqs 8 --concurrency 16]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
shift || true
bash tools/build.sh release >/dev/null
model=$(bash tools/fetch_model.sh)
exec python3 tools/soak.py --model "$model" --minutes "$minutes" "$@"
