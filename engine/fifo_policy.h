// A plain SchedulingPolicy: strict priority, first come first served within a priority. Each step
// serves running requests and waiting ones in that order (a waiting request ahead of running ones
// of lower priority): decode tokens, then prefill, then starts while sequences, tokens and blocks
// last; a waiting request short of blocks preempts lower-priority running ones (lowest priority,
// most recently admitted first) when that is enough, and otherwise nothing starts past it. A
// preempted request goes back ahead of its priority's queue. The engine's default outside the
// gateway (CLI, benchmarks, tests). Thread-safe (enqueue may come from any thread).
#pragma once

#include <deque>
#include <mutex>
#include <unordered_map>

#include "engine/scheduling_policy.h"

namespace tiergate::engine {

class FifoPolicy : public SchedulingPolicy {
 public:
  void enqueue(RequestId id, std::size_t prompt_tokens, int priority = 0);
  std::size_t waiting() const;

  void plan_step(std::span<const RunningRequest> running, const StepLimits& limits, StepPlan& plan) override;
  RequestId memory_victim(std::span<const RunningRequest> running) override;
  void preempted(RequestId id, std::size_t resume_tokens, std::size_t resume_blocks, bool streamed) override;
  void charge(RequestId, std::size_t, std::size_t) override {}
  void finished(RequestId id) override;

 private:
  struct Entry {
    RequestId id = 0;
    std::size_t tokens = 0;  // to compute (and hold) to start
    std::size_t blocks = 0;  // 0: as many as the tokens take
    int priority = 0;
  };
  mutable std::mutex mutex_;
  std::deque<Entry> waiting_;                       // arrival order (preempted ones pushed in front)
  std::unordered_map<RequestId, Entry> running_;
};

}  // namespace tiergate::engine
