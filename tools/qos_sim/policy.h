// A scheduling policy as the modelled engine drives it: requests arrive, the engine pulls the next
// one when it has a batch slot, charges tokens as it processes them and reports completions.
// Implementations: tiergate's AdmissionQueue (with QoS on, or off = FCFS) and LMDeploy's former
// request-count policy. Single-threaded (the simulator owns it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tools/qos_sim/workload.h"

namespace tiergate::qos_sim {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  // False when the policy refuses the request (full queue, unconfigured user).
  virtual bool enqueue(const SimRequest& request, double now_s) = 0;
  virtual std::optional<std::uint64_t> next(double now_s) = 0;
  virtual void charge(const std::string& user, std::int64_t prompt_tokens, std::int64_t output_tokens) = 0;
  virtual void finish(std::uint64_t id) = 0;
};

}  // namespace tiergate::qos_sim
