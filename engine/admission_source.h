// How the engine pulls work. The engine knows requests by id and integer priority only; the
// gateway implements this with qos::AdmissionQueue (groups, quotas, fair share), and FifoAdmission
// is the plain first-come-first-served implementation for the CLI and tests. The engine thread is
// the only caller; implementations that other threads feed must synchronise themselves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tiergate::engine {

using RequestId = std::uint64_t;

struct PulledRequest {
  RequestId id = 0;
  int priority = 0;  // larger = more important
};

class AdmissionSource {
 public:
  virtual ~AdmissionSource() = default;
  // The request to start now, if its prompt fits in `prompt_token_limit`; nullopt otherwise
  // (nothing waits, or the policy's pick does not fit: it is not bypassed).
  virtual std::optional<PulledRequest> pull(std::size_t prompt_token_limit) = 0;
  // Whether a waiting request has a priority strictly above `priority` (grounds for preemption).
  virtual bool waiting_above(int priority) const = 0;
  // A running request was preempted: it waits again, ahead of its user's other requests.
  virtual void preempted(RequestId id) = 0;
  // Tokens processed for a request: prompt tokens as prefilled, output tokens as generated.
  virtual void charge(RequestId id, std::size_t prompt_tokens, std::size_t output_tokens) = 0;
  // The request left the engine (finished, cancelled or failed).
  virtual void finished(RequestId id) = 0;
};

}  // namespace tiergate::engine
