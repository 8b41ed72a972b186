#include "kernels/cuda/elementwise.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cuda/launch_status.cuh"

namespace tiergate::kernels::cuda {
namespace {

using detail::launch_status;

constexpr int kRmsThreads = 256;
constexpr int kThreads = 256;

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Grid for a grid-stride loop over n elements: enough blocks to fill any GPU, never too many.
unsigned grid_for(std::size_t n, int threads) {
  const std::size_t blocks = (n + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

// Sum over the block; every thread gets the result. scratch: [32] shared floats.
__device__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread
  return total;
}

// One block per row. Vec = float4 when rows are 16-byte aligned and n % 4 == 0, else float.
template <class Vec>
__global__ void __launch_bounds__(kRmsThreads) rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                                                float* out, std::size_t n, float eps) {
  __shared__ float scratch[32];
  constexpr int kWidth = sizeof(Vec) / sizeof(float);
  const std::size_t row = blockIdx.x;
  const Vec* xr = reinterpret_cast<const Vec*>(x + row * n);
  const std::size_t nv = n / kWidth;
  float sum = 0;
  for (std::size_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const Vec v = xr[i];
    const float* f = reinterpret_cast<const float*>(&v);
#pragma unroll
    for (int k = 0; k < kWidth; ++k) sum = fmaf(f[k], f[k], sum);
  }
  sum = block_sum(sum, scratch);
  // The CPU's float steps: mean in float, then 1 / sqrt (both correctly rounded here too).
  const float mean = __fdiv_rn(sum, static_cast<float>(n));
  const float scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
  const Vec* wr = reinterpret_cast<const Vec*>(weight);
  Vec* yr = reinterpret_cast<Vec*>(out + row * n);
  for (std::size_t i = threadIdx.x; i < nv; i += blockDim.x) {
    Vec v = xr[i];
    const Vec w = wr[i];
    float* f = reinterpret_cast<float*>(&v);
    const float* g = reinterpret_cast<const float*>(&w);
#pragma unroll
    for (int k = 0; k < kWidth; ++k) f[k] = __fmul_rn(__fmul_rn(f[k], scale), g[k]);
    yr[i] = v;
  }
}

// One block per token; thread i owns pair i of every head of the token.
__global__ void rope_kernel(float* x, const int* __restrict__ positions, std::size_t heads, std::size_t head_dim,
                            std::size_t rope_pairs, float theta_scale) {
  const std::size_t t = blockIdx.x;
  const float pos = static_cast<float>(positions[t]);
  for (std::size_t i = threadIdx.x; i < rope_pairs; i += blockDim.x) {
    // theta_i = pos · scale^i by repeated multiplication, exactly as the CPU advances it.
    float theta = pos;
    for (std::size_t k = 0; k < i; ++k) theta = __fmul_rn(theta, theta_scale);
    const float c = static_cast<float>(cos(static_cast<double>(theta)));
    const float s = static_cast<float>(sin(static_cast<double>(theta)));
    for (std::size_t h = 0; h < heads; ++h) {
      float2* v = reinterpret_cast<float2*>(x + (t * heads + h) * head_dim) + i;
      const float2 p = *v;
      // The CPU's rotation: first product fused, second rounded.
      *v = make_float2(__fmaf_rn(p.x, c, -__fmul_rn(p.y, s)), __fmaf_rn(p.x, s, __fmul_rn(p.y, c)));
    }
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
  }
}

__global__ void add_kernel(float* x, const float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    x[i] = __fadd_rn(x[i], y[i]);
  }
}

// One block per token.
__global__ void embedding_kernel(DType type, const void* __restrict__ table, std::size_t vocab, std::size_t dim,
                                 const std::int32_t* __restrict__ ids, float* out) {
  const std::size_t t = blockIdx.x;
  const std::int32_t id = ids[t];
  float* o = out + t * dim;
  if (id < 0 || static_cast<std::size_t>(id) >= vocab) {
    for (std::size_t j = threadIdx.x; j < dim; j += blockDim.x) o[j] = __uint_as_float(0x7fc00000u);
    return;
  }
  const std::size_t base = static_cast<std::size_t>(id) * dim;
  for (std::size_t j = threadIdx.x; j < dim; j += blockDim.x) {
    float v;
    if (type == DType::kF32) {
      v = static_cast<const float*>(table)[base + j];
    } else if (type == DType::kF16) {
      v = half_to_float(static_cast<const std::uint16_t*>(table)[base + j]);
    } else {
      v = bf16_to_float(static_cast<const std::uint16_t*>(table)[base + j]);
    }
    o[j] = v;
  }
}

__global__ void convert_kernel(const float* x, bool to_bf16, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = to_bf16 ? float_to_bf16(x[i]) : float_to_half(x[i]);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

constexpr std::size_t kMaxGridX = 2147483647;  // gridDim.x limit

}  // namespace

std::string rms_norm_error(std::size_t rows, std::size_t n, float eps) {
  if (rows > kMaxGridX) return "rms_norm: rows " + std::to_string(rows) + " exceeds the grid limit";
  if (rows > 0 && n == 0) return "rms_norm: n must be > 0";
  if (!(eps >= 0.0f) || std::isinf(eps)) return "rms_norm: eps must be finite and >= 0";
  return {};
}

Status rms_norm(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n, float eps,
                void* stream) {
  if (auto e = rms_norm_error(rows, n, eps); !e.empty()) return Status::failure(e);
  if (rows == 0) return Status::success();
  const bool vec4 = n % 4 == 0 && aligned16(x) && aligned16(weight) && aligned16(out);
  if (vec4) {
    rms_norm_kernel<float4><<<static_cast<unsigned>(rows), kRmsThreads, 0, as_stream(stream)>>>(x, weight, out, n, eps);
  } else {
    rms_norm_kernel<float><<<static_cast<unsigned>(rows), kRmsThreads, 0, as_stream(stream)>>>(x, weight, out, n, eps);
  }
  return launch_status("rms_norm");
}

std::string rope_error(std::size_t tokens, std::size_t heads, std::size_t head_dim, std::size_t rope_dims,
                       float freq_base) {
  if (tokens > kMaxGridX) return "rope: tokens " + std::to_string(tokens) + " exceeds the grid limit";
  if (rope_dims == 0 || rope_dims % 2 != 0) return "rope: rope_dims must be even and > 0, got " + std::to_string(rope_dims);
  if (rope_dims > head_dim) return "rope: rope_dims " + std::to_string(rope_dims) + " > head_dim " + std::to_string(head_dim);
  if (head_dim % 2 != 0) return "rope: head_dim must be even, got " + std::to_string(head_dim);
  if (rope_dims > 1024) return "rope: rope_dims > 1024 (the CPU reference's limit)";
  if (heads == 0) return "rope: heads must be > 0";
  if (!(freq_base > 0.0f) || std::isinf(freq_base)) return "rope: freq_base must be finite and > 0";
  return {};
}

Status rope(float* x, const int* positions, std::size_t tokens, std::size_t heads, std::size_t head_dim,
            std::size_t rope_dims, float freq_base, void* stream) {
  if (auto e = rope_error(tokens, heads, head_dim, rope_dims, freq_base); !e.empty()) return Status::failure(e);
  if (tokens == 0) return Status::success();
  if (reinterpret_cast<std::uintptr_t>(x) % 8 != 0) return Status::failure("rope: x must be 8-byte aligned");
  // On the host, with the CPU's std::pow, so that both start from the same float.
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dims));
  const std::size_t pairs = rope_dims / 2;
  const int threads = pairs >= 128 ? 128 : static_cast<int>((pairs + 31) / 32 * 32);
  rope_kernel<<<static_cast<unsigned>(tokens), threads, 0, as_stream(stream)>>>(x, positions, heads, head_dim, pairs,
                                                                               theta_scale);
  return launch_status("rope");
}

