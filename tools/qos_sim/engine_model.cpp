#include "tools/qos_sim/engine_model.h"

#include <algorithm>

#include "qos/check.h"

namespace tiergate::qos_sim {

StepResult EngineModel::step(Policy& policy, const std::unordered_map<std::uint64_t, SimRequest>& requests,
                             double now_s) {
  StepResult result;
  while (running_.size() < shape_.batch_capacity) {
    const std::optional<std::uint64_t> id = policy.next(now_s);
    if (!id) break;
    auto it = requests.find(*id);
    QOS_CHECK(it != requests.end());
    running_.push_back(Sequence{&it->second});
    result.admitted.push_back(*id);
  }

  std::int64_t budget = shape_.token_budget;
  // Decode first: one token for every sequence past its prefill.
  for (Sequence& seq : running_) {
    if (budget == 0) break;
    if (seq.prefilled < seq.request->prompt_tokens || seq.generated == 0) continue;
    ++seq.generated;
    --budget;
    policy.charge(seq.request->user, 0, 1);
  }
  // Then prefill chunks, oldest admission first.
  for (Sequence& seq : running_) {
    if (budget == 0) break;
    const std::int64_t left = seq.request->prompt_tokens - seq.prefilled;
    if (left == 0) continue;
    const std::int64_t chunk = std::min(left, budget);
    seq.prefilled += chunk;
    budget -= chunk;
    const bool done = seq.prefilled == seq.request->prompt_tokens;
    if (done) ++seq.generated;  // the last prefill position samples the first token
    policy.charge(seq.request->user, chunk, done ? 1 : 0);
  }
  result.tokens = shape_.token_budget - budget;

  for (auto it = running_.begin(); it != running_.end();) {
    if (it->generated >= it->request->output_tokens) {
      result.finished.push_back(it->request->id);
      policy.finish(it->request->id);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  if (result.tokens > 0) {
    result.duration_s = shape_.step_base_s + shape_.step_per_token_s * static_cast<double>(result.tokens);
  }
  return result;
}

}  // namespace tiergate::qos_sim
