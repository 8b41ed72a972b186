#include "engine/fifo_admission.h"

#include <algorithm>

namespace tiergate::engine {

void FifoAdmission::enqueue(RequestId id, std::size_t prompt_tokens, int priority) {
  std::lock_guard lock(mutex_);
  waiting_.push_back({id, prompt_tokens, priority});
}

std::size_t FifoAdmission::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

std::optional<PulledRequest> FifoAdmission::pull(std::size_t prompt_token_limit) {
  std::lock_guard lock(mutex_);
  // Highest priority first, first come first served within a priority.
  auto best = waiting_.begin();
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->priority > best->priority) best = it;
  }
  if (best == waiting_.end() || best->prompt_tokens > prompt_token_limit) return std::nullopt;
  const Entry e = *best;
  waiting_.erase(best);
  running_.push_back(e);
  return PulledRequest{e.id, e.priority};
}

bool FifoAdmission::waiting_above(int priority) const {
  std::lock_guard lock(mutex_);
  return std::any_of(waiting_.begin(), waiting_.end(), [&](const Entry& e) { return e.priority > priority; });
}

void FifoAdmission::preempted(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(running_.begin(), running_.end(), [&](const Entry& e) { return e.id == id; });
  if (it == running_.end()) return;
  waiting_.push_front(*it);
  running_.erase(it);
}

void FifoAdmission::finished(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(running_.begin(), running_.end(), [&](const Entry& e) { return e.id == id; });
  if (it != running_.end()) running_.erase(it);
}

}  // namespace tiergate::engine
