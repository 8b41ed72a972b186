// The CPU implementation of kernels/sampling.h, and the reference the GPU kernel is tested
// against: one row at a time, probabilities and their sums in double, candidates walked in the
// sampler's order (scaled logit descending, token ascending) with the shared penalties and
// counter-based draw. Only the prefix of that order a walk reaches gets sorted, so a row of a
// large vocabulary costs a selection or two rather than a full sort. The engine samples with it
// on the host (engine/sampling_step.h). Pure function over caller-owned host memory; any thread.
// Invalid rows (sampling_row_error) abort.
#pragma once

#include <cstdint>

#include "kernels/sampling.h"

namespace tiergate::kernels::cpu {

// How a row's draw was decided, for tests that must tell a real disagreement with another
// backend from a draw that fell within rounding of a boundary.
struct SampleTrace {
  bool greedy = false;
  std::int32_t kept = 0;          // candidates left after top-k, min-p and top-p
  double kept_mass = 0;           // their probability (top-k-normalised)
  double draw = 0;                // uniform · kept_mass
  // Distance (in top-k-normalised probability) from the draw to the nearest edge of the chosen
  // token's interval of the cumulative mass, and from top_p to the nearest cumulative mass that
  // decided the top-p cut (1 when top-p is disabled).
  double draw_margin = 1;
  double top_p_margin = 1;
};

// Fills batch.tokens (and batch.logprobs when not null); traces: [rows] or null.
void sample(const SamplingBatch& batch, SampleTrace* traces = nullptr);

}  // namespace tiergate::kernels::cpu
