#include "engine/sampling_step.h"

#include "kernels/check.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cpu/thread_pool.h"

namespace tiergate::engine {

void SamplingStep::clear() {
  logit_rows.clear();
  params.clear();
  history_offsets.assign(1, 0);
  history_tokens.clear();
  history_counts.clear();
  bias_offsets.assign(1, 0);
  bias_tokens.clear();
  bias_values.clear();
  token_masks.clear();
  mask_index.clear();
  want_logprobs = want_logits = false;
}

void sample_on_host(std::span<const float> logits, std::size_t vocab, const SamplingStep& step, SampledStep& out,
                    kernels::cpu::ThreadPool* pool) {
  const std::size_t draws = step.size();
  TG_CHECK(step.params.size() == draws && step.history_offsets.size() == draws + 1 && vocab > 0);
  TG_CHECK(step.bias_offsets.size() == draws + 1 && step.mask_index.size() == draws);
  const std::size_t words = static_cast<std::size_t>(kernels::mask_words(static_cast<std::int32_t>(vocab)));
  TG_CHECK(logits.size() % vocab == 0);
  out.tokens.resize(draws);
  out.logprobs.resize(step.want_logprobs ? draws : 0);
  // Each draw alone: it reads its own logit row (possibly shared with other draws) and writes
  // only its own outputs, so draws run on any thread.
  auto run = [&](std::size_t first, std::size_t last) {
    for (std::size_t d = first; d < last; ++d) {
      const auto row = static_cast<std::size_t>(step.logit_rows[d]);
      TG_CHECK((row + 1) * vocab <= logits.size());
      const std::int32_t begin = step.history_offsets[d], end = step.history_offsets[d + 1];
      const std::int32_t offsets[2] = {0, end - begin};
      kernels::SamplingBatch one;
      one.logits = logits.data() + row * vocab;
      one.rows = 1;
      one.vocab = static_cast<std::int32_t>(vocab);
      one.params = &step.params[d];
      one.history_offsets = offsets;
      one.history_tokens = step.history_tokens.data() + begin;
      one.history_counts = step.history_counts.data() + begin;
      const std::int32_t bias_begin = step.bias_offsets[d], bias_end = step.bias_offsets[d + 1];
      const std::int32_t bias_offsets[2] = {0, bias_end - bias_begin};
      one.bias_offsets = bias_offsets;
      one.bias_tokens = step.bias_tokens.data() + bias_begin;
      one.bias_values = step.bias_values.data() + bias_begin;
      const std::int32_t mask_row = step.mask_index[d] >= 0 ? 0 : -1;
      if (mask_row == 0) {
        TG_CHECK((static_cast<std::size_t>(step.mask_index[d]) + 1) * words <= step.token_masks.size());
        one.token_masks = step.token_masks.data() + static_cast<std::size_t>(step.mask_index[d]) * words;
        one.mask_index = &mask_row;
      }
      one.tokens = &out.tokens[d];
      one.logprobs = step.want_logprobs ? &out.logprobs[d] : nullptr;
      kernels::cpu::sample(one);
    }
  };
  if (pool != nullptr && draws > 1) {
    pool->parallel_for(draws, run);
  } else {
    run(0, draws);
  }
}

}  // namespace tiergate::engine
