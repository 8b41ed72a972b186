// engine/engine.*: continuous batching end to end on the default model — batch invariance through
// chunked prefill, seeded sampling, stop strings, max_tokens, n > 1 with copy-on-write, plans that
// rest or preempt requests (by priority and for lack of blocks) without changing any output,
// prompt tokens charged once whatever the recomputation, requests handed out before their
// submission was drained, and cancellation finishing every choice and freeing every block.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "engine/fifo_policy.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

struct Choice {
  std::string text;
  std::vector<TokenId> tokens;
  FinishReason finish = FinishReason::kNone;
  std::size_t completion_tokens = 0;
};

// FifoPolicy, watched: charges per request, the requests offered as memory victims (each must
// still have work), and scripted preemptions or hooks before a step's plan.
class WatchedPolicy : public FifoPolicy {
 public:
  void plan_step(std::span<const RunningRequest> running, const StepLimits& limits, StepPlan& plan) override {
    if (before_plan) before_plan();
    FifoPolicy::plan_step(running, limits, plan);
    ++steps;
    if (auto it = preempt_at_step.find(steps); it != preempt_at_step.end()) {
      for (const RunningRequest& r : running) {
        if (r.id == it->second) plan.preempt.push_back(r.id);
      }
      std::erase_if(plan.run, [&](const StepGrant& g) { return g.id == it->second; });
    }
  }
  RequestId memory_victim(std::span<const RunningRequest> running) override {
    for (const RunningRequest& r : running) EXPECT_GT(r.decode_seqs + r.prefill_seqs, 0u) << r.id;
    ++victim_calls;
    return FifoPolicy::memory_victim(running);
  }
  void charge(RequestId id, std::size_t prompt, std::size_t output) override {
    charged[id].first += prompt;
    charged[id].second += output;
  }
  std::map<RequestId, std::pair<std::size_t, std::size_t>> charged;  // prompt, output
  std::map<std::size_t, RequestId> preempt_at_step;                  // 1-based step → id
  std::function<void()> before_plan;
  std::size_t steps = 0;
  std::size_t victim_calls = 0;
};

class Harness {
 public:
  Harness(const Model& model, EngineConfig config)
      : model_(model), engine_(model, config, fifo_, [this](RequestOutput&& o) { on_output(std::move(o)); }) {}

  void add(RequestId id, const std::string& prompt, SamplingParams params, int priority = 0) {
    const auto tokens = model_.tokenizer().encode(prompt, true);
    engine_.submit({id, tokens, params});
    fifo_.enqueue(id, tokens.size(), priority);
  }
  void run(std::size_t max_steps = 10000) {
    for (std::size_t i = 0; i < max_steps && !engine_.idle(); ++i) engine_.step();
  }
  Engine& engine() { return engine_; }
  WatchedPolicy& policy() { return fifo_; }
  std::vector<TokenId> tokens_of(const std::string& prompt) const { return model_.tokenizer().encode(prompt, true); }
  Choice& at(RequestId id, int index) { return results[{id, index}]; }
  std::map<std::pair<RequestId, int>, Choice> results;
  std::map<std::pair<RequestId, int>, int> outputs;
  std::vector<RequestId> finish_order;

 private:
  void on_output(RequestOutput&& o) {
    ++outputs[{o.id, o.index}];
    Choice& c = results[{o.id, o.index}];
    c.text += o.text;
    c.tokens.insert(c.tokens.end(), o.tokens.begin(), o.tokens.end());
    c.completion_tokens = o.completion_tokens;
    if (o.finish != FinishReason::kNone) {
      c.finish = o.finish;
      finish_order.push_back(o.id);
    }
  }
  const Model& model_;
  WatchedPolicy fifo_;
  Engine engine_;
};

// Small pools keep each engine's KV allocation (F32, ~46 KB per token for SmolLM2) cheap.
EngineConfig config(std::size_t blocks = 64) {
  EngineConfig c;
  c.num_blocks = blocks;
  c.threads = 2;
  return c;
}

