// The CUDA executor's host-side planning (engine/cuda_executor.h), which needs no GPU: the
// options it takes from the engine's config, the buffers it reserves for the largest step before
// the KV pool takes its share of free memory, the split-K workspace of every decode step within
// those limits, and the pool's block count. The GPU-side checks of the same (serving allocates
// nothing, the pool fits) are in cuda_executor_test.cpp.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>

#include "engine/cuda_executor.h"
#include "engine/engine.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/sampling.h"

namespace tiergate::engine {
namespace {

using kernels::DType;

ModelConfig smollm2_shape() {
  ModelConfig c;
  c.vocab_size = 49152;
  c.dim = 576;
  c.layers = 30;
  c.heads = 9;
  c.kv_heads = 3;
  c.head_dim = 64;
  c.ffn_dim = 1536;
  c.context_length = 8192;
  c.rope_dims = 64;
  return c;
}

ModelConfig llama8b_shape() {
  ModelConfig c;
  c.vocab_size = 128256;
  c.dim = 4096;
  c.layers = 32;
  c.heads = 32;
  c.kv_heads = 8;
  c.head_dim = 128;
  c.ffn_dim = 14336;
  c.context_length = 131072;
  c.rope_dims = 128;
  return c;
}

TEST(CudaExecutorPlan, OptionsCarryTheEngineConfig) {
  EngineConfig config;
  config.device = Device::kCuda;
  config.kv_dtype = DType::kBF16;
  config.block_size = 32;
  config.num_blocks = 777;
  config.kv_cache_memory_fraction = 0.55;
  config.cuda_graphs = true;
  config.max_running = 48;
  config.token_budget = 1000;
  const CudaExecutorOptions o = cuda_executor_options(config);
  EXPECT_EQ(o.kv_dtype, DType::kBF16) << "a BF16 KV cache request ran as F16";
  EXPECT_EQ(o.block_size, 32u);
  EXPECT_EQ(o.num_blocks, 777u);
  EXPECT_EQ(o.kv_cache_memory_fraction, 0.55);
  EXPECT_TRUE(o.cuda_graphs);
  EXPECT_EQ(o.max_batch_tokens, 1048u);  // the prefill budget plus every running sequence's decode token
  EXPECT_EQ(o.max_sequences, 48u);
  config.kv_dtype = DType::kF16;
  EXPECT_EQ(cuda_executor_options(config).kv_dtype, DType::kF16);
}

TEST(CudaExecutorPlan, LimitsFollowTheStepAndTheContext) {
  CudaExecutorOptions o;
  o.max_batch_tokens = 576;
  o.max_sequences = 64;
  CudaStepLimits l = cuda_step_limits(smollm2_shape(), o);
  EXPECT_EQ(l.tokens, 576u);
  EXPECT_EQ(l.sequences, 64u);
  EXPECT_EQ(l.max_blocks, 8192u / 16);
  o.cuda_graphs = true;  // graph buckets pad to the next power of two
  o.max_sequences = 40;
  l = cuda_step_limits(smollm2_shape(), o);
  EXPECT_EQ(l.sequences, 64u);
  o.max_batch_tokens = 0;  // tests and benchmarks: nothing planned unless graphs need buffers
  o.max_sequences = 0;
  EXPECT_EQ(cuda_step_limits(smollm2_shape(), o).tokens, 256u);
  o.cuda_graphs = false;
  EXPECT_EQ(cuda_step_limits(smollm2_shape(), o).tokens, 0u);
}

// Reserving the limits covers every smaller step: each buffer's size is monotone in tokens,
// sequences and table width, so the steps the engine sends within the limits allocate nothing.
RC_GTEST_PROP(CudaExecutorPlanProperty, ReservingTheLimitsCoversEverySmallerStep, ()) {
  const ModelConfig c = *rc::gen::element(smollm2_shape(), llama8b_shape());
  const DType w = *rc::gen::element(DType::kF16, DType::kBF16);
  const CudaStepLimits big{*rc::gen::inRange<std::size_t>(1, 9000), *rc::gen::inRange<std::size_t>(1, 300),
                           *rc::gen::inRange<std::size_t>(0, 9000)};
  const CudaStepLimits small{*rc::gen::inRange<std::size_t>(1, big.tokens + 1),
                             *rc::gen::inRange<std::size_t>(1, big.sequences + 1),
                             *rc::gen::inRange<std::size_t>(0, big.max_blocks + 1)};
  const CudaStepBytes a = cuda_step_bytes(c, w, small), b = cuda_step_bytes(c, w, big);
  const std::size_t as[] = {a.x, a.h, a.q, a.attn, a.k, a.v, a.gate, a.up, a.h_half, a.selected, a.logits, a.tokens,
                            a.positions, a.token_seq, a.logit_rows, a.block_tables, a.draw_logits, a.sampling_workspace};
  const std::size_t bs[] = {b.x, b.h, b.q, b.attn, b.k, b.v, b.gate, b.up, b.h_half, b.selected, b.logits, b.tokens,
                            b.positions, b.token_seq, b.logit_rows, b.block_tables, b.draw_logits, b.sampling_workspace};
  for (std::size_t i = 0; i < std::size(as); ++i) RC_ASSERT(as[i] <= bs[i]);
  RC_ASSERT(a.total() <= b.total());
}

// What a step needs, from its shape, against the sizes the plan gives: the fp32 activations of
// every token, a row of logits per sequence, a block table row per sequence.
TEST(CudaExecutorPlan, StepBytesHoldTheStepsTensors) {
  const ModelConfig c = llama8b_shape();
  const CudaStepBytes b = cuda_step_bytes(c, DType::kBF16, {2048, 64, 8192});
  EXPECT_EQ(b.x, 2048u * 4096 * 4);
  EXPECT_EQ(b.q, 2048u * 32 * 128 * 4);
  EXPECT_EQ(b.k, 2048u * 8 * 128 * 4);
  EXPECT_EQ(b.gate, 2048u * 14336 * 4);
  EXPECT_EQ(b.h_half, 2048u * 14336 * 2);  // the widest GEMM input (the down projection's)
  EXPECT_EQ(b.logits, 64u * 128256 * 4);
  EXPECT_EQ(b.block_tables, 64u * 8192 * 4);
  EXPECT_EQ(b.sampling_workspace, kernels::cuda::sampling_workspace_bytes(64, 128256));
}

// The reserved workspace is at least what any decode launch within the limits asks for, at any
// decode token count, context and table width (the longest context need not split most: see
// below), and it is reserved before anything is on the device.
RC_GTEST_PROP(CudaExecutorPlanProperty, ReservedWorkspaceCoversEveryDecodeLaunch, ()) {
  const ModelConfig c = *rc::gen::element(smollm2_shape(), llama8b_shape());
  CudaExecutorOptions o;
  o.block_size = *rc::gen::element<std::size_t>(16, 32);
  o.kv_dtype = *rc::gen::element(DType::kF16, DType::kBF16);
  const CudaStepLimits limits{*rc::gen::inRange<std::size_t>(1, 700), 64, *rc::gen::inRange<std::size_t>(1, 4097)};
  const int sms = *rc::gen::element(108, 132, 78);
  const std::size_t reserved = cuda_decode_workspace_bytes(c, o, limits, sms);
  kernels::PagedAttentionParams p;
  p.kv = {nullptr, nullptr, o.kv_dtype, 1, o.block_size, c.kv_heads, c.head_dim};
  p.num_heads = c.heads;
  p.layout.num_tokens = *rc::gen::inRange<std::size_t>(1, limits.tokens + 1);
  p.layout.max_blocks_per_seq = *rc::gen::inRange<std::size_t>(1, limits.max_blocks + 1);
  const kernels::cuda::AttentionBatchShape shape{
      *rc::gen::inRange<std::size_t>(1, p.layout.max_blocks_per_seq * o.block_size + 1), 1, 0};
  RC_ASSERT(kernels::cuda::paged_attention_workspace_bytes(p, shape, sms) <= reserved);
}

// The planner rounds each split up to whole 256-key chunks, so the longest context can run fewer
// splits than a shorter one: on 9 SMs one SmolLM2 token asks for 8 splits; 2064 keys (nine chunks)
// run as 5 splits of 512, 2048 keys (eight chunks) as 8 of 256. The reservation must hold the 8.
TEST(CudaExecutorPlan, TheWorkspaceCoversAShorterContextThatSplitsMore) {
  const ModelConfig c = smollm2_shape();
  CudaExecutorOptions o;
  const CudaStepLimits limits{1, 1, 129};  // 129 blocks of 16: 2064 keys
  kernels::PagedAttentionParams p;
  p.kv = {nullptr, nullptr, o.kv_dtype, 1, o.block_size, c.kv_heads, c.head_dim};
  p.num_heads = c.heads;
  p.layout.num_tokens = 1;
  p.layout.max_blocks_per_seq = limits.max_blocks;
  ASSERT_EQ(kernels::cuda::plan_decode_splits(p, {2064, 1, 0}, 9).num_splits, 5u);
  ASSERT_EQ(kernels::cuda::plan_decode_splits(p, {2048, 1, 0}, 9).num_splits, 8u);
  EXPECT_GE(cuda_decode_workspace_bytes(c, o, limits, 9), kernels::cuda::paged_attention_workspace_bytes(p, {2048, 1, 0}, 9));
}

// Every token count and context within the limits, on devices small enough that the split count
// stops short of the context's chunks (where the rounding bites): the reservation is what the
// hungriest of them asks for, no less (a launch would allocate) and no more (the KV pool's loss).
RC_GTEST_PROP(CudaExecutorPlanProperty, ReservedWorkspaceIsTheMostAnyContextAsksFor, ()) {
  const ModelConfig c = *rc::gen::element(smollm2_shape(), llama8b_shape());
  CudaExecutorOptions o;
  o.block_size = *rc::gen::element<std::size_t>(16, 32);
  const CudaStepLimits limits{*rc::gen::inRange<std::size_t>(1, 9), 64, *rc::gen::inRange<std::size_t>(1, 200)};
  const int sms = *rc::gen::inRange(1, 40);
  kernels::PagedAttentionParams p;
  p.kv = {nullptr, nullptr, o.kv_dtype, 1, o.block_size, c.kv_heads, c.head_dim};
  p.num_heads = c.heads;
  p.layout.max_blocks_per_seq = limits.max_blocks;
  std::size_t most = 0;
  for (p.layout.num_tokens = 1; p.layout.num_tokens <= limits.tokens; ++p.layout.num_tokens) {
    for (std::size_t context = 1; context <= limits.max_blocks * o.block_size; ++context)
      most = std::max(most, kernels::cuda::paged_attention_workspace_bytes(p, {context, 1, 0}, sms));
  }
  RC_ASSERT(cuda_decode_workspace_bytes(c, o, limits, sms) == most);
}

TEST(CudaExecutorPlan, ALongContextDecodeReservesAWorkspace) {
  CudaExecutorOptions o;
  o.max_batch_tokens = 576;
  const CudaStepLimits limits = cuda_step_limits(smollm2_shape(), o);
  EXPECT_GT(cuda_decode_workspace_bytes(smollm2_shape(), o, limits, 132), 0u);
  EXPECT_EQ(cuda_decode_workspace_bytes(smollm2_shape(), o, {576, 576, 0}, 132), 0u);  // no table width yet
}

// The pool takes `fraction` of what the weights and reserved buffers left, one scratch block
// included, and as much of it as fits.
RC_GTEST_PROP(CudaExecutorPlanProperty, KvBlocksFillTheirShareAndNoMore, ()) {
  const std::size_t block = *rc::gen::inRange<std::size_t>(1, 1 << 24);
  const std::size_t free_bytes = *rc::gen::inRange<std::size_t>(0, std::size_t{150} << 30);
  const double fraction = *rc::gen::element(0.05, 0.5, 0.8, 0.9, 0.95, 1.0);
  const std::size_t blocks = cuda_kv_blocks(free_bytes, fraction, block);
  const double budget = fraction * static_cast<double>(free_bytes);
  if (blocks > 0) RC_ASSERT(static_cast<double>((blocks + 1) * block) <= budget);
  RC_ASSERT(static_cast<double>((blocks + 2) * block) > budget);
  RC_ASSERT((blocks + 1) * block <= free_bytes || blocks == 0);
}

TEST(CudaExecutorPlan, KvBlocksOfNothing) {
  EXPECT_EQ(cuda_kv_blocks(0, 0.9, 4096), 0u);
  EXPECT_EQ(cuda_kv_blocks(8191, 1.0, 4096), 0u);  // one block would leave no scratch block
  EXPECT_EQ(cuda_kv_blocks(8192, 1.0, 4096), 1u);
  EXPECT_EQ(cuda_kv_blocks(std::size_t{1} << 30, 0.0, 4096), 0u);
  EXPECT_EQ(cuda_kv_blocks(std::size_t{1} << 30, 2.0, 1 << 20), 1023u);  // a fraction above 1 is 1
}

}  // namespace
}  // namespace tiergate::engine
