#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <stdexcept>
#include <utility>

namespace tiergate::kernels::cuda {
namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

std::string cublas_message(const char* what, cublasStatus_t s) {
  return std::string(what) + ": " + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")";
}

}  // namespace

std::string gemm_error(const GemmParams& p) {
  if (p.x_type != DType::kF16 && p.x_type != DType::kBF16) return "gemm: x_type must be F16 or BF16";
  if (p.w_type != p.x_type) return "gemm: w_type must equal x_type (cuBLAS has no mixed fp16/bf16 product)";
  if (p.y_type != DType::kF32 && p.y_type != p.x_type) return "gemm: y_type must be F32 or x_type";
  if (p.tokens == 0 || p.in == 0 || p.out == 0) return "gemm: tokens, in and out must be > 0";
  if (p.tokens > INT_MAX || p.in > INT_MAX || p.out > INT_MAX) return "gemm: a dimension exceeds cuBLAS's int";
  if (!p.x || !p.w || !p.y) return "gemm: null pointer";
  return {};
}

Gemm::Gemm(void* stream, std::size_t workspace_bytes) : stream_(stream), workspace_(workspace_bytes) {
  cublasHandle_t h = nullptr;
  if (const cublasStatus_t s = cublasCreate(&h); s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(cublas_message("cublasCreate", s));
  handle_ = h;
  cublasStatus_t s = cublasSetStream(h, static_cast<cudaStream_t>(stream));
  if (s == CUBLAS_STATUS_SUCCESS && workspace_bytes > 0) s = cublasSetWorkspace(h, workspace_.get(), workspace_bytes);
  // Tensor cores for 16-bit inputs are allowed by default; reductions stay in fp32.
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
  if (s != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(h);
    handle_ = nullptr;
    throw std::runtime_error(cublas_message("cuBLAS set-up", s));
  }
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

Gemm::Gemm(Gemm&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), stream_(other.stream_), workspace_(std::move(other.workspace_)) {}

Status Gemm::run(const GemmParams& p) const {
  if (auto e = gemm_error(p); !e.empty()) return Status::failure(e);
  if (!handle_) return Status::failure("gemm: moved-from Gemm");
  // Row-major y[T, O] = x[T, I] · W[O, I]^T is, read column-major, Y(O×T) = Wcm(I×O)^T · Xcm(I×T):
  // a "TN" product with m = out, n = tokens, k = in and leading dimensions in, in, out.
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  const int m = static_cast<int>(p.out), n = static_cast<int>(p.tokens), k = static_cast<int>(p.in);
  const cublasStatus_t s =
      cublasGemmEx(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, p.w, cuda_type(p.w_type),
                   k, p.x, cuda_type(p.x_type), k, &beta, p.y, cuda_type(p.y_type), m, CUBLAS_COMPUTE_32F,
                   CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return Status::failure(cublas_message("cublasGemmEx", s));
  return Status::success();
}

}  // namespace tiergate::kernels::cuda
