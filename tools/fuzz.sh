#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for a while, longer than the test suite's bounded runs:
#   bash tools/fuzz.sh [seconds per target = 60] [target ...]
# Builds the `sanitize` preset (clang, ASan + UBSan); each target starts from its committed seeds
# (tests/fuzz/corpus/<target>) and keeps what it finds in build/sanitize/fuzz/corpus/<target>, so a
# second run goes on from there. A crash is written to build/sanitize/fuzz/crashes/; add it to the
# seed corpus (it then replays in every test run) once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(qos_config_fuzz api_keys_fuzz request_body_fuzz tokenizer_fuzz gguf_fuzz http_request_fuzz constraint_fuzz)
bash tools/bootstrap.sh
bash tools/fetch_model.sh >/dev/null  # the tokenizer and HTTP targets load the default model
[ -f build/sanitize/build.ninja ] || cmake --preset sanitize >/dev/null
cmake --build --preset sanitize --target "${targets[@]}" -- -j"$(nproc)"
out=build/sanitize/fuzz
mkdir -p "$out/crashes"
echo "tools/fuzz.sh: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), ${seconds}s per target"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t"
  dict="tests/fuzz/dictionaries/${t%_fuzz}.dict"
  args=(-max_total_time="$seconds" -max_len=65536 -timeout=60 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$out/crashes/$t-")
  [ -f "$dict" ] && args+=(-dict="$dict")
  log="$out/$t.log"
  status=0
  seeds="tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || seeds="build/sanitize/tests/fuzz/corpus/$t"  # generated seeds (the GGUF one)
  "build/sanitize/tests/fuzz/$t" "${args[@]}" "$out/corpus/$t" "$seeds" >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  printf '%-20s %10s runs %8s/s  coverage %6s  corpus %5s  %s\n' "$t" "$runs" "$rate" "$cov" \
    "$(ls "$out/corpus/$t" | wc -l)" "$([ $status -eq 0 ] && echo ok || echo "FAILED (see $log)")"
  [ $status -eq 0 ] || failed=1
done
exit $failed
