// Turns one sequence's logits into its next token: penalties (repetition over prompt and output,
// presence and frequency over output), then greedy at temperature 0, or temperature, top-k, top-p
// and min-p filtering and a draw from the sequence's own random stream. The stream is seeded from
// the request (seed, and the choice index for n > 1), so the same request gives the same output
// whatever else is in the batch. One Sampler per sequence; engine-thread only.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/sampling_params.h"
#include "engine/tokenizer.h"

namespace tiergate::engine {

struct SampledToken {
  TokenId token = 0;
  float logprob = 0;                              // of the chosen token, under the model's raw logits
  std::vector<std::pair<TokenId, float>> top;     // top_logprobs alternatives, most likely first
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, std::uint64_t seed);

  // logits: [vocab], modified in place. `prompt` and the tokens generated so far feed the penalties.
  SampledToken sample(std::span<float> logits, std::span<const TokenId> prompt);
  // Records the token generated (penalties and counts).
  void accept(TokenId token);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<TokenId, int> output_counts_;
  std::vector<std::pair<float, TokenId>> candidates_;  // scratch
};

}  // namespace tiergate::engine
