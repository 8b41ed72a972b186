// engine/engine.*: continuous batching end to end on the default model — batch invariance through
// chunked prefill, seeded sampling, stop strings, max_tokens, n > 1 with copy-on-write, plans that
// rest or preempt requests (by priority and for lack of blocks) without changing any output,
// prompt tokens charged once whatever the recomputation, requests handed out before their
// submission was drained, and cancellation finishing every choice and freeing every block.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <regex>

#include "engine/fifo_policy.h"
#include "engine/grammar.h"
#include "engine/tool_calls.h"
#include "kernels/check.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

struct Choice {
  std::string text;
  std::vector<TokenId> tokens;
  FinishReason finish = FinishReason::kNone;
  std::size_t completion_tokens = 0;
  std::vector<SampledToken> prompt_logprobs;
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
    c.prompt_logprobs.insert(c.prompt_logprobs.end(), o.prompt_logprobs.begin(), o.prompt_logprobs.end());
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


TEST(Engine, LogitBiasMovesTheGreedyTokenThroughTheSampler) {
  TG_REQUIRE_MODEL(model);
  Harness plain(*model, config());
  plain.add(1, kPrompts[0], greedy(1));
  plain.run();
  ASSERT_EQ(plain.at(1, 0).tokens.size(), 1u);
  const TokenId top = plain.at(1, 0).tokens[0];
  SamplingParams banned = greedy(1);
  banned.logit_bias = {{top, -100.0f}};
  SamplingParams forced = greedy(1);
  const TokenId other = top == 42 ? 43 : 42;
  forced.logit_bias = {{other, 100.0f}};
  Harness h(*model, config());
  h.add(1, kPrompts[0], banned);
  h.add(2, kPrompts[0], forced);
  h.run();
  ASSERT_EQ(h.at(1, 0).tokens.size(), 1u);
  EXPECT_NE(h.at(1, 0).tokens[0], top);
  EXPECT_EQ(h.at(2, 0).tokens, std::vector<TokenId>{other});
}

// Echo with logprobs: a greedy continuation scored as a prompt has, at each of its generated
// positions, the scored token as the most likely one, so the scores are the prompt's own (not off
// by one) and come out once whatever the chunking or preemptions.
TEST(Engine, PromptLogprobsScoreEachPromptTokenOnceWhateverThePreemptions) {
  TG_REQUIRE_MODEL(model);
  Harness gen(*model, config());
  gen.add(1, kPrompts[0], greedy(12));
  gen.run();
  std::vector<TokenId> prompt = gen.tokens_of(kPrompts[0]);
  const std::size_t asked = prompt.size();
  prompt.insert(prompt.end(), gen.at(1, 0).tokens.begin(), gen.at(1, 0).tokens.end());

  SamplingParams p = greedy(2);
  p.logprobs = true;
  p.top_logprobs = 2;
  p.prompt_logprobs = true;
  auto scored = [&](EngineConfig c, std::map<std::size_t, RequestId> preempt) {
    Harness h(*model, c);
    h.policy().preempt_at_step = std::move(preempt);
    h.engine().submit({1, prompt, p});
    h.policy().enqueue(1, prompt.size(), 0);
    h.run();
    EXPECT_EQ(h.policy().charged[1].first, prompt.size());  // scoring charges the prompt once
    EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
    return h.at(1, 0).prompt_logprobs;
  };
  const std::vector<SampledToken> whole = scored(config(), {});
  ASSERT_EQ(whole.size(), prompt.size() - 1);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(whole[i].token, prompt[i + 1]) << i;
    EXPECT_LE(whole[i].logprob, 0.0f) << i;
    ASSERT_EQ(whole[i].top.size(), 2u) << i;
    if (i + 1 >= asked) {  // generated greedily from here: the scored token is the top one
      EXPECT_EQ(whole[i].top[0].first, whole[i].token) << i;
      EXPECT_FLOAT_EQ(whole[i].top[0].second, whole[i].logprob) << i;
    }
  }
  EngineConfig chunked = config();
  chunked.token_budget = 8;
  const std::vector<SampledToken> preempted = scored(chunked, {{2, 1}, {4, 1}, {9, 1}});
  ASSERT_EQ(preempted.size(), whole.size());
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(preempted[i].token, whole[i].token) << i;
    EXPECT_NEAR(preempted[i].logprob, whole[i].logprob, 1e-3) << i;
  }
}

std::shared_ptr<const Grammar> compiled(const Model& model, GrammarSpec spec) {
  static GrammarCache cache;
  auto g = cache.get(spec, model.tokenizer());
  TG_CHECK(std::holds_alternative<std::shared_ptr<const Grammar>>(g));
  return std::get<std::shared_ptr<const Grammar>>(g);
}

