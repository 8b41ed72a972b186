#include "gateway/connection_limiter.h"

#include "kernels/check.h"

namespace tiergate::gateway {

ConnectionLimiter::Admission ConnectionLimiter::try_acquire(const std::string& client) {
  std::lock_guard lock(mutex_);
  if (open_ >= max_total_) return Admission::kServerFull;
  auto it = per_client_.find(client);
  const std::size_t held = it == per_client_.end() ? 0 : it->second;
  if (max_per_client_ != 0 && held >= max_per_client_) return Admission::kClientFull;
  if (it == per_client_.end()) it = per_client_.emplace(client, 0).first;
  ++it->second;
  ++open_;
  return Admission::kAdmitted;
}

void ConnectionLimiter::release(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto it = per_client_.find(client);
  TG_CHECK(it != per_client_.end() && it->second > 0 && open_ > 0);
  if (--it->second == 0) per_client_.erase(it);
  --open_;
}

std::size_t ConnectionLimiter::open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

std::size_t ConnectionLimiter::open_for(const std::string& client) const {
  std::lock_guard lock(mutex_);
  auto it = per_client_.find(client);
  return it == per_client_.end() ? 0 : it->second;
}

std::size_t ConnectionLimiter::clients() const {
  std::lock_guard lock(mutex_);
  return per_client_.size();
}

}  // namespace tiergate::gateway
