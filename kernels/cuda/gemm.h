// Dense projections on the GPU: y[tokens, out] = x[tokens, in] · W[out, in]^T through cuBLAS
// (cublasGemmEx, fp32 accumulation). W is stored as the checkpoint stores it, one row per output
// feature (the layout dequantize_rows produces), so no transpose is ever materialised.
//
// Gemm owns a cuBLAS handle bound to one stream and the workspace cuBLAS may use (no allocation
// on the data path). Construct at start-up: the constructor throws std::runtime_error when cuBLAS
// cannot start; run() never throws and returns a Status. One thread at a time per Gemm (a cuBLAS
// handle is not thread-safe); movable, not copyable.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cuda {

// A view: device pointers owned by the caller.
struct GemmParams {
  const void* x = nullptr;  // [tokens, in] of x_type (F16 or BF16)
  const void* w = nullptr;  // [out, in] of w_type (== x_type)
  void* y = nullptr;        // [tokens, out] of y_type: F32, or x_type
  DType x_type = DType::kF16;
  DType w_type = DType::kF16;
  DType y_type = DType::kF32;
  std::size_t tokens = 0, in = 0, out = 0;
  bool accumulate = false;  // y += x·W^T (a fused residual add) instead of y = x·W^T
};

// Empty when `p` is supported, else what is wrong (types, sizes beyond cuBLAS's int, nulls).
std::string gemm_error(const GemmParams& p);

class Gemm {
 public:
  static constexpr std::size_t kDefaultWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS's advice for sm_90

  explicit Gemm(void* stream, std::size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~Gemm();
  Gemm(Gemm&& other) noexcept;
  Gemm& operator=(Gemm&&) = delete;
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Enqueues the product on the bound stream.
  Status run(const GemmParams& p) const;
  void* stream() const { return stream_; }

 private:
  void* handle_ = nullptr;  // cublasHandle_t
  void* stream_ = nullptr;  // cudaStream_t, not owned
  DeviceBuffer workspace_;
};

}  // namespace tiergate::kernels::cuda
