#include "kernels/cuda/batch_ops.h"

#include "kernels/cuda/launch_status.cuh"
#include "kernels/mix64.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <type_traits>
#include <string>

namespace tiergate::kernels::cuda {
namespace {

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

__global__ void gather_rows_kernel(const float* __restrict__ x, const std::int32_t* __restrict__ rows,
                                   std::size_t n, float* __restrict__ out) {
  const float* src = x + static_cast<std::size_t>(rows[blockIdx.x]) * n;
  float* dst = out + static_cast<std::size_t>(blockIdx.x) * n;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// One CTA per row; (value, index) pairs reduced so that the larger value, then the lower index, wins.
__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

constexpr int kArgmaxThreads = 256;

__global__ void argmax_rows_kernel(const float* __restrict__ logits, std::size_t n, std::int32_t* __restrict__ out) {
  const float* row = logits + static_cast<std::size_t>(blockIdx.x) * n;
  // -inf, not -FLT_MAX: a row whose only numbers are -inf answers the first of them, not index
  // 0 when that is a NaN.
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (std::size_t i = threadIdx.x; i < n; i += kArgmaxThreads) {
    const float v = row[i];
    if (v == v) better(best, best_i, v, static_cast<int>(i));  // NaN compares false: skipped
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, best, offset);
    const int oi = __shfl_down_sync(0xffffffffu, best_i, offset);
    better(best, best_i, ov, oi);
  }
  __shared__ float warp_best[kArgmaxThreads / 32];
  __shared__ int warp_index[kArgmaxThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_index[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) better(best, best_i, warp_best[w], warp_index[w]);
    out[blockIdx.x] = best_i == 0x7fffffff ? 0 : best_i;  // an all-NaN row answers 0
  }
}

template <class T>
__global__ void fill_uniform_kernel(T* out, std::size_t n, float lo, float span, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + i);
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 bits: [0, 1)
    const float v = fmaf(span, u, lo);  // one rounding, as the header states (a host can replay it)
    if constexpr (sizeof(T) == 4) {
      out[i] = v;
    } else if constexpr (std::is_same_v<T, __half>) {
      out[i] = __float2half_rn(v);
    } else {
      out[i] = __float2bfloat16_rn(v);
    }
  }
}

__global__ void fill_constant_kernel(float* out, std::size_t n, float value) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = value;
}

unsigned grid_for(std::size_t n) {
  const std::size_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? (blocks == 0 ? 1 : blocks) : 65536);
}

}  // namespace

Status gather_rows(const float* x, const std::int32_t* rows, std::size_t num_rows, std::size_t n, float* out,
                   void* stream) {
  if (num_rows == 0 || n == 0) return Status::success();
  if (num_rows > 0x7fffffffu) return Status::failure("gather_rows: num_rows " + std::to_string(num_rows) + " too large");
  gather_rows_kernel<<<static_cast<unsigned>(num_rows), 256, 0, as_stream(stream)>>>(x, rows, n, out);
  return detail::launch_status("gather_rows");
}

Status argmax_rows(const float* logits, std::size_t rows, std::size_t n, std::int32_t* out, void* stream) {
  if (rows == 0) return Status::success();
  if (n == 0 || n > 0x7fffffffu) return Status::failure("argmax_rows: row length " + std::to_string(n) + " unsupported");
  if (rows > 0x7fffffffu) return Status::failure("argmax_rows: rows " + std::to_string(rows) + " too large");
  argmax_rows_kernel<<<static_cast<unsigned>(rows), kArgmaxThreads, 0, as_stream(stream)>>>(logits, n, out);
  return detail::launch_status("argmax_rows");
}

Status fill_uniform(DType type, void* out, std::size_t n, float lo, float hi, std::uint64_t seed, void* stream) {
  if (n == 0) return Status::success();
  const unsigned grid = grid_for(n);
  switch (type) {
    case DType::kF32:
      fill_uniform_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<float*>(out), n, lo, hi - lo, seed);
      break;
    case DType::kF16:
      fill_uniform_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<__half*>(out), n, lo, hi - lo, seed);
      break;
    case DType::kBF16:
      fill_uniform_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<__nv_bfloat16*>(out), n, lo, hi - lo, seed);
      break;
    default:
      return Status::failure("fill_uniform: type must be F32, F16 or BF16");
  }
  return detail::launch_status("fill_uniform");
}

Status fill_constant(float* out, std::size_t n, float value, void* stream) {
  if (n == 0) return Status::success();
  fill_constant_kernel<<<grid_for(n), 256, 0, as_stream(stream)>>>(out, n, value);
  return detail::launch_status("fill_constant");
}

}  // namespace tiergate::kernels::cuda