Status silu_mul(const float* gate, const float* up, float* out, std::size_t n, void* stream) {
  if (n == 0) return Status::success();
  silu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(gate, up, out, n);
  return launch_status("silu_mul");
}

Status add_inplace(float* x, const float* y, std::size_t n, void* stream) {
  if (n == 0) return Status::success();
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(x, y, n);
  return launch_status("add_inplace");
}

std::string embedding_lookup_error(DType table_type, std::size_t vocab, std::size_t dim) {
  if (table_type != DType::kF32 && table_type != DType::kF16 && table_type != DType::kBF16)
    return "embedding_lookup: table type " + std::to_string(static_cast<unsigned>(table_type)) +
           " unsupported (F32, F16 or BF16; dequantise quantised tables at load)";
  if (vocab == 0 || dim == 0) return "embedding_lookup: vocab and dim must be > 0";
  return {};
}

Status embedding_lookup(DType table_type, const void* table, std::size_t vocab, std::size_t dim,
                        const std::int32_t* token_ids, std::size_t tokens, float* out, void* stream) {
  if (auto e = embedding_lookup_error(table_type, vocab, dim); !e.empty()) return Status::failure(e);
  if (tokens > kMaxGridX) return Status::failure("embedding_lookup: too many tokens");
  if (tokens == 0) return Status::success();
  embedding_kernel<<<static_cast<unsigned>(tokens), kThreads, 0, as_stream(stream)>>>(table_type, table, vocab, dim,
                                                                                     token_ids, out);
  return launch_status("embedding_lookup");
}

std::string convert_activations_error(DType out_type) {
  if (out_type != DType::kF16 && out_type != DType::kBF16)
    return "convert_activations: output type " + std::to_string(static_cast<unsigned>(out_type)) +
           " unsupported (F16 or BF16)";
  return {};
}

Status convert_activations(const float* x, DType out_type, void* out, std::size_t n, void* stream) {
  if (auto e = convert_activations_error(out_type); !e.empty()) return Status::failure(e);
  if (n == 0) return Status::success();
  convert_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(x, out_type == DType::kBF16,
                                                                           static_cast<std::uint16_t*>(out), n);
  return launch_status("convert_activations");
}

}  // namespace tiergate::kernels::cuda
