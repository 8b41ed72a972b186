// Weight dequantisation on the GPU at model load: rows of Q4_0 / Q4_1 / Q8_0 (ggml's block
// layouts, kernels/tensor_type.h), or F32 / F16 / BF16, to fp16 or bf16 for the cuBLAS GEMMs.
// Bit-exact with the CPU path kernels/cpu/quant.h dequantize_row → kernels/cpu/fp16.h
// float_to_half / float_to_bf16: the float value is formed with the CPU's operations (q·d, and
// q·d + m for Q4_1; every product of a 4- or 8-bit integer and an fp16 scale is exact in fp32, so
// only Q4_1's addition rounds, once, on both sides), then rounded to nearest even with the CPU's
// NaN encoding. Asynchronous on `stream`; allocates nothing; device pointers.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cuda {

// src: rows × row_bytes(type, n) bytes, rows contiguous; out: [rows, n] of out_type (F16 or BF16).
// src must be 2-byte aligned (every GGUF tensor is 32-byte aligned).
Status dequantize_rows(DType type, const void* src, std::size_t rows, std::size_t n, DType out_type, void* out,
                       void* stream);
// Empty when the arguments are supported, else what is wrong. Pure host function.
std::string dequantize_rows_error(DType type, std::size_t n, DType out_type);

}  // namespace tiergate::kernels::cuda
