// Logits processing and sampling, one row per sequence: the params struct both backends take
// (kernels/cpu/sampling.h is the reference, kernels/cuda/sampling.h the GPU kernel), and the few
// functions whose arithmetic must be the same bits on host and device (penalties, the random
// draw). Plain C++17 so that .cu files include it too; CUDA qualifiers hide behind TG_HOST_DEVICE.
//
// Semantics follow engine/sampler.cpp, in its order: the allowed-token mask (constrained decoding:
// a disallowed token's logit is -inf) and the logit bias (OpenAI's logit_bias, added to the raw
// logit), then repetition penalty (over prompt and output), presence and frequency penalties (over
// output), then greedy at temperature 0, or temperature, top-k, min-p, top-p (both on the
// top-k-normalised probabilities) and one draw. Tokens of logit -inf are never drawn. Differences from
// the engine's Sampler, on purpose:
//   - the draw comes from a counter-based generator of (seed, step), not a per-sequence
//     std::mt19937_64 stream, so that any backend and any batch composition give the same draw;
//   - presence + frequency·count is one fused multiply-add (fma(frequency, count, presence)), so
//     that compiler contraction cannot make host and device disagree in the last bit;
//   - penalties read a per-row list of distinct (token, output count) pairs (count 0 = prompt
//     only) instead of the prompt span plus a count map;
//   - only the chosen token's logprob is produced (no top_logprobs alternatives).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/host_device.h"
#include "kernels/mix64.h"

namespace tiergate::kernels {

// One sequence's sampling parameters (valid ones: see sampling_row_error).
struct SamplingRowParams {
  float temperature = 1.0f;         // 0 = greedy: argmax of the penalised logits, lowest id on ties
  std::int32_t top_k = 0;           // <= 0 or >= vocab: disabled
  float top_p = 1.0f;               // (0, 1]; 1: disabled
  float min_p = 0.0f;               // [0, 1]; 0: disabled
  float repetition_penalty = 1.0f;  // > 0; 1: disabled
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;           // which draw of the sequence this is (e.g. tokens generated so far)
};

// A batch of rows to sample. A view: every pointer is owned by the caller and lives in the memory
// of the backend that runs it (host for kernels/cpu, device for kernels/cuda).
struct SamplingBatch {
  const float* logits = nullptr;  // [rows, vocab], raw model output; never modified
  std::int32_t rows = 0;
  std::int32_t vocab = 0;
  const SamplingRowParams* params = nullptr;  // [rows]
  // Penalty history in CSR form: row r owns entries [history_offsets[r], history_offsets[r + 1]).
  // Tokens within a row must be distinct and in [0, vocab). history_offsets null: no history
  // (tokens and counts may be null when there are no entries).
  const std::int32_t* history_offsets = nullptr;  // [rows + 1], history_offsets[0] == 0
  const std::int32_t* history_tokens = nullptr;   // [entries] token ids seen in prompt or output
  const std::int32_t* history_counts = nullptr;   // [entries] times generated (0: prompt only)
  // Logit bias in the same CSR form: row r adds bias_values[e] to the raw logit of bias_tokens[e]
  // for e in [bias_offsets[r], bias_offsets[r + 1]); tokens distinct within a row, in [0, vocab);
  // a value of -inf bans the token. bias_offsets null: no bias.
  const std::int32_t* bias_offsets = nullptr;  // [rows + 1], bias_offsets[0] == 0
  const std::int32_t* bias_tokens = nullptr;   // [entries]
  const float* bias_values = nullptr;          // [entries]
  // Allowed tokens: row r with mask_index[r] >= 0 may draw only the tokens whose bit is set in
  // token_masks row mask_index[r] (bit v % 32 of word v / 32); at least one must be. mask_index
  // null, or a row's index < 0: every token is allowed.
  const std::uint32_t* token_masks = nullptr;  // [masks, mask_words(vocab)]
  const std::int32_t* mask_index = nullptr;    // [rows]
  std::int32_t* tokens = nullptr;                 // [rows] out: the chosen token
  float* logprobs = nullptr;                      // [rows] out, optional: log-softmax of the raw logits
};

// 32-bit words of one allowed-token mask row.
TG_HOST_DEVICE inline std::int32_t mask_words(std::int32_t vocab) { return (vocab + 31) / 32; }
TG_HOST_DEVICE inline bool mask_allows(const std::uint32_t* mask, std::int32_t token) {
  return (mask[token >> 5] >> (token & 31)) & 1u;
}

// Null when `p` is valid, else the name of the first bad field. Both backends assume valid rows
// (the engine validates requests once, engine/sampling_params.h); the GPU does not check.
inline const char* sampling_row_error(const SamplingRowParams& p) {
  if (!(p.temperature >= 0.0f) || p.temperature > 1e30f) return "temperature";
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return "top_p";
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return "min_p";
  if (!(p.repetition_penalty > 0.0f) || p.repetition_penalty > 1e30f) return "repetition_penalty";
  if (!(p.presence_penalty > -1e30f && p.presence_penalty < 1e30f)) return "presence_penalty";
  if (!(p.frequency_penalty > -1e30f && p.frequency_penalty < 1e30f)) return "frequency_penalty";
  return nullptr;
}

// A raw logit after the row's penalties, given how often the token was generated (`output_count`;
// 0 when it appeared in the prompt only). Tokens absent from the history are not penalised.
TG_HOST_DEVICE inline float apply_penalties(float logit, std::int32_t output_count, const SamplingRowParams& p) {
  float l = logit;
  if (p.repetition_penalty != 1.0f) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
  if ((p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && output_count > 0) {
#if defined(__CUDA_ARCH__)
    l -= fmaf(p.frequency_penalty, static_cast<float>(output_count), p.presence_penalty);
#else
    l -= std::fma(p.frequency_penalty, static_cast<float>(output_count), p.presence_penalty);
#endif
  }
  return l;
}

// The draw of (seed, step): uniform in [0, 1) with 53 random bits, the same double on every
// backend (integer hashing, one exact conversion and one exact scaling by 2^-53).
TG_HOST_DEVICE inline double sampling_uniform(std::uint64_t seed, std::uint64_t step) {
  const std::uint64_t bits = mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + step * 0x9e3779b97f4a7c15ULL);
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace tiergate::kernels
