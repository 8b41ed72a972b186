// Row-wise kernels of a Llama block on the CPU, numerically following ggml's definitions (sums of
// squares and softmax denominators in double, RoPE angles advanced by repeated multiplication) so
// that greedy decoding agrees with llama.cpp. Pure functions over caller-owned buffers.
#pragma once

#include <cstddef>

namespace tiergate::kernels::cpu {

// out[t] = x[t] / rms(x[t]) * weight, for `rows` rows of n.  x, out: [rows, n]; weight: [n].
void rms_norm(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n, float eps);

// Rotary embedding in place, adjacent-pair ("normal") layout as GGUF Llama checkpoints use.
// x: [tokens, heads, head_dim]; positions: [tokens]; the first rope_dims of each head rotate.
void rope(float* x, const int* positions, std::size_t tokens, std::size_t heads, std::size_t head_dim,
          std::size_t rope_dims, float freq_base);

// out = silu(gate) * up, elementwise over n, at active_isa() (IsaKernels::silu_mul: ggml's
// polynomial exp, the same bits at every level).
void silu_mul(const float* gate, const float* up, float* out, std::size_t n);

// x += y over n.
void add_inplace(float* x, const float* y, std::size_t n);

// Numerically stable softmax in place over n.
void softmax_inplace(float* x, std::size_t n);

}  // namespace tiergate::kernels::cpu
