#include "tools/qos_sim/engine_model.h"

#include <algorithm>

#include "qos/check.h"

namespace tiergate::qos_sim {

StepResult EngineModel::step(Policy& policy, const std::unordered_map<std::uint64_t, SimRequest>& requests,
                             double now_s) {
  StepResult result;
  work_.clear();
  for (const Sequence& seq : running_) {
    qos::RunningWork w;
    w.id = seq.request->id;
    const bool prefilling = seq.prefilled < seq.request->prompt_tokens;
    w.decode_seqs = prefilling ? 0 : 1;
    w.prefill_seqs = prefilling ? 1 : 0;
    w.prefill_tokens = seq.request->prompt_tokens - seq.prefilled;
    w.blocks = (seq.prefilled + seq.generated) / 16 + 1;
    w.first_token_pending = seq.generated == 0;
    work_.push_back(w);
  }
  // KV memory is not modelled: the pool never runs short, so the plan never preempts.
  const qos::StepCapacity capacity{static_cast<std::int64_t>(shape_.batch_capacity), shape_.token_budget,
                                   std::int64_t{1} << 40, 16};
  policy.plan(work_, capacity, now_s, plan_);
  QOS_CHECK(plan_.preempt.empty());

  std::int64_t budget = shape_.token_budget;
  auto find = [&](std::uint64_t id) {
    return std::find_if(running_.begin(), running_.end(), [&](const Sequence& s) { return s.request->id == id; });
  };
  auto prefill = [&](Sequence& seq, std::int64_t grant) {
    const std::int64_t chunk = std::min({grant, seq.request->prompt_tokens - seq.prefilled, budget});
    if (chunk <= 0) return;
    seq.prefilled += chunk;
    budget -= chunk;
    const bool done = seq.prefilled == seq.request->prompt_tokens;
    if (done) ++seq.generated;  // the last prefill position samples the first token
    policy.charge(seq.request->user, chunk, done ? 1 : 0);
  };
  // Decode grants first (one token each), then prefill in the plan's order, then the new requests.
  for (const qos::StepGrant& g : plan_.run) {
    auto it = find(g.id);
    QOS_CHECK(it != running_.end());
    if (g.decode && budget > 0) {
      ++it->generated;
      --budget;
      policy.charge(it->request->user, 0, 1);
    }
  }
  for (const qos::StepGrant& g : plan_.run) {
    if (g.prefill_tokens > 0) prefill(*find(g.id), g.prefill_tokens);
  }
  for (const qos::StepAdmission& a : plan_.admit) {
    auto it = requests.find(a.id);
    QOS_CHECK(it != requests.end());
    running_.push_back(Sequence{&it->second});
    result.admitted.push_back(a.id);
    prefill(running_.back(), a.prefill_tokens);
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
