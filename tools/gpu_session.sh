#!/usr/bin/env bash
# The GPU session's runbook (issue: CUDA backend). The GPU machine has nvcc, PyTorch and
# transformers but none of our Debian dependencies (Boost, simdjson, GoogleTest, rapidcheck) and
# no network, and a device call carries at most 64 MiB. So binaries are built HERE and carried:
#
#   here:    bash tools/gpu_session.sh pack          # build release, fill .gpu/ (git-ignored)
#   device:  bash tools/gpu_session.sh kernels       # carry [".gpu"]: kernel tests, sanitizer, benchmarks
#   device:  bash tools/gpu_session.sh model-part a  # carry [".gpu-model-a"]: first third of the GGUF to /tmp
#   device:  bash tools/gpu_session.sh model-part b  # carry [".gpu-model-b"]: second third
#   device:  bash tools/gpu_session.sh engine        # carry [".gpu", ".gpu-model-c"]: last third, engine tests,
#                                                    #   bench-engine and the HF comparison
# The model (94 MiB) travels in three calls; the machine keeps /tmp only while warm (30 s between
# calls), so make the model calls back to back. Results land in $OUT.
#
# Device time is scarce, so a device mode never stops at a failure: it checks every binary's shared
# libraries (ldd) first, runs every part whatever the earlier ones did (a part whose binary lacks a
# library is skipped, not run), logs each part to $OUT/<part>.log, and ends with one summary
# ($OUT/summary.txt): PASS, FAIL, SKIP or NOTE (compute-sanitizer refused) per part. The exit status
# is 1 when any part failed, after the summary. A mode leaves at most 8 files in $OUT (what one
# device call brings back); scratch goes to /tmp.
set -uo pipefail  # no -e: one failing part must not cost the others their run
cd "$(dirname "$0")/.."
mode="${1:-}"
out="${OUT:-/tmp/gpu-out}"
mkdir -p "$out"

results=()  # "part|status|detail"
record() { results+=("$1|$2|$3"); }

summary() {
  local failed=0 line part status detail
  echo "== gpu_session $mode: summary" | tee "$out/summary.txt"
  for line in "${results[@]}"; do
    IFS='|' read -r part status detail <<<"$line"
    printf '%-34s %-16s %s\n' "$part" "$status" "$detail" | tee -a "$out/summary.txt"
    case "$status" in FAIL*) failed=1 ;; esac
  done
  return $failed
}

# GoogleTest's closing counts ("3 passed, 1 failed, 40 skipped"), or nothing for other programs.
gtest_counts() {
  local log=$1 passed failed skipped
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1)
  failed=$(grep -oE '^\[  FAILED  \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1)
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1)
  [ -n "$passed$failed$skipped" ] && echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
}

# run_part PART COMMAND...: runs it with its output in $OUT/PART.log and records the outcome.
run_part() {
  local part=$1 rc detail
  shift
  echo "== $part: $*"
  "$@" >"$out/$part.log" 2>&1
  rc=$?
  tail -n 4 "$out/$part.log"
  detail=$(gtest_counts "$out/$part.log")
  if [ "$rc" -eq 0 ]; then
    record "$part" PASS "${detail:-exit 0}"
  else
    record "$part" "FAIL (exit $rc)" "${detail:-see $part.log}"
  fi
}

# Binaries whose shared libraries all resolve; the others are recorded as failed parts.
usable=()
check_libraries() {
  local bin missing
  for bin in "$@"; do
    if [ ! -x ".gpu/bin/$bin" ]; then
      record "ldd $bin" FAIL "not in .gpu/bin (run pack)"
      continue
    fi
    missing=$(ldd ".gpu/bin/$bin" 2>&1 | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
    if [ -n "$missing" ]; then
      record "ldd $bin" FAIL "missing: $missing"
    else
      usable+=("$bin")
    fi
  done
  [ "${#usable[@]}" -eq "$#" ] && record "ldd (${#usable[@]} binaries)" PASS "every shared library found"
}
is_usable() {
  local b
  for b in "${usable[@]}"; do [ "$b" = "$1" ] && return 0; done
  return 1
}
# run_binary PART BINARY ARGS...: run_part when BINARY passed the library check, else SKIP.
run_binary() {
  local part=$1 bin=$2
  shift 2
  if is_usable "$bin"; then
    run_part "$part" ".gpu/bin/$bin" "$@"
  else
    record "$part" SKIP "$bin lacks shared libraries"
  fi
}

device_env() {
  export LD_LIBRARY_PATH="$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}"
  # cuBLAS comes from the device's own CUDA toolkit.
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
  done
  # Test binaries find their fixtures under the source path they were built in.
  local src
  src=$(cat .gpu/source_dir 2>/dev/null || echo /work/main)
  if [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
  if nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >/tmp/tg-gpu.txt 2>&1; then
    record "device" PASS "$(head -1 /tmp/tg-gpu.txt)"
  else
    record "device" "FAIL (nvidia-smi)" "$(head -1 /tmp/tg-gpu.txt)"
  fi
  cat /tmp/tg-gpu.txt
}

# compute-sanitizer over the decode and append tests: exit 9 is memory errors; any other failure
# (not installed, refused by the driver or the container) is noted and the session goes on.
memcheck() {
  if ! command -v compute-sanitizer >/dev/null 2>&1; then
    record memcheck NOTE "compute-sanitizer not installed"
    return
  fi
  if ! is_usable kernels_cuda_attention_tests; then
    record memcheck SKIP "kernels_cuda_attention_tests lacks shared libraries"
    return
  fi
  echo "== memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 9 .gpu/bin/kernels_cuda_attention_tests \
    --gtest_filter='*Decode*:*Append*' >"$out/memcheck.log" 2>&1
  local rc=$?
  tail -n 4 "$out/memcheck.log"
  case $rc in
    0) record memcheck PASS "no memory errors" ;;
    9) record memcheck "FAIL (errors)" "$(grep -c 'Invalid\|out of bounds' "$out/memcheck.log") reports, see memcheck.log" ;;
    *) record memcheck NOTE "refused or broken (exit $rc): $(grep -m1 -iE 'error|refused|not supported' "$out/memcheck.log")" ;;
  esac
}

