// Quantised row formats on the CPU: quantising activations (Q8_0, Q8_1, as ggml does, so that
// weights stay compressed and dot products run on int8) and dequantising any supported row. The
// block dot products themselves are the ISA levels' business (isa_kernels.h). Pure functions;
// any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/tensor_type.h"

namespace tiergate::kernels::cpu {

// n must be a multiple of 32 for the quantised types.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, std::size_t n);  // x: [n]
void quantize_row_q8_1(const float* x, BlockQ8_1* y, std::size_t n);  // x: [n]
void dequantize_row(DType type, const void* row, float* out, std::size_t n);

// The activation format a weight type's dot product consumes (Q4_1 → Q8_1, Q4_0/Q8_0 → Q8_0,
// float types → F32) and its bytes per row of n elements.
DType activation_type(DType weight);
std::size_t activation_row_bytes(DType weight, std::size_t n);
void quantize_activation_row(DType weight, const float* x, void* out, std::size_t n);

}  // namespace tiergate::kernels::cpu
