#!/usr/bin/env bash
# Starts a throwaway redis-server on a free loopback port (no persistence), runs bench-fleet-store
# against it and stops it. Usage: bash tools/bench_fleet_store.sh [path/to/bench-fleet-store]
set -euo pipefail
cd "$(dirname "$0")/.."
bench="${1:-build/release/tools/bench-fleet-store}"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --logfile /dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "redis: $(redis-server --version | cut -d' ' -f1-3)"
"$bench" "redis://127.0.0.1:$port/0"