SamplingParams greedy(std::int64_t max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

const char* const kPrompts[] = {
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
    "The history of the Roman Empire",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4, 5,",
};

TEST(Engine, BatchedAndChunkedEqualsAlone) {
  TG_REQUIRE_MODEL(model);
  EngineConfig small = config();
  small.token_budget = 24;  // forces chunked prefill interleaved with decode
  Harness batched(*model, small);
  for (RequestId i = 0; i < 6; ++i) batched.add(i, kPrompts[i], greedy(12));
  batched.run();
  for (RequestId i = 0; i < 6; ++i) {
    Harness alone(*model, config());
    alone.add(i, kPrompts[i], greedy(12));
    alone.run();
    EXPECT_EQ(alone.at(i, 0).tokens, batched.at(i, 0).tokens) << kPrompts[i];
    EXPECT_EQ(batched.at(i, 0).completion_tokens, batched.at(i, 0).tokens.size());
  }
  EXPECT_EQ(batched.engine().stats().blocks.active_blocks, 0u);
}

TEST(Engine, SeededSamplingIsReproducibleWhateverTheBatch) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.top_k = 40;
  p.max_tokens = 16;
  p.seed = 1234;
  Harness alone(*model, config());
  alone.add(1, kPrompts[4], p);
  alone.run();
  Harness crowded(*model, config());
  for (RequestId i = 10; i < 15; ++i) crowded.add(i, kPrompts[i % 6], greedy(8));
  crowded.add(1, kPrompts[4], p);
  crowded.run();
  EXPECT_EQ(alone.at(1, 0).tokens, crowded.at(1, 0).tokens);
  p.seed = 99;
  Harness other(*model, config());
  other.add(1, kPrompts[4], p);
  other.run();
  EXPECT_NE(alone.at(1, 0).tokens, other.at(1, 0).tokens);
}

TEST(Engine, StopStringsAreNeverEmittedAndMaxTokensEndsWithLength) {
  TG_REQUIRE_MODEL(model);
  Harness free_run(*model, config());
  free_run.add(1, kPrompts[0], greedy(20));
  free_run.run();
  const Choice& full = free_run.at(1, 0);
  ASSERT_GE(full.text.size(), 10u);
  // A stop string taken from the middle of the greedy text, spanning a token boundary or not.
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  SamplingParams p = greedy(20);
  p.stop = {stop};
  Harness stopped(*model, config());
  stopped.add(1, kPrompts[0], p);
  stopped.run();
  const Choice& cut = stopped.at(1, 0);
  EXPECT_EQ(cut.finish, FinishReason::kStop);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  Harness limited(*model, config());
  limited.add(2, kPrompts[2], greedy(5));
  limited.run();
  EXPECT_EQ(limited.at(2, 0).finish, FinishReason::kLength);
  EXPECT_EQ(limited.at(2, 0).completion_tokens, 5u);
}

TEST(Engine, ParallelChoicesShareThePrompt) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p;
  p.n = 3;
  p.temperature = 1.0f;
  p.max_tokens = 10;
  p.seed = 7;
  Harness h(*model, config());
  h.add(1, kPrompts[3], p);
  h.run();
  ASSERT_EQ(h.results.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.at(1, i).completion_tokens, 10u);
  // One allocation and one prefill of the prompt for all three choices.
  const std::size_t prompt = model->tokenizer().encode(kPrompts[3], true).size();
  EXPECT_EQ(h.engine().stats().blocks.prefix_query_tokens, prompt);
  EXPECT_EQ(h.engine().stats().prompt_tokens_computed, prompt);
  EXPECT_EQ(h.engine().stats().tokens_generated, 30u);
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
  // Greedy choices are identical to each other and to n = 1.
  SamplingParams g = greedy(8);
  g.n = 2;
  Harness two(*model, config());
  two.add(1, kPrompts[3], g);
  two.run();
  Harness one(*model, config());
  one.add(1, kPrompts[3], greedy(8));
  one.run();
  EXPECT_EQ(two.at(1, 0).tokens, one.at(1, 0).tokens);
  EXPECT_EQ(two.at(1, 1).tokens, one.at(1, 0).tokens);
}

