// Caps on open connections: server-wide and per client address, checked when a connection is
// accepted, so that one address (or a botnet's worth of idle sockets from one) cannot take every
// slot. The transport owns one; any thread may call it (one mutex, held for a map look-up).
// Behind a load balancer every connection comes from the balancer: set per_client to 0 there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace tiergate::gateway {

class ConnectionLimiter {
 public:
  enum class Admission { kAdmitted, kServerFull, kClientFull };

  // per_client == 0: no per-address cap.
  ConnectionLimiter(std::size_t max_total, std::size_t max_per_client)
      : max_total_(max_total), max_per_client_(max_per_client) {}

  // kAdmitted: the caller holds one slot of `client` and gives it back with release(client).
  // free -> held (per client and in total)
  Admission try_acquire(const std::string& client);
  // held -> free. Releasing a slot that is not held is a bug (CHECK).
  void release(const std::string& client);

  std::size_t open() const;
  std::size_t open_for(const std::string& client) const;
  std::size_t clients() const;  // addresses holding at least one slot

 private:
  const std::size_t max_total_;
  const std::size_t max_per_client_;
  mutable std::mutex mutex_;
  std::size_t open_ = 0;
  std::unordered_map<std::string, std::size_t> per_client_;  // only addresses with open > 0
};

}  // namespace tiergate::gateway
