#include "tools/qos_sim/policy.h"

#include <algorithm>

namespace tiergate::qos_sim {

void Policy::plan(std::span<const qos::RunningWork> running, const qos::StepCapacity& capacity, double now_s,
                  qos::StepPlan& plan) {
  // An engine that serves every running request each step (decode first, then prefill in admission
  // order) and starts next()'s picks while the step has sequences and tokens left.
  plan.clear();
  std::int64_t seqs = capacity.max_seqs, tokens = capacity.token_budget;
  std::vector<qos::StepGrant> grants;
  for (const qos::RunningWork& w : running) {
    qos::StepGrant g{w.id, false, 0};
    if (w.decode_seqs > 0 && w.decode_seqs <= seqs && w.decode_seqs <= tokens) {
      g.decode = true;
      seqs -= w.decode_seqs;
      tokens -= w.decode_seqs;
    }
    grants.push_back(g);
  }
  for (std::size_t i = 0; i < running.size(); ++i) {
    if (running[i].prefill_tokens == 0 || tokens == 0 || running[i].prefill_seqs > seqs) continue;
    grants[i].prefill_tokens = std::min(running[i].prefill_tokens, tokens);
    tokens -= grants[i].prefill_tokens;
    seqs -= running[i].prefill_seqs;
  }
  for (const qos::StepGrant& g : grants) {
    if (g.decode || g.prefill_tokens > 0) plan.run.push_back(g);
  }
  // New requests start while the step has sequences left; each may prefill what the step's tokens
  // still allow once the earlier ones took theirs (the engine model caps the grants in order).
  while (seqs > 0) {
    const std::optional<std::uint64_t> id = next(now_s);
    if (!id) break;
    plan.admit.push_back({*id, tokens, "", 0, true});
    seqs -= 1;
  }
}

}  // namespace tiergate::qos_sim
