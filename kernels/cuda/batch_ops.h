// Small kernels the GPU executor needs around the model's layers: gathering the rows whose logits
// are wanted, greedy argmax over logits rows, and filling weights with seeded random values for
// `--load-format dummy` (a model of a given shape without a file, as vLLM has). Asynchronous on
// `stream`, allocate nothing, device pointers, Status on a bad argument.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cuda {

// out[r] = x[rows[r]].  x: [*, n]; rows: [num_rows] (device); out: [num_rows, n].
Status gather_rows(const float* x, const std::int32_t* rows, std::size_t num_rows, std::size_t n, float* out,
                   void* stream);

// out[r] = the index of the largest of logits[r] (the lowest index among equals; NaN never wins,
// -inf is a value like any other; a row of NaN only answers 0). logits: [rows, n]; out: [rows].
Status argmax_rows(const float* logits, std::size_t rows, std::size_t n, std::int32_t* out, void* stream);

// out[i] = fma(hi - lo, u, lo) in fp32, u = (mix64(seed · 0x9e3779b97f4a7c15 + i) >> 40) · 2^-24
// (kernels/mix64.h; 24 bits, uniform in [0, 1)), rounded to nearest even into `type` (F32, F16
// or BF16). A pure function of (seed, i), so a host can compute the same bits.
Status fill_uniform(DType type, void* out, std::size_t n, float lo, float hi, std::uint64_t seed, void* stream);

// out[i] = value over n floats.
Status fill_constant(float* out, std::size_t n, float value, void* stream);

}  // namespace tiergate::kernels::cuda
