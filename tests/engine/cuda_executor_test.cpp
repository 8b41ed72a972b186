// The GPU engine path against the CPU engine on SmolLM2 (label gpu; skips without a GPU or the
// model). The CPU engine is bit-exact with llama.cpp, so the fixtures' greedy continuations and
// top-2 gaps are the CPU engine's. The GPU computes in fp16 weights / fp32 accumulation rather
// than ggml's quantised int8 dot products, so logits differ slightly: greedy tokens must agree up
// to the first step where the CPU's top-2 logits are within kNearTie of each other (half
// precision may legitimately break such a near-tie), and must stay finite everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "engine/cpu_executor.h"
#include "engine/cuda_executor.h"
#include "engine/engine.h"
#include "engine/fifo_policy.h"
#include "engine/sampler.h"
#include "tests/engine/model_fixture.h"
#include "tests/kernels/gpu_test_support.h"

namespace tiergate::engine {
namespace {

constexpr double kNearTie = 1e-2;

using FixtureCase = testing::GreedyCase;

// Steps compared before the first near-tie of the CPU's logits.
std::size_t comparable_steps(const FixtureCase& c) {
  std::size_t n = 0;
  while (n < c.greedy.size() && c.gaps[n] >= kNearTie) ++n;
  return n;
}

constexpr std::size_t kPoolBlocks = 64;

CudaExecutorOptions small_pool() {
  CudaExecutorOptions options;
  options.num_blocks = kPoolBlocks;
  return options;
}

// `tokens` as one sequence's single prefill step (blocks from `bm`, sequence 1); positions from
// `logits_from` on give logit rows.
StepBatch one_sequence_step(BlockManager& bm, const std::vector<TokenId>& tokens, std::size_t logits_from) {
  EXPECT_TRUE(bm.allocate(1, tokens));
  StepBatch batch;
  batch.max_blocks = bm.block_table(1).size();
  const std::int32_t row = batch.add_sequence(bm.block_table(1));
  for (std::size_t p = 0; p < tokens.size(); ++p)
    batch.add_token(tokens[p], static_cast<std::int32_t>(p), row, p >= logits_from);
  return batch;
}

TEST(CudaExecutor, TeacherForcedArgmaxMatchesTheCpuUpToTheFirstNearTie) {
  TG_REQUIRE_GPU();
  TG_REQUIRE_MODEL(model);
  CudaExecutor gpu(*model, small_pool());
  const std::size_t vocab = model->config().vocab_size;
  std::size_t compared = 0;
  for (const FixtureCase& c : testing::load_greedy_cases()) {
    std::vector<TokenId> all = c.prompt_ids;
    all.insert(all.end(), c.greedy.begin(), c.greedy.end() - 1);
    ASSERT_LE(all.size(), kPoolBlocks * 16u);
    BlockManager bm(kPoolBlocks, 16);
    const StepBatch batch = one_sequence_step(bm, all, c.prompt_ids.size() - 1);
    std::vector<float> logits;
    gpu.forward(batch, logits);
    ASSERT_EQ(logits.size(), c.greedy.size() * vocab);
    for (float v : logits) ASSERT_TRUE(std::isfinite(v)) << "non-finite logit for \"" << c.prompt.substr(0, 40) << "\"";
    const std::size_t n = comparable_steps(c);
    for (std::size_t i = 0; i < n; ++i) {
      const float* l = logits.data() + i * vocab;
      const auto ours = static_cast<TokenId>(std::max_element(l, l + vocab) - l);
      EXPECT_EQ(ours, c.greedy[i]) << "generated token " << i << " of \"" << c.prompt.substr(0, 40)
                                   << "\" (CPU top-2 gap " << c.gaps[i] << ")";
      ++compared;
    }
  }
  EXPECT_GT(compared, 100u) << "too few steps before near-ties to say much";
}

// The whole engine on the GPU (chunked prefill, decode, block tables growing step by step),
// greedy and free-running, several requests at once.
TEST(CudaExecutor, EngineGreedyDecodingMatchesTheCpuUpToTheFirstNearTie) {
  TG_REQUIRE_GPU();
  TG_REQUIRE_MODEL(model);
  EngineConfig config;
  config.device = Device::kCuda;
  config.num_blocks = 256;
  config.token_budget = 64;  // several prefill chunks per prompt
  FifoPolicy fifo;
  std::map<RequestId, std::vector<TokenId>> out;
  Engine engine(*model, config, fifo, [&](RequestOutput&& o) {
    out[o.id].insert(out[o.id].end(), o.tokens.begin(), o.tokens.end());
  });
  const auto cases = testing::load_greedy_cases();
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    p.max_tokens = static_cast<std::int64_t>(cases[i].greedy.size());
    engine.submit({i + 1, cases[i].prompt_ids, p});
    fifo.enqueue(i + 1, cases[i].prompt_ids.size());
  }
  while (!engine.idle()) engine.step();
  EXPECT_EQ(engine.stats().blocks.active_blocks, 0u);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::vector<TokenId>& got = out[i + 1];
    ASSERT_EQ(got.size(), cases[i].greedy.size());
    const std::size_t n = comparable_steps(cases[i]);
    for (std::size_t s = 0; s < n; ++s) {
      ASSERT_EQ(got[s], cases[i].greedy[s]) << "step " << s << " of \"" << cases[i].prompt.substr(0, 40) << "\"";
    }
  }
}