case "$mode" in
  pack)
    set -e
    bash tools/build.sh release >/dev/null
    rm -rf .gpu .gpu-model-a .gpu-model-b .gpu-model-c
    mkdir -p .gpu/bin .gpu/lib .gpu-model-a .gpu-model-b .gpu-model-c
    for b in tests/kernels/kernels_cuda_tests tests/kernels/kernels_cuda_ops_tests \
             tests/kernels/kernels_cuda_attention_tests tests/kernels/kernels_cuda_planning_tests \
             tests/engine/engine_cuda_tests tests/engine/engine_cuda_plan_tests \
             tools/bench_decode_attention tools/bench_gpu_decode gateway/tiergate; do
      cp "build/release/$b" .gpu/bin/ && strip .gpu/bin/"$(basename "$b")"
    done
    pwd >.gpu/source_dir
    # Shared libraries of ours that the GPU image lacks (CUDA's own come from its toolkit).
    ldd .gpu/bin/* 2>/dev/null | awk '/=> \/(usr\/)?lib\/x86_64-linux-gnu\/lib(simdjson|spdlog|fmt)/ { print $3 }' |
      sort -u | xargs -r cp -t .gpu/lib
    model=$(bash tools/fetch_model.sh)
    split -n 3 -d "$model" /tmp/tg-model-part.
    mv /tmp/tg-model-part.00 .gpu-model-a/part
    mv /tmp/tg-model-part.01 .gpu-model-b/part
    mv /tmp/tg-model-part.02 .gpu-model-c/part
    sha256sum "$model" | cut -d' ' -f1 >.gpu/model.sha256
    du -sh .gpu .gpu-model-a .gpu-model-b .gpu-model-c
    ;;
  kernels)
    device_env
    check_libraries kernels_cuda_tests kernels_cuda_ops_tests kernels_cuda_attention_tests \
      kernels_cuda_planning_tests bench_decode_attention
    for t in kernels_cuda_tests kernels_cuda_ops_tests kernels_cuda_attention_tests kernels_cuda_planning_tests; do
      run_binary "$t" "$t"
    done
    memcheck
    run_binary bench_decode_attention bench_decode_attention
    summary
    ;;
  model-part)
    cp ".gpu-model-${2:?a or b}/part" "/tmp/tg-model-part.$2"
    ls -la /tmp/tg-model-part.*
    ;;
  engine)
    device_env
    check_libraries engine_cuda_tests engine_cuda_plan_tests tiergate bench_gpu_decode
    model_ok=0
    if cp .gpu-model-c/part /tmp/tg-model-part.c && cat /tmp/tg-model-part.a /tmp/tg-model-part.b /tmp/tg-model-part.c \
        >/tmp/model.gguf 2>/tmp/tg-model.log &&
        [ "$(sha256sum /tmp/model.gguf | cut -d' ' -f1)" = "$(cat .gpu/model.sha256)" ]; then
      model_ok=1
      export TIERGATE_MODEL=/tmp/model.gguf
      record model PASS "SHA-256 matches"
    else
      record model FAIL "parts missing or SHA-256 differs (model-part a and b first, back to back)"
    fi
    # Without the model the SmolLM2 tests skip (and say so); the dummy-shape ones still run.
    run_binary engine_cuda_tests engine_cuda_tests
    run_binary engine_cuda_plan_tests engine_cuda_plan_tests
    if [ "$model_ok" -eq 1 ]; then
      run_binary bench_engine tiergate bench-engine --model /tmp/model.gguf --device cuda --batch 1,16,64,256
      run_binary bench_engine_graphs tiergate bench-engine --model /tmp/model.gguf --device cuda --cuda-graphs \
        --batch 1,16,64,256
    else
      record bench_engine SKIP "no model"
      record bench_engine_graphs SKIP "no model"
    fi
    if is_usable bench_gpu_decode; then
      run_part bench_gpu_vs_hf python3 tools/bench_gpu_vs_hf.py --binary .gpu/bin/bench_gpu_decode
    else
      record bench_gpu_vs_hf SKIP "bench_gpu_decode lacks shared libraries"
    fi
    summary
    ;;
  *)
    sed -n 2,20p "$0"
    exit 2
    ;;
esac
