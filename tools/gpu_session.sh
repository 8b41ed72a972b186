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
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
out="${OUT:-/tmp/gpu-out}"
mkdir -p "$out"

device_env() {
  export LD_LIBRARY_PATH="$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}"
  # Test binaries find their fixtures under the source path they were built in.
  if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$PWD" /work/main; fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
}

case "$mode" in
  pack)
    bash tools/build.sh release >/dev/null
    rm -rf .gpu .gpu-model-a .gpu-model-b .gpu-model-c
    mkdir -p .gpu/bin .gpu/lib .gpu-model-a .gpu-model-b .gpu-model-c
    for b in tests/kernels/kernels_cuda_tests tests/kernels/kernels_cuda_ops_tests \
             tests/kernels/kernels_cuda_attention_tests tests/engine/engine_cuda_tests \
             tools/bench_decode_attention tools/bench_gpu_decode gateway/tiergate; do
      cp "build/release/$b" .gpu/bin/ && strip .gpu/bin/"$(basename "$b")"
    done
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
    for t in kernels_cuda_tests kernels_cuda_ops_tests kernels_cuda_attention_tests; do
      .gpu/bin/$t 2>&1 | tee "$out/$t.log" | tail -3
    done
    compute-sanitizer --tool memcheck --error-exitcode 9 .gpu/bin/kernels_cuda_attention_tests \
      --gtest_filter='*Decode*:*Append*' >"$out/memcheck.log" 2>&1 && echo "memcheck: clean" || tail -20 "$out/memcheck.log"
    .gpu/bin/bench_decode_attention 2>&1 | tee "$out/bench_decode_attention.txt"
    ;;
  model-part)
    cp ".gpu-model-${2:?a or b}/part" "/tmp/tg-model-part.$2"
    ls -la /tmp/tg-model-part.*
    ;;
  engine)
    device_env
    cp .gpu-model-c/part /tmp/tg-model-part.c
    cat /tmp/tg-model-part.a /tmp/tg-model-part.b /tmp/tg-model-part.c >/tmp/model.gguf
    [ "$(sha256sum /tmp/model.gguf | cut -d' ' -f1)" = "$(cat .gpu/model.sha256)" ] || { echo "model parts do not match"; exit 1; }
    export TIERGATE_MODEL=/tmp/model.gguf
    .gpu/bin/engine_cuda_tests 2>&1 | tee "$out/engine_cuda_tests.log" | tail -5
    .gpu/bin/tiergate bench-engine --model /tmp/model.gguf --device cuda --batch 1,16,64,256 | tee "$out/bench_engine_gpu.txt"
    .gpu/bin/tiergate bench-engine --model /tmp/model.gguf --device cuda --cuda-graphs --batch 1,16,64,256 |
      tee -a "$out/bench_engine_gpu.txt"
    python3 tools/bench_gpu_vs_hf.py --binary .gpu/bin/bench_gpu_decode | tee "$out/bench_gpu_vs_hf.txt"
    ;;
  *)
    sed -n 2,12p "$0"
    exit 2
    ;;
esac
