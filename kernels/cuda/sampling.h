// Logits processing and sampling on the GPU: one CTA per row of kernels/sampling.h's
// SamplingBatch, the same semantics as the CPU reference kernels/cpu/sampling.h (penalties,
// greedy or temperature → top-k → min-p → top-p → one counter-based draw).
//
// No sort: the row's scaled logits go to the workspace, and each cut is a radix select over the
// 64-bit key (logit bits ordered descending, then token id ascending, which is exactly the CPU's
// sort order), eight bits a pass, stopping as soon as one candidate is left. Probability mass is
// counted in 2^-43 fixed point (exp(logit - max) rounded, summed in uint64: exact, associative, so
// the result does not depend on thread order); the CPU sums the same exp() values in double. The
// two pick the same token except where the draw or top_p falls within ~1e-8 (relative) of a
// cumulative-mass boundary. Asynchronous on `stream`; allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/sampling.h"

namespace tiergate::kernels::cuda {

inline constexpr std::int32_t kMaxSamplingVocab = 1 << 20;  // keeps the fixed-point mass in 64 bits

// Workspace sample() needs: one fp32 row of scaled logits per row.
std::size_t sampling_workspace_bytes(std::int32_t rows, std::int32_t vocab);

// Empty when the batch's shape and pointers are usable, else what is wrong. Pure host function;
// it cannot read the rows' params (device memory): they must pass sampling_row_error.
std::string sampling_error(const SamplingBatch& batch);

// All of batch's pointers are device pointers. workspace: >= sampling_workspace_bytes, 4-byte aligned.
Status sample(const SamplingBatch& batch, void* workspace, std::size_t workspace_bytes, void* stream);

}  // namespace tiergate::kernels::cuda
