// The draws of one engine step: for every sequence that gets a token, which row of the step's
// logits it reads, its sampling parameters (kernels/sampling.h) and its penalty history. The
// executor runs them where the logits are (the GPU sampler on the GPU, kernels/cpu on the host),
// so that a GPU step sends back a token and a logprob per draw instead of a row of logits.
// A row may be read by several draws: the n > 1 choices of a request fork from one prompt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/tokenizer.h"
#include "kernels/sampling.h"

namespace tiergate::kernels::cpu {
class ThreadPool;
}

namespace tiergate::engine {

struct SamplingStep {
  std::vector<std::int32_t> logit_rows;              // [draws] index into the step's logit rows
  std::vector<kernels::SamplingRowParams> params;    // [draws]
  std::vector<std::int32_t> history_offsets{0};      // [draws + 1] CSR over the two below
  std::vector<std::int32_t> history_tokens;          // distinct within a draw
  std::vector<std::int32_t> history_counts;          // times generated (0: in the prompt only)
  std::vector<std::int32_t> bias_offsets{0};         // [draws + 1] CSR over the two below (logit_bias)
  std::vector<std::int32_t> bias_tokens;             // distinct within a draw
  std::vector<float> bias_values;
  std::vector<std::uint32_t> token_masks;            // [masks, mask_words(vocab)] allowed tokens (grammar)
  std::vector<std::int32_t> mask_index;              // [draws] row of token_masks, -1: unconstrained
  bool want_logprobs = false;  // some draw needs its token's logprob
  bool want_logits = false;    // some draw needs the whole row on the host (top_logprobs)

  std::size_t size() const { return logit_rows.size(); }
  void clear();  // no draws; keeps the capacity for the next step
};

struct SampledStep {
  std::vector<TokenId> tokens;  // [draws]
  std::vector<float> logprobs;  // [draws] when want_logprobs: log-softmax of the raw logits
  std::vector<float> logits;    // [logit rows, vocab] when want_logits, in logit_rows order
};

// Runs every draw of `step` on the host over `logits` ([logit rows, vocab]) with kernels/cpu's
// sampler, spread over `pool`'s threads when given; fills out.tokens and out.logprobs (not
// out.logits).
void sample_on_host(std::span<const float> logits, std::size_t vocab, const SamplingStep& step, SampledStep& out,
                    kernels::cpu::ThreadPool* pool = nullptr);

}  // namespace tiergate::engine
