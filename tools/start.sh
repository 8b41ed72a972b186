#!/usr/bin/env bash
# Builds tiergate and starts it. The HTTPS server arrives with the gateway issue; until then this
# checks the shipped QoS config the way the server will load it and replays the sample workloads
# through the admission queue in the QoS simulator, side by side with FCFS and LMDeploy's policy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh release
./build/release/gateway/tiergate qos check config/qos_config.json
for workload in tools/workloads/*.jsonl; do
  echo
  ./build/release/tools/qos_sim/qos-sim --config config/qos_config.json --workload "$workload"
done
