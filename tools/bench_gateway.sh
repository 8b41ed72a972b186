#!/usr/bin/env bash
# The gateway alone, side by side with nginx, over HTTPS keep-alive on this machine: tiergate with
# its stand-in engine (fixed tokens at no cost, QoS queue and engine hand-offs included) answering
# POST /v1/completions, and nginx terminating TLS for a static response of the same size.
#   1. saturation: wrk (one thread, closed loop) drives each; requests/s and their ratio.
#   2. half load: tools/http_load (open loop, wrk2's method) sends at a constant rate of half
#      tiergate's saturated requests/s to each; p50/p99 latency from each request's scheduled send
#      time, and tiergate's added latency = its percentile minus nginx's at the same rate.
# Loopback only; bounded runs.
#   bash tools/bench_gateway.sh [seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
for p in wrk nginx-light; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null; break; }
done
bash tools/build.sh release >/dev/null
tiergate="${TIERGATE_BIN:-./build/release/gateway/tiergate}"  # TIERGATE_BIN: another build to compare
load=./build/release/tools/http_load/http-load
model=$(bash tools/fetch_model.sh)
dir=$(mktemp -d /tmp/tg-bench.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$dir" -c "$dir/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$dir"' EXIT
key=$("$tiergate" keys add --all-users --state-dir "$dir" 2>/dev/null)
"$tiergate" serve "$model" --state-dir "$dir" --port 18543 --http-threads 1 \
  --stand-in-engine 16 >"$dir/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sk https://127.0.0.1:18543/health >/dev/null 2>&1 && break; sleep 0.1; done
body='{"prompt": "Hello there", "max_tokens": 16, "user": "user_id4"}'
reply=$(curl -sk https://127.0.0.1:18543/v1/completions -H "Authorization: Bearer $key" -d "$body")
case "$reply" in *'"choices"'*) ;; *) echo "bench_gateway: tiergate did not answer with a completion: $reply" >&2; exit 1 ;; esac
mkdir -p "$dir/logs"
cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
error_log $dir/logs/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  server {
    listen 127.0.0.1:18544 ssl;
    ssl_certificate $dir/tls/cert.pem;
    ssl_certificate_key $dir/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type application/json; return 200 '$reply'; }
  }
}
NGINX
nginx -p "$dir" -c "$dir/nginx.conf"
cat >"$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
run() {  # url connections -> "rps p50_ms p99_ms"
  wrk -t1 -c"$2" -d"${seconds}s" --latency -s "$dir/post.lua" "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 } / 50%/ { p50 = ms($2) } / 99%/ { p99 = ms($2) }
    END { printf "%.0f %.3f %.3f", rps, p50, p99 }'
}
half_load() {  # url rate -> "p50_ms p99_ms p999_ms"
  "$load" "$1" --rate "$2" --connections "$connections" --seconds "$seconds" --body "$body" \
    --header "Content-Type: application/json" --header "Authorization: Bearer $key" |
    tr ' ' '\n' | awk -F= '{ v[$1] = $2 } END { printf "%s %s %s", v["p50_ms"], v["p99_ms"], v["p999_ms"] }'
}
read -r t_rps t_p50 t_p99 <<<"$(run https://127.0.0.1:18543/v1/completions "$connections")"
read -r n_rps n_p50 n_p99 <<<"$(run https://127.0.0.1:18544/v1/completions "$connections")"
rate=$((t_rps / 2))
read -r th_p50 th_p99 th_p999 <<<"$(half_load https://127.0.0.1:18543/v1/completions "$rate")"
read -r nh_p50 nh_p99 nh_p999 <<<"$(half_load https://127.0.0.1:18544/v1/completions "$rate")"
echo "response: ${#reply} bytes of JSON; HTTPS keep-alive, $connections connections, ${seconds}s per run"
printf "%-44s %12s %10s %10s %10s\n" "" "requests/s" "p50_ms" "p99_ms" "p99.9_ms"
printf "%-44s %12s %10s %10s %10s\n" "tiergate, saturation (wrk)" "$t_rps" "$t_p50" "$t_p99" "-"
printf "%-44s %12s %10s %10s %10s\n" "nginx,    saturation (wrk)" "$n_rps" "$n_p50" "$n_p99" "-"
printf "%-44s %12s %10s %10s %10s\n" "tiergate, half load (http-load, open loop)" "$rate" "$th_p50" "$th_p99" "$th_p999"
printf "%-44s %12s %10s %10s %10s\n" "nginx,    half load (http-load, open loop)" "$rate" "$nh_p50" "$nh_p99" "$nh_p999"
awk -v a="$t_rps" -v b="$n_rps" -v c="$th_p50" -v d="$nh_p50" -v e="$th_p99" -v f="$nh_p99" 'BEGIN {
  printf "throughput ratio tiergate/nginx: %.2f; added latency at half load: p50 %.3f ms, p99 %.3f ms\n",
         a / b, c - d, e - f }'
