// One sequence's sampling state: its parameters, the seed of its draws, how many tokens it has
// generated and, when penalties are on, the tokens they apply to (prompt, and output with counts).
// Each step it adds its draw to the step's SamplingStep; the executor runs the draws where the
// logits are (engine/sampling_step.h) and result() turns a draw's outcome into the token and the
// logprobs the request asked for.
//
// The draw is a counter-based function of (seed, tokens generated so far) (kernels/sampling.h),
// so the same request gives the same output whatever else is in the batch, on the CPU or the GPU,
// and after a preemption. The seed comes from the request's seed and the choice index (n > 1).
// Semantics: the grammar's mask (constrained decoding) and logit_bias, penalties (repetition over
// prompt and output, presence and frequency over output), then greedy at temperature 0, or
// temperature, top-k, min-p and top-p, then one draw. The grammar's state moves with every token
// accepted, so it lives as long as the sequence, preemptions included (a resumed request
// recomputes its KV, never its tokens).
// Engine-thread only.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/grammar.h"
#include "engine/sampling_params.h"
#include "engine/sampling_step.h"
#include "engine/tokenizer.h"

namespace tiergate::engine {

struct SampledToken {
  TokenId token = 0;
  float logprob = 0;                              // of the chosen token, under the model's raw logits
  std::vector<std::pair<TokenId, float>> top;     // top_logprobs alternatives, most likely first
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, std::uint64_t seed, std::span<const TokenId> prompt);

  // Appends this sequence's next draw, which reads row `logit_row` of the step's logits.
  void add_draw(SamplingStep& step, std::int32_t logit_row) const;
  // The outcome of draw `draw` of `step`; `out.logits` must hold the rows when step.want_logits.
  SampledToken result(const SamplingStep& step, const SampledStep& out, std::size_t draw, std::size_t vocab) const;
  // Records the token generated (penalties, the counter of the next draw, the grammar's state).
  // Returns true when the grammar ends the generation here: its match is complete, or the token
  // ended it (an end-of-generation token) or could not continue it.
  bool accept(TokenId token);
  bool constrained() const { return params_.grammar != nullptr; }
  // Works on the grammar's mask for the next draw within `budget` (Grammar::prepare_mask), taking
  // what it spent; true when the next draw needs no more mask work (or the draw is unconstrained).
  bool prepare_mask(std::size_t& budget) const {
    return !params_.grammar || grammar_state_ < 0 || params_.grammar->prepare_mask(grammar_state_, budget);
  }

  // The next token from one row of logits on the host: add_draw, sample_on_host and result.
  SampledToken sample(std::span<const float> logits) const;

 private:
  SamplingParams params_;
  std::uint64_t seed_;
  std::uint64_t generated_ = 0;
  Grammar::State grammar_state_ = 0;  // with params_.grammar
  // Penalised tokens, (token, times generated), each token once; empty when no penalty is on.
  std::vector<std::pair<TokenId, std::int32_t>> history_;
  std::unordered_map<TokenId, std::size_t> history_index_;
};

// The `k` most likely tokens of `logits` with their log-softmax, most likely first (ties: lower id).
std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, std::size_t k);
// The log-softmax of `logits` at `token`.
float token_logprob(std::span<const float> logits, TokenId token);

}  // namespace tiergate::engine