// The grammar's state lives with the sequence: preempted and resumed (recomputed) mid-answer, a
// constrained request writes what it writes alone, matching the expression, and its tokens are
// charged as any others.
TEST(Engine, ConstrainedOutputSurvivesPreemptionAndIsChargedLikeAnyOther) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p = greedy(24);
  const std::string expression = "(yes|no), [a-z ]{3,30}\\.";
  p.grammar = compiled(*model, {GrammarSpec::Kind::kRegex, expression, false, "guided_regex"});
  Harness alone(*model, config());
  alone.add(1, kPrompts[1], p);
  alone.run();
  const Choice& a = alone.at(1, 0);
  EXPECT_TRUE(std::regex_match(a.text, std::regex(expression))) << a.text;
  EXPECT_EQ(a.finish, FinishReason::kStop);

  Harness h(*model, config());
  h.add(1, kPrompts[1], p);
  h.add(2, kPrompts[2], greedy(24));  // an unconstrained neighbour in the same batches
  h.policy().preempt_at_step = {{4, 1}, {9, 1}};  // after the prompt: mid-answer
  h.run();
  EXPECT_EQ(h.engine().stats().preemptions, 2u);
  EXPECT_EQ(h.at(1, 0).tokens, a.tokens);
  EXPECT_EQ(h.at(1, 0).text, a.text);
  EXPECT_EQ(h.policy().charged[1].first, h.tokens_of(kPrompts[1]).size());
  EXPECT_EQ(h.policy().charged[1].second, a.tokens.size());
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

// A grammar each of whose masks costs more than a step's mask work ((.?){500}: every state's
// closure holds hundreds of NFA states, and nearly every token continues it): its sequence rests
// while a mask is computed over several steps, and its neighbour decodes a token every step.
TEST(Engine, ACostlyGrammarsMasksAreComputedOverStepsWhileItsNeighbourDecodes) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p = greedy(4);
  p.grammar = compiled(*model, {GrammarSpec::Kind::kRegex, "(.?){500}", false, "guided_regex"});
  Harness h(*model, config());
  h.add(1, kPrompts[1], p);
  h.add(2, kPrompts[2], greedy(16));
  std::size_t steps = 0;
  for (; steps < 1000 && h.at(2, 0).tokens.size() < 16; ++steps) h.engine().step();
  EXPECT_GT(h.engine().stats().mask_waits, 0u);
  // Its prompt's step drew its first token; each step after it, one more: it never waited.
  EXPECT_EQ(steps, 16u);
  h.run();
  EXPECT_EQ(h.at(1, 0).tokens.size(), 4u);
  EXPECT_EQ(h.at(2, 0).tokens.size(), 16u);
  EXPECT_EQ(h.engine().stats().blocks.active_blocks, 0u);
}

TEST(Engine, AJsonSchemaConstrainedAnswerParsesWithItsRequiredFields) {
  TG_REQUIRE_MODEL(model);
  SamplingParams p = greedy(60);
  p.grammar = compiled(*model, {GrammarSpec::Kind::kJsonSchema,
                                R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},)"
                                R"("age":{"type":"integer","minimum":0,"maximum":150}},"required":["name","age"],)"
                                R"("additionalProperties":false})",
                                true, "response_format"});
  Harness h(*model, config());
  h.add(1, kPrompts[1], p);
  h.run();
  const Choice& c = h.at(1, 0);
  EXPECT_EQ(c.finish, FinishReason::kStop) << c.text;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(simdjson::padded_string(c.text)).get(doc), simdjson::SUCCESS) << c.text;
  std::string_view name;
  std::int64_t age = -1;
  EXPECT_EQ(doc["name"].get_string().get(name), simdjson::SUCCESS) << c.text;
  EXPECT_EQ(doc["age"].get_int64().get(age), simdjson::SUCCESS) << c.text;
  EXPECT_LE(name.size(), 12u);
  EXPECT_TRUE(age >= 0 && age <= 150) << c.text;
}

// tool_choice required: whatever the model would rather write, the answer is one call of an
// offered tool in the template's format, whose arguments follow the tool's schema.
TEST(Engine, ARequiredToolCallIsEnforcedAndParsesBack) {
  TG_REQUIRE_MODEL(model);
  const ToolCallFormat format = hermes_tool_call_format();
  const std::vector<ToolDefinition> tools = {
      {"get_weather", "", R"({"type":"object","properties":{"city":{"type":"string","maxLength":20}},"required":["city"],"additionalProperties":false})", ""},
      {"get_time", "", R"({"type":"object","properties":{},"additionalProperties":false})", ""}};
  const auto spec = tool_call_grammar(format, tools, {ToolChoice::Mode::kRequired, ""}, false);
  ASSERT_TRUE(spec.has_value());
  SamplingParams p = greedy(64);
  p.grammar = compiled(*model, *spec);
  Harness h(*model, config());
  h.add(1, kPrompts[0], p);  // a question no tool was asked about
  h.run();
  const Choice& c = h.at(1, 0);
  EXPECT_EQ(c.finish, FinishReason::kStop) << c.text;
  const ParsedToolCalls parsed = parse_tool_calls(format, c.text, "call_");
  ASSERT_EQ(parsed.calls.size(), 1u) << c.text;
  EXPECT_EQ(parsed.content, "");
  const ToolCall& call = parsed.calls[0];
  ASSERT_TRUE(call.name == "get_weather" || call.name == "get_time") << c.text;
  simdjson::dom::parser parser;
  simdjson::dom::object args;
  ASSERT_EQ(parser.parse(simdjson::padded_string(call.arguments)).get_object().get(args), simdjson::SUCCESS) << c.text;
  if (call.name == "get_weather") {
    std::string_view city;
    EXPECT_EQ(args["city"].get_string().get(city), simdjson::SUCCESS) << c.text;
    EXPECT_EQ(args.size(), 1u);
  } else {
    EXPECT_EQ(args.size(), 0u);
  }
}

}  // namespace
}  // namespace tiergate::engine