// n = 2 forks the prompt's blocks (copy-on-write on the GPU pool): greedy choices are identical.
TEST(CudaExecutor, ForkedChoicesShareThePromptAndAgree) {
  TG_REQUIRE_GPU();
  TG_REQUIRE_MODEL(model);
  EngineConfig config;
  config.device = Device::kCuda;
  config.num_blocks = 64;
  FifoPolicy fifo;
  std::map<std::int32_t, std::vector<TokenId>> choices;
  Engine engine(*model, config, fifo, [&](RequestOutput&& o) {
    choices[o.index].insert(choices[o.index].end(), o.tokens.begin(), o.tokens.end());
  });
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  p.max_tokens = 24;
  p.n = 2;
  const auto prompt = model->tokenizer().encode("The three primary colours are", true);
  engine.submit({1, prompt, p});
  fifo.enqueue(1, prompt.size());
  while (!engine.idle()) engine.step();
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_EQ(choices[0].size(), 24u);
  EXPECT_EQ(choices[0], choices[1]);
}

// Sampling on the GPU (forward_sampled) draws what the CPU reference draws from the same GPU
// logits: every parameter, penalties with histories, several draws on one shared row (n > 1).
TEST(CudaExecutor, GpuSamplingDrawsWhatTheHostDrawsFromTheSameLogits) {
  TG_REQUIRE_GPU();
  TG_REQUIRE_MODEL(model);
  CudaExecutor gpu(*model, small_pool());
  const std::size_t vocab = model->config().vocab_size;
  const auto prompt = model->tokenizer().encode("Write a short poem about the sea and the wind", true);
  BlockManager bm(kPoolBlocks, 16);
  const StepBatch batch = one_sequence_step(bm, prompt, prompt.size() - 4);  // 4 logit rows
  const auto rows = static_cast<std::int32_t>(batch.logit_rows.size());

  SamplingStep draws;
  std::int32_t seed = 0;
  for (const float temperature : {0.0f, 0.7f, 1.0f, 1.5f}) {
    for (const std::int32_t top_k : {0, 1, 40}) {
      for (const float top_p : {1.0f, 0.9f}) {
        SamplingParams p;
        p.temperature = temperature;
        p.top_k = top_k;
        p.top_p = top_p;
        p.min_p = seed % 3 == 0 ? 0.05f : 0.0f;
        p.repetition_penalty = seed % 2 == 0 ? 1.3f : 1.0f;
        p.frequency_penalty = seed % 5 == 0 ? 0.5f : 0.0f;
        p.presence_penalty = seed % 7 == 0 ? 0.4f : 0.0f;
        p.logprobs = true;
        Sampler s(p, static_cast<std::uint64_t>(1000 + seed), prompt);
        for (int i = 0; i < seed % 4; ++i) s.accept(prompt[static_cast<std::size_t>(i)]);
        s.add_draw(draws, seed % rows);
        ++seed;
      }
    }
  }
  draws.want_logits = true;  // to sample the same logits on the host
  SampledStep on_gpu;
  gpu.forward_sampled(batch, draws, on_gpu);
  ASSERT_EQ(on_gpu.tokens.size(), draws.size());
  ASSERT_EQ(on_gpu.logits.size(), static_cast<std::size_t>(rows) * vocab);
  SampledStep on_host;
  sample_on_host(on_gpu.logits, vocab, draws, on_host);
  for (std::size_t d = 0; d < draws.size(); ++d) {
    EXPECT_EQ(on_gpu.tokens[d], on_host.tokens[d]) << "draw " << d;
    EXPECT_NEAR(on_gpu.logprobs[d], on_host.logprobs[d], 1e-4) << "draw " << d;
  }
}

// A small GQA Llama shape for dummy-weight tests.
ModelConfig small_llama_shape() {
  ModelConfig shape;
  shape.architecture = "llama";
  shape.vocab_size = 32000;
  shape.dim = 512;
  shape.layers = 2;
  shape.heads = 8;
  shape.kv_heads = 2;
  shape.head_dim = 64;
  shape.ffn_dim = 1408;
  shape.context_length = 4096;
  shape.rope_dims = 64;
  return shape;
}

