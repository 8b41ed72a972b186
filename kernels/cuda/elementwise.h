// Row-wise kernels of a Llama block on the GPU, each the twin of a kernels/cpu function with the
// same arguments plus a stream: RMSNorm, RoPE, SwiGLU, residual add (kernels/cpu/elementwise.h),
// embedding lookup and the fp32 → fp16/bf16 conversion of GEMM inputs (kernels/cpu/fp16.h).
// Launchers are asynchronous on `stream` (a cudaStream_t), allocate nothing, and return a Status
// naming the bad argument or the launch error; the *_error functions are the same checks as pure
// host functions (empty string: valid). All pointers are device pointers.
//
// Agreement with the CPU (tests/kernels/cuda_ops_test.cpp):
//   rms_norm   sums of squares in fp32 (per-thread fma, then a warp/block tree) where the CPU sums
//              in double: |gpu - cpu| <= 1e-5·|cpu| + 1e-6 for rows up to 16k.
//   rope       same theta recurrence (repeated fp32 multiplication, theta_scale computed on the
//              host with std::pow) and the same fused rotation; cos/sin in double rounded to float
//              where glibc's cosf/sinf round their own way: within 2 ulp of |x|.
//   silu_mul   CUDA expf where the CPU uses ggml's polynomial: within 4 ulp.
//   add, embedding lookup, conversion: bit-exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cuda {

// out[r] = x[r] / rms(x[r]) * weight.  x, out: [rows, n] (may alias); weight: [n].
Status rms_norm(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n, float eps,
                void* stream);
std::string rms_norm_error(std::size_t rows, std::size_t n, float eps);

// Rotary embedding in place, adjacent pairs (x[2i], x[2i+1]) rotated by pos · base^(-2i/rope_dims)
// for i < rope_dims / 2; the rest of each head is left alone.
// x: [tokens, heads, head_dim]; positions: [tokens].
Status rope(float* x, const int* positions, std::size_t tokens, std::size_t heads, std::size_t head_dim,
            std::size_t rope_dims, float freq_base, void* stream);
std::string rope_error(std::size_t tokens, std::size_t heads, std::size_t head_dim, std::size_t rope_dims,
                       float freq_base);

// out = silu(gate) * up over n (out may alias either input).  gate, up, out: [n].
Status silu_mul(const float* gate, const float* up, float* out, std::size_t n, void* stream);

// x += y over n.  x, y: [n].
Status add_inplace(float* x, const float* y, std::size_t n, void* stream);

// out[t] = table[token_ids[t]] as fp32. table: [vocab, dim] of F32, F16 or BF16; token_ids:
// [tokens]; out: [tokens, dim]. An id outside [0, vocab) yields a row of NaN (the engine checks
// ids before they get here; NaN makes a slip loud instead of reading past the table).
Status embedding_lookup(DType table_type, const void* table, std::size_t vocab, std::size_t dim,
                        const std::int32_t* token_ids, std::size_t tokens, float* out, void* stream);
std::string embedding_lookup_error(DType table_type, std::size_t vocab, std::size_t dim);

// out = x rounded to nearest even as F16 or BF16 (the bits of kernels/cpu/fp16.h's float_to_half
// / float_to_bf16, NaN encodings included).  x: [n]; out: [n] of out_type.
Status convert_activations(const float* x, DType out_type, void* out, std::size_t n, void* stream);
std::string convert_activations_error(DType out_type);

}  // namespace tiergate::kernels::cuda
