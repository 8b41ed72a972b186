// A modelled engine for replaying workloads through a Policy: continuous batching with a per-step
// sequence capacity and token budget. Each step asks the policy for its plan (qos/step_plan.h),
// gives the granted decoding sequences one token each, then prefills as granted (finishing a
// prefill yields the first output token), starts the plan's new requests, charges the tokens to
// their users as they are processed, and reports completions. Running requests the plan leaves
// out rest. Time advances by step_base_s + step_per_token_s * tokens. Single-threaded; KV memory
// and preemption are not modelled.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "qos/step_plan.h"
#include "tools/qos_sim/policy.h"
#include "tools/qos_sim/workload.h"

namespace tiergate::qos_sim {

struct EngineShape {
  std::int64_t token_budget = 2048;  // tokens processed per step, decode + prefill
  std::size_t batch_capacity = 16;   // sequences one step carries
  double step_base_s = 0.015;
  double step_per_token_s = 0.00002;
};

struct StepResult {
  double duration_s = 0;               // 0 when nothing ran
  std::vector<std::uint64_t> admitted;
  std::vector<std::uint64_t> finished;
  std::int64_t tokens = 0;
};

class EngineModel {
 public:
  explicit EngineModel(EngineShape shape) : shape_(shape) {}

  // `requests` maps every id the policy may return to its request.
  StepResult step(Policy& policy, const std::unordered_map<std::uint64_t, SimRequest>& requests,
                  double now_s);

  std::size_t running() const { return running_.size(); }
  const EngineShape& shape() const { return shape_; }

 private:
  struct Sequence {
    const SimRequest* request;
    std::int64_t prefilled = 0;
    std::int64_t generated = 0;
  };

  EngineShape shape_;
  std::deque<Sequence> running_;  // admission order
  std::vector<qos::RunningWork> work_;
  qos::StepPlan plan_;
};

}  // namespace tiergate::qos_sim