TEST(Engine, PoolPressurePreemptsAndRecomputesWithoutChangingOutput) {
  TG_REQUIRE_MODEL(model);
  // 8 blocks of 16 = 128 token slots for 6 requests that each grow to 45-60 tokens.
  Harness h(*model, config(8));
  for (RequestId i = 0; i < 6; ++i) h.add(i, kPrompts[i], greedy(40));
  h.run();
  EXPECT_GT(h.engine().stats().preemptions, 0u);
  EXPECT_GT(h.policy().victim_calls, 0u);  // and every request offered as a victim still had work
  for (RequestId i = 0; i < 6; ++i) {
    Harness alone(*model, config());
    alone.add(i, kPrompts[i], greedy(40));
    alone.run();
    EXPECT_EQ(alone.at(i, 0).text, h.at(i, 0).text) << kPrompts[i];
  }
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

TEST(Engine, HigherPriorityGoesFirstAndTheRestingRequestLosesNothing) {
  TG_REQUIRE_MODEL(model);
  EngineConfig one_slot = config();
  one_slot.max_running = 1;  // one sequence a step: the plan rests the low-priority request
  Harness h(*model, one_slot);
  h.add(1, kPrompts[2], greedy(16), /*priority=*/0);
  for (int i = 0; i < 4; ++i) h.engine().step();  // the low-priority request is running
  h.add(2, kPrompts[0], greedy(6), /*priority=*/3);
  h.run();
  ASSERT_EQ(h.finish_order.size(), 2u);
  EXPECT_EQ(h.finish_order[0], 2u);  // the high-priority request did not wait for the other
  EXPECT_EQ(h.engine().stats().preemptions, 0u);  // blocks sufficed: it rested, kept its KV
  Harness alone(*model, config());
  alone.add(1, kPrompts[2], greedy(16));
  alone.run();
  EXPECT_EQ(alone.at(1, 0).text, h.at(1, 0).text);  // nothing lost or repeated
}

TEST(Engine, AHigherRequestShortOfBlocksPreemptsALowerOneWhichResumesIntact) {
  TG_REQUIRE_MODEL(model);
  // 5 blocks of 16: the low-priority request grows to 4 of them, the high one needs 2.
  Harness h(*model, config(5));
  h.add(1, kPrompts[4], greedy(40), /*priority=*/0);
  for (int i = 0; i < 30; ++i) h.engine().step();
  h.add(2, kPrompts[0], greedy(8), /*priority=*/3);  // its 2 blocks are not free: 1 is
  h.run();
  ASSERT_EQ(h.finish_order.size(), 2u);
  EXPECT_EQ(h.finish_order[0], 2u);
  EXPECT_GE(h.engine().stats().preemptions, 1u);
  Harness alone(*model, config());
  alone.add(1, kPrompts[4], greedy(40));
  alone.run();
  EXPECT_EQ(alone.at(1, 0).tokens, h.at(1, 0).tokens);
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

TEST(Engine, PromptTokensAreChargedOnceWhateverThePreemptions) {
  TG_REQUIRE_MODEL(model);
  EngineConfig chunked = config();
  chunked.token_budget = 8;  // the prompt takes several steps: preempt it midway, twice
  Harness h(*model, chunked);
  h.policy().preempt_at_step = {{2, 1}, {5, 1}, {12, 1}};
  h.add(1, kPrompts[0], greedy(10));
  h.run();
  EXPECT_EQ(h.engine().stats().preemptions, 3u);
  const std::size_t prompt = h.tokens_of(kPrompts[0]).size();
  ASSERT_GT(prompt, 8u);
  EXPECT_EQ(h.policy().charged[1].first, prompt);  // recomputation is never charged
  EXPECT_EQ(h.policy().charged[1].second, h.at(1, 0).completion_tokens);
  Harness alone(*model, config());
  alone.add(1, kPrompts[0], greedy(10));
  alone.run();
  EXPECT_EQ(alone.at(1, 0).tokens, h.at(1, 0).tokens);
  EXPECT_EQ(alone.policy().charged[1].first, prompt);
}

TEST(Engine, ARequestHandedOutBeforeItsSubmissionWasDrainedStillRuns) {
  TG_REQUIRE_MODEL(model);
  // Another thread submits and enqueues between the step's inbox drain and its plan (the race in
  // EngineService::submit): the plan starts an id the engine has not registered yet.
  Harness h(*model, config());
  bool once = false;
  h.policy().before_plan = [&] {
    if (once) return;
    once = true;
    h.add(7, kPrompts[1], greedy(4));
  };
  h.engine().step();
  h.run();
  EXPECT_EQ(h.at(7, 0).completion_tokens, 4u);
  EXPECT_EQ(h.at(7, 0).finish, FinishReason::kLength);
}

TEST(Engine, CancellingARequestBeforeItForksFinishesEveryChoice) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p = greedy(8);
  p.n = 3;
  Harness h(*model, config());
  h.add(1, kPrompts[3], p);
  h.engine().cancel(1);  // before its prompt was computed: only choice 0 exists
  h.run();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(h.at(1, i).finish, FinishReason::kCancelled) << i;
    EXPECT_EQ((h.outputs[std::pair<RequestId, int>(1, i)]), 1) << i;
  }
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

TEST(Engine, CancelFreesEverything) {
  TG_REQUIRE_MODEL(model);
  Harness h(*model, config());
  h.add(1, kPrompts[0], greedy(64));
  h.add(2, kPrompts[1], greedy(64));
  for (int i = 0; i < 5; ++i) h.engine().step();
  h.engine().cancel(1);
  h.run();
  EXPECT_EQ(h.at(1, 0).finish, FinishReason::kCancelled);
  EXPECT_TRUE(h.at(2, 0).finish == FinishReason::kLength || h.at(2, 0).finish == FinishReason::kStop);
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

}  // namespace
}  // namespace tiergate::engine
