#include "kernels/cuda/dequant.h"

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/launch_status.cuh"

namespace tiergate::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Element i (0 <= i < 32) of block b of a quantised row, in the CPU's float arithmetic. Blocks are
// read as bytes and 16-bit words only: an 18- or 34-byte block is 2-byte aligned at best.
template <DType T>
__device__ __forceinline__ float quant_element(const std::uint8_t* blocks, std::size_t b, unsigned i) {
  if constexpr (T == DType::kQ4_0) {
    const std::uint8_t* blk = blocks + b * sizeof(BlockQ4_0);
    const float d = half_to_float(*reinterpret_cast<const std::uint16_t*>(blk));
    const std::uint8_t q = blk[2 + (i & 15)];
    const int v = (i < 16 ? (q & 0x0F) : (q >> 4)) - 8;
    return __fmul_rn(static_cast<float>(v), d);
  } else if constexpr (T == DType::kQ4_1) {
    const std::uint8_t* blk = blocks + b * sizeof(BlockQ4_1);
    const float d = half_to_float(*reinterpret_cast<const std::uint16_t*>(blk));
    const float m = half_to_float(*reinterpret_cast<const std::uint16_t*>(blk + 2));
    const std::uint8_t q = blk[4 + (i & 15)];
    const int v = i < 16 ? (q & 0x0F) : (q >> 4);
    return __fadd_rn(__fmul_rn(static_cast<float>(v), d), m);
  } else {  // Q8_0
    const std::uint8_t* blk = blocks + b * sizeof(BlockQ8_0);
    const float d = half_to_float(*reinterpret_cast<const std::uint16_t*>(blk));
    const auto q = static_cast<std::int8_t>(blk[2 + i]);
    return __fmul_rn(static_cast<float>(q), d);
  }
}

__device__ __forceinline__ std::uint16_t round_to(float v, bool bf16) {
  return bf16 ? float_to_bf16(v) : float_to_half(v);
}

// Rows are contiguous and n % 32 == 0, so the tensor is one run of `total / 32` blocks.
template <DType T>
__global__ void dequant_quant_kernel(const std::uint8_t* __restrict__ src, std::size_t total, bool bf16,
                                     std::uint16_t* __restrict__ out) {
  for (std::size_t e = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[e] = round_to(quant_element<T>(src, e / kQuantBlock, static_cast<unsigned>(e % kQuantBlock)), bf16);
  }
}

__global__ void dequant_float_kernel(DType type, const void* __restrict__ src, std::size_t total, bool bf16,
                                     std::uint16_t* __restrict__ out) {
  for (std::size_t e = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float v;
    if (type == DType::kF32) {
      v = static_cast<const float*>(src)[e];
    } else if (type == DType::kF16) {
      v = half_to_float(static_cast<const std::uint16_t*>(src)[e]);
    } else {
      v = bf16_to_float(static_cast<const std::uint16_t*>(src)[e]);
    }
    out[e] = round_to(v, bf16);
  }
}

}  // namespace

std::string dequantize_rows_error(DType type, std::size_t n, DType out_type) {
  if (out_type != DType::kF16 && out_type != DType::kBF16)
    return "dequantize_rows: output type " + std::to_string(static_cast<unsigned>(out_type)) + " unsupported (F16 or BF16)";
  switch (type) {
    case DType::kF32: case DType::kF16: case DType::kBF16: return {};
    case DType::kQ4_0: case DType::kQ4_1: case DType::kQ8_0:
      if (n % kQuantBlock != 0) return "dequantize_rows: n " + std::to_string(n) + " is not a multiple of 32";
      return {};
  }
  return "dequantize_rows: source type " + std::to_string(static_cast<unsigned>(type)) + " unsupported";
}

Status dequantize_rows(DType type, const void* src, std::size_t rows, std::size_t n, DType out_type, void* out,
                       void* stream) {
  if (auto e = dequantize_rows_error(type, n, out_type); !e.empty()) return Status::failure(e);
  const std::size_t total = rows * n;
  if (total == 0) return Status::success();
  const std::size_t align = type == DType::kF32 ? 4 : 2;
  if (reinterpret_cast<std::uintptr_t>(src) % align != 0 || reinterpret_cast<std::uintptr_t>(out) % 2 != 0)
    return Status::failure("dequantize_rows: misaligned src or out");
  const std::size_t want = (total + kThreads - 1) / kThreads;
  const auto blocks = static_cast<unsigned>(want < 65536 ? want : 65536);
  const bool bf16 = out_type == DType::kBF16;
  auto* o = static_cast<std::uint16_t*>(out);
  const auto* s = static_cast<const std::uint8_t*>(src);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (type) {
    case DType::kQ4_0: dequant_quant_kernel<DType::kQ4_0><<<blocks, kThreads, 0, st>>>(s, total, bf16, o); break;
    case DType::kQ4_1: dequant_quant_kernel<DType::kQ4_1><<<blocks, kThreads, 0, st>>>(s, total, bf16, o); break;
    case DType::kQ8_0: dequant_quant_kernel<DType::kQ8_0><<<blocks, kThreads, 0, st>>>(s, total, bf16, o); break;
    default: dequant_float_kernel<<<blocks, kThreads, 0, st>>>(type, src, total, bf16, o); break;
  }
  return detail::launch_status("dequantize_rows");
}

}  // namespace tiergate::kernels::cuda
