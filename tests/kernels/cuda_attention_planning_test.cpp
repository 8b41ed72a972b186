// The host-side planning of kernels/cuda/paged_attention: the split-K plan and the workspace it
// needs are pure functions of sizes, so they run (and are tested) without a GPU. The executor
// sizes the workspace before the step's block tables and token arrays are on the device, so the
// size must not depend on any pointer being set.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdint>

#include "kernels/cuda/paged_attention.h"

namespace tiergate::kernels::cuda {
namespace {

struct DecodeShape {
  DType dtype = DType::kF16;
  std::size_t head_dim = 64, block_size = 16, kv_heads = 2, group = 4;
  std::size_t tokens = 1, max_blocks = 1, context = 1;
  int sm_count = 132;
};

// Params of `s` with every pointer null (what the executor has before its first upload).
PagedAttentionParams sizes_only(const DecodeShape& s) {
  PagedAttentionParams p;
  p.kv = {nullptr, nullptr, s.dtype, 4096, s.block_size, s.kv_heads, s.head_dim};
  p.layout.max_blocks_per_seq = s.max_blocks;
  p.layout.num_tokens = s.tokens;
  p.num_heads = s.kv_heads * s.group;
  return p;
}

// The same with plausible (16-byte aligned, never dereferenced) pointers.
PagedAttentionParams with_pointers(const DecodeShape& s) {
  alignas(16) static float storage[64];
  PagedAttentionParams p = sizes_only(s);
  p.kv.k = p.kv.v = storage;
  p.layout.block_tables = p.layout.token_seq = p.layout.token_pos = reinterpret_cast<const std::int32_t*>(storage);
  p.q = storage;
  p.out = storage;
  return p;
}

AttentionBatchShape decode_of(const DecodeShape& s) { return {s.context, 1, 0}; }

// What the decode launcher checks the workspace against, from the plan: per token, query head
// and split, a head_dim accumulator plus its running max and sum, in fp32.
std::size_t launcher_need(const PagedAttentionParams& p, const DecodeShape& s) {
  const SplitPlan plan = plan_decode_splits(p, decode_of(s), s.sm_count);
  if (plan.num_splits <= 1) return 0;
  return s.tokens * p.num_heads * plan.num_splits * (s.head_dim + 2) * sizeof(float);
}

// An executor's first step decoding one token at a 300-token context (no block table uploaded
// yet) splits on any GPU, so it needs a workspace: sizing it from the null pointers used to say 0.
TEST(CudaAttentionPlanning, AFirstStepsSplitDecodeGetsAWorkspaceBeforeAnyUpload) {
  DecodeShape s;
  s.max_blocks = 19;
  s.context = 300;
  const PagedAttentionParams p = sizes_only(s);
  ASSERT_GT(plan_decode_splits(p, decode_of(s), s.sm_count).num_splits, 1u);
  EXPECT_EQ(paged_attention_workspace_bytes(p, decode_of(s), s.sm_count), launcher_need(p, s));
  EXPECT_GT(paged_attention_workspace_bytes(p, decode_of(s), s.sm_count), 0u);
}

TEST(CudaAttentionPlanning, PrefillAndUnsupportedShapesNeedNoWorkspace) {
  DecodeShape s;
  s.tokens = 64;
  s.max_blocks = 64;
  s.context = 1000;
  EXPECT_EQ(paged_attention_workspace_bytes(sizes_only(s), {s.context, 8, 0}, s.sm_count), 0u);  // prefill kernel
  s.head_dim = 96;  // outside the dispatch table: the launch refuses it, nothing to size
  EXPECT_EQ(paged_attention_workspace_bytes(sizes_only(s), decode_of(s), s.sm_count), 0u);
}

RC_GTEST_PROP(CudaAttentionPlanningProperty, WorkspaceDependsOnSizesAloneAndCoversTheLaunch, ()) {
  DecodeShape s;
  s.dtype = *rc::gen::element(DType::kF16, DType::kBF16);
  s.head_dim = *rc::gen::element<std::size_t>(64, 128);
  s.block_size = *rc::gen::element<std::size_t>(16, 32);
  s.kv_heads = *rc::gen::inRange<std::size_t>(1, 33);
  s.group = *rc::gen::inRange<std::size_t>(1, 9);
  s.tokens = *rc::gen::inRange<std::size_t>(1, 600);
  s.max_blocks = *rc::gen::inRange<std::size_t>(1, 2049);
  s.context = *rc::gen::inRange<std::size_t>(0, s.max_blocks * s.block_size + 1);  // 0: the table's bound
  s.sm_count = *rc::gen::inRange(1, 200);
  const std::size_t bare = paged_attention_workspace_bytes(sizes_only(s), decode_of(s), s.sm_count);
  const PagedAttentionParams full = with_pointers(s);
  RC_ASSERT(validate_paged_attention(full, decode_of(s)).ok());
  RC_ASSERT(bare == paged_attention_workspace_bytes(full, decode_of(s), s.sm_count));
  RC_ASSERT(bare == launcher_need(full, s));
}

// The plan's splits cover the context exactly once: contiguous runs of whole 256-key chunks, the
// last one holding the rest, none empty.
RC_GTEST_PROP(CudaAttentionPlanningProperty, SplitsPartitionTheContext, ()) {
  DecodeShape s;
  s.tokens = *rc::gen::inRange<std::size_t>(1, 300);
  s.max_blocks = *rc::gen::inRange<std::size_t>(1, 8193);
  s.context = *rc::gen::inRange<std::size_t>(1, s.max_blocks * s.block_size + 1);
  s.sm_count = *rc::gen::inRange(1, 200);
  const SplitPlan plan = plan_decode_splits(sizes_only(s), decode_of(s), s.sm_count);
  RC_ASSERT(plan.num_splits >= 1u);
  RC_ASSERT(plan.split_len % kSplitAlign == 0);
  RC_ASSERT((plan.num_splits - 1) * plan.split_len < s.context);
  RC_ASSERT(plan.num_splits * plan.split_len >= s.context);
}

}  // namespace
}  // namespace tiergate::kernels::cuda
