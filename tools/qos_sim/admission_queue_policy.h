// tiergate's own policy in the simulator: qos::AdmissionQueue behind the Policy interface. With a
// config whose enable_user_qos is false it is the FCFS baseline.
#pragma once

#include <memory>
#include <string>

#include "qos/admission_queue.h"
#include "tools/qos_sim/policy.h"

namespace tiergate::qos_sim {

class AdmissionQueuePolicy : public Policy {
 public:
  AdmissionQueuePolicy(std::string name, std::shared_ptr<const qos::Config> config)
      : name_(std::move(name)), queue_(std::move(config)) {}

  std::string name() const override { return name_; }
  bool enqueue(const SimRequest& request, double now_s) override;
  std::optional<std::uint64_t> next(double now_s) override;
  void plan(std::span<const qos::RunningWork> running, const qos::StepCapacity& capacity, double now_s,
            qos::StepPlan& plan) override {
    queue_.plan_step(running, capacity, at(now_s), plan);
  }
  void charge(const std::string& user, std::int64_t prompt_tokens, std::int64_t output_tokens) override {
    queue_.charge(user, prompt_tokens, output_tokens);
  }
  void finish(std::uint64_t id) override { queue_.finish(id); }

  const qos::AdmissionQueue& queue() const { return queue_; }

 private:
  static qos::Clock::time_point at(double seconds);

  std::string name_;
  qos::AdmissionQueue queue_;
};

}  // namespace tiergate::qos_sim
