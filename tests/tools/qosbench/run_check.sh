#!/usr/bin/env bash
# ctest entry for one qosbench scenario's short version: the real server over HTTPS on 127.0.0.1,
# QoS then FCFS with identical load, the scenario's check targets as the exit code.
#   run_check.sh TIERGATE QOS_SIM SCENARIO OUT_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "qosbench: $python missing; run tools/test.sh (tools/python_env.sh creates the venv)" >&2
  exit 1
fi
cd "$root"
exec "$python" tools/qosbench/qosbench.py "tools/workloads/qosbench_$3.json" --check --binary "$1" --qos-sim "$2" \
  --out "$4/$3-check"
