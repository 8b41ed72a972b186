// A scheduling policy as the modelled engine drives it: requests arrive; before every step the
// engine asks for the step's plan (qos/step_plan.h: which requests start, which running ones decode
// and how much each prefills), charges tokens as it processes them and reports completions.
// Implementations: tiergate's AdmissionQueue (with QoS on, or off = FCFS), which plans every step,
// and LMDeploy's former request-count policy, which only picks the next request to start (the
// default plan: every running request served, new ones started in next()'s order while the step
// has room). Single-threaded (the simulator owns it).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "qos/step_plan.h"
#include "tools/qos_sim/workload.h"

namespace tiergate::qos_sim {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  // False when the policy refuses the request (full queue, unconfigured user).
  virtual bool enqueue(const SimRequest& request, double now_s) = 0;
  virtual std::optional<std::uint64_t> next(double now_s) = 0;
  // This step's plan (the default serves every running request and starts next()'s picks).
  virtual void plan(std::span<const qos::RunningWork> running, const qos::StepCapacity& capacity, double now_s,
                    qos::StepPlan& plan);
  virtual void charge(const std::string& user, std::int64_t prompt_tokens, std::int64_t output_tokens) = 0;
  virtual void finish(std::uint64_t id) = 0;
};

}  // namespace tiergate::qos_sim
