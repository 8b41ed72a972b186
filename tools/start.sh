#!/usr/bin/env bash
# Builds tiergate, fetches the embedded default model, checks the QoS config and starts the HTTPS
# server on https://127.0.0.1:8443 (extra arguments go to `tiergate serve`, e.g. --port 9000).
# On the first run it creates an admin API key, prints it once and stores only its hash.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh release >/dev/null
model=$(bash tools/fetch_model.sh)
./build/release/gateway/tiergate qos check config/qos_config.json >/dev/null
if [ ! -s state/api_keys.json ]; then
  key=$(./build/release/gateway/tiergate keys add --all-users --admin --name first-admin 2>/dev/null)
  echo "tiergate: first run: admin API key (shown once, stored hashed in state/api_keys.json): $key"
fi
exec ./build/release/gateway/tiergate serve "$model" "$@"
