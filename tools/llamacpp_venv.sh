#!/usr/bin/env bash
# A llama-cpp-python venv built from PyPI's source for one x86 level, the reference that
# tools/bench_engine_vs_llamacpp.py runs beside tiergate forced to the same level:
#   bash tools/llamacpp_venv.sh avx2      -> .cache/llama-avx2/bin/python
#   bash tools/llamacpp_venv.sh avx512    -> .cache/llama-avx512/bin/python   (with VNNI)
#   bash tools/llamacpp_venv.sh scalar    -> .cache/llama-scalar/bin/python   (SSE2 baseline, no AVX)
# Idempotent: a venv whose llama_cpp imports is left alone. The build takes ~10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
level="${1:?usage: tools/llamacpp_venv.sh scalar|avx2|avx512}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
common="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_AVX512_BF16=OFF"
case "$level" in
  scalar) flags="-DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF" ;;
  avx2) flags="-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF" ;;
  avx512) flags="-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX_VNNI=OFF" ;;
  *) echo "llamacpp_venv: unknown level '$level' (scalar, avx2 or avx512)" >&2; exit 2 ;;
esac
venv=".cache/llama-$level"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
  echo "$venv/bin/python"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy
CMAKE_ARGS="$common $flags" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-binary llama-cpp-python \
  "llama-cpp-python==$version" >&2
echo "$venv/bin/python"
