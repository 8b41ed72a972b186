// Paged attention and KV append on the GPU, behind the params structs of kernels/paged_attention.h
// (the CPU reference is kernels/cpu/paged_attention.h). q, out, k_new and v_new are float32 device
// arrays; the KV cache is F16 or BF16; every pointer in the params (block tables and token arrays
// included) is a device pointer. Launchers are asynchronous on `stream` (a cudaStream_t as void*),
// allocate nothing, and return a Status naming the unsupported value before touching the device
// when a shape is outside the dispatch table. A block id outside [0, num_blocks) or a position past
// the block table is a caller bug: the kernel traps (the CPU reference aborts on the same).
//
// Two attention kernels, one launcher: a decode kernel (one CTA per token x KV head x context split,
// the query heads of a KV head sharing every K/V load, split-K partials merged by a second kernel)
// and a tiled chunked-prefill kernel (one CTA per tile of consecutive tokens x KV head, sharing K/V
// tiles across the tile's tokens of one sequence). Both are correct for any token layout; the
// caller's AttentionBatchShape only picks the faster one and sizes the split.
#pragma once

#include <cstddef>

#include "kernels/cuda/device.h"
#include "kernels/paged_attention.h"

namespace tiergate::kernels::cuda {

// Host-side facts about a step that the launcher cannot read from device memory.
struct AttentionBatchShape {
  // Largest token_pos + 1 over the step's tokens. Sizes the split-K partition; an underestimate
  // stays correct (the last split takes the rest of the context) but splits less.
  std::size_t max_context_len = 0;
  // Most query tokens any one sequence has in this step: 1 selects the decode kernel, more the
  // prefill kernel. A mixed batch is best launched twice (decode tokens, then prefill chunks) with
  // offset token/q/out pointers.
  std::size_t max_query_len = 1;
  // Tests and benchmarks: force this many decode splits (0 = the heuristic). Clamped to the number
  // of 256-key chunks of max_context_len.
  std::size_t num_splits = 0;
};

// Caller-owned scratch for the decode kernel's split-K partials (float-aligned device memory).
struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// How the decode kernel partitions each token's context: split s covers keys
// [s * split_len, (s + 1) * split_len), the last one everything from (num_splits - 1) * split_len on.
struct SplitPlan {
  std::size_t num_splits = 1;
  std::size_t split_len = 0;  // keys, a multiple of kSplitAlign
};
inline constexpr std::size_t kSplitAlign = 256;

// Shape checks of the dispatch table (pure: no CUDA call, usable without a device). The _shape
// form checks sizes, dtypes and counts alone; the others add the pointer checks of a launch.
Status validate_kv_append(const KvAppendParams& p);
Status validate_paged_attention_shape(const PagedAttentionParams& p, const AttentionBatchShape& shape);
Status validate_paged_attention(const PagedAttentionParams& p, const AttentionBatchShape& shape);

// Writes k_new/v_new rows into their slots, rounded to the cache dtype to nearest-even (bit-exact
// with cpu::kv_append, NaN payloads included).
Status kv_append(const KvAppendParams& p, void* stream);

// The decode split for a device with `sm_count` SMs (pure; exposed for tests and the benchmark).
SplitPlan plan_decode_splits(const PagedAttentionParams& p, const AttentionBatchShape& shape, int sm_count);

// Workspace the launcher needs on a device of `sm_count` SMs (0 when the plan does not split or
// the shape is unsupported). Reads only sizes, never a pointer: a caller sizes it before its
// block tables and token arrays exist (pure; usable without a device).
std::size_t paged_attention_workspace_bytes(const PagedAttentionParams& p, const AttentionBatchShape& shape,
                                            int sm_count);
// The same on the current device.
std::size_t paged_attention_workspace_bytes(const PagedAttentionParams& p, const AttentionBatchShape& shape);

// out = softmax(q k^T * scale) v per token and query head over keys 0..token_pos of its sequence,
// fp32 accumulation. `workspace` must hold paged_attention_workspace_bytes(p, shape) bytes and may
// be reused once the stream has passed this launch.
Status paged_attention(const PagedAttentionParams& p, const AttentionBatchShape& shape, Workspace workspace,
                       void* stream);

}  // namespace tiergate::kernels::cuda
