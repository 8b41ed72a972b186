// A plain AdmissionSource: strict priority, first come first served within a priority; a
// preempted request goes back ahead of its priority's queue. The engine's default outside the
// gateway (CLI, benchmarks, tests). Thread-safe.
#pragma once

#include <deque>
#include <mutex>

#include "engine/admission_source.h"

namespace tiergate::engine {

class FifoAdmission : public AdmissionSource {
 public:
  void enqueue(RequestId id, std::size_t prompt_tokens, int priority = 0);
  std::size_t waiting() const;

  std::optional<PulledRequest> pull(std::size_t prompt_token_limit) override;
  bool waiting_above(int priority) const override;
  void preempted(RequestId id) override;
  void charge(RequestId, std::size_t, std::size_t) override {}
  void finished(RequestId id) override;

 private:
  struct Entry {
    RequestId id;
    std::size_t prompt_tokens;
    int priority;
  };
  mutable std::mutex mutex_;
  std::deque<Entry> waiting_;
  std::deque<Entry> running_;
};

}  // namespace tiergate::engine