// --load-format dummy: a Llama shape with random weights runs, sizes its KV pool from free
// memory and gives finite logits and in-range greedy tokens.
TEST(CudaExecutor, DummyWeightsOfAGivenShapeRun) {
  TG_REQUIRE_GPU();
  const ModelConfig shape = small_llama_shape();
  CudaExecutorOptions options;
  options.kv_cache_memory_fraction = 0.05;
  CudaExecutor gpu(shape, options, 42);
  EXPECT_GT(gpu.num_blocks(), 100u);
  BlockManager bm(gpu.num_blocks(), 16);
  std::vector<TokenId> prompt(100);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<TokenId>((i * 7919) % shape.vocab_size);
  ASSERT_TRUE(bm.allocate(1, prompt));
  ASSERT_TRUE(bm.allocate(2, prompt));
  StepBatch batch;
  batch.max_blocks = bm.block_table(1).size();
  for (SequenceId s : {1, 2}) {
    const std::int32_t row = batch.add_sequence(bm.block_table(s));
    for (std::size_t p = 0; p < prompt.size(); ++p)
      batch.add_token(prompt[p], static_cast<std::int32_t>(p), row, p + 1 == prompt.size());
  }
  std::vector<float> logits;
  gpu.forward(batch, logits);
  ASSERT_EQ(logits.size(), 2 * shape.vocab_size);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  // Same prompt in two sequences: the same logits (up to reduction order: none differs here).
  for (std::size_t i = 0; i < shape.vocab_size; ++i) ASSERT_NEAR(logits[i], logits[shape.vocab_size + i], 1e-4f);
  std::vector<TokenId> next;
  gpu.forward_greedy(batch, next);  // recomputes the same step: same KV written again
  ASSERT_EQ(next.size(), 2u);
  const auto best = static_cast<TokenId>(std::max_element(logits.begin(), logits.begin() + static_cast<long>(shape.vocab_size)) -
                                         logits.begin());
  EXPECT_EQ(next[0], best);
  EXPECT_EQ(next[1], best);
}

// Pure decode steps replayed from CUDA graphs (padded to a batch bucket, split for a context
// bucket) give the eager path's logits and greedy tokens; mixed and prefill steps stay eager.
TEST(CudaExecutor, GraphReplayedDecodeMatchesEagerSteps) {
  TG_REQUIRE_GPU();
  const ModelConfig shape = small_llama_shape();
  CudaExecutorOptions eager_options;
  eager_options.num_blocks = 512;
  CudaExecutorOptions graph_options = eager_options;
  graph_options.cuda_graphs = true;
  graph_options.max_batch_tokens = 1024;
  CudaExecutor eager(shape, eager_options, 7);
  CudaExecutor graphs(shape, graph_options, 7);  // same seed: same weights
  for (const std::size_t batch : {1u, 3u, 17u}) {
    BlockManager bm_eager(512, 16), bm_graph(512, 16);
    std::vector<std::vector<TokenId>> seqs(batch);
    for (std::size_t s = 0; s < batch; ++s) {
      for (std::size_t i = 0; i < 20 + 37 * s; ++i) seqs[s].push_back(static_cast<TokenId>((s * 131 + i * 17) % 32000));
      ASSERT_TRUE(bm_eager.allocate(s + 1, seqs[s]));
      ASSERT_TRUE(bm_graph.allocate(s + 1, seqs[s]));
    }
    std::vector<std::size_t> computed(batch, 0);
    for (int step = 0; step < 6; ++step) {  // step 0: prefill (eager in both); then decode
      StepBatch b_eager, b_graph;
      for (StepBatch* b : {&b_eager, &b_graph}) {
        BlockManager& bm = b == &b_eager ? bm_eager : bm_graph;
        for (std::size_t s = 0; s < batch; ++s) b->max_blocks = std::max(b->max_blocks, bm.block_table(s + 1).size());
        for (std::size_t s = 0; s < batch; ++s) {
          const std::int32_t row = b->add_sequence(bm.block_table(s + 1));
          for (std::size_t p = computed[s]; p < seqs[s].size(); ++p)
            b->add_token(seqs[s][p], static_cast<std::int32_t>(p), row, p + 1 == seqs[s].size());
        }
      }
      std::vector<float> le, lg;
      eager.forward(b_eager, le);
      graphs.forward(b_graph, lg);
      ASSERT_EQ(le.size(), lg.size());
      float worst = 0;
      for (std::size_t i = 0; i < le.size(); ++i) {
        ASSERT_TRUE(std::isfinite(lg[i])) << "batch " << batch << " step " << step << " logit " << i;
        worst = std::max(worst, std::abs(le[i] - lg[i]) / (1e-3f + std::abs(le[i])));
      }
      EXPECT_LT(worst, 1e-3f) << "batch " << batch << " step " << step;
      for (std::size_t s = 0; s < batch; ++s) {
        const float* row = le.data() + s * shape.vocab_size;
        const auto best = static_cast<TokenId>(std::max_element(row, row + shape.vocab_size) - row);
        computed[s] = seqs[s].size();
        bm_eager.mark_computed(s + 1, computed[s]);
        bm_graph.mark_computed(s + 1, computed[s]);
        seqs[s].push_back(best);
        ASSERT_TRUE(bm_eager.append(s + 1, std::vector<TokenId>{best}));
        ASSERT_TRUE(bm_graph.append(s + 1, std::vector<TokenId>{best}));
      }
    }
  }
  EXPECT_GE(graphs.captured_graphs(), 3u);  // buckets 1, 4 and 32 at least
  EXPECT_EQ(eager.captured_graphs(), 0u);
}

}  // namespace
}  // namespace tiergate::engine
