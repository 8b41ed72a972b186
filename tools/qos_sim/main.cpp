// qos-sim: replays a JSONL workload through the admission queue against a modelled engine and
// prints, side by side, what tiergate's policy, FCFS and LMDeploy's former policy give each user.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "qos/config_parser.h"
#include "tools/qos_sim/admission_queue_policy.h"
#include "tools/qos_sim/lmdeploy_policy.h"
#include "tools/qos_sim/report.h"
#include "tools/qos_sim/simulator.h"

namespace {

constexpr const char* kUsage =
    "usage: qos-sim --workload FILE.jsonl [--config qos_config.json] [--policy all|tiergate|fcfs|lmdeploy]\n"
    "               [--batch N] [--budget TOKENS] [--step-ms MS] [--token-us US]\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace tiergate;
  std::string workload_path, config_path = "config/qos_config.json", policy = "all";
  qos_sim::EngineShape shape;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "qos-sim: " << arg << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--workload") workload_path = value;
    else if (arg == "--config") config_path = value;
    else if (arg == "--policy") policy = value;
    else if (arg == "--batch") shape.batch_capacity = std::stoul(value);
    else if (arg == "--budget") shape.token_budget = std::stoll(value);
    else if (arg == "--step-ms") shape.step_base_s = std::stod(value) / 1e3;
    else if (arg == "--token-us") shape.step_per_token_s = std::stod(value) / 1e6;
    else {
      std::cerr << "qos-sim: unknown option " << arg << "\n" << kUsage;
      return 2;
    }
  }
  if (workload_path.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const qos::ConfigParseResult parsed = qos::load_config_file(config_path);
  if (!parsed.ok()) {
    std::cerr << parsed.describe();
    return 1;
  }
  std::vector<qos_sim::SimRequest> workload;
  try {
    workload = qos_sim::load_workload(workload_path);
  } catch (const qos_sim::WorkloadError& e) {
    std::cerr << "qos-sim: " << e.what() << "\n";
    return 1;
  }

  std::vector<std::unique_ptr<qos_sim::Policy>> policies;
  if (policy == "all" || policy == "tiergate") {
    policies.push_back(std::make_unique<qos_sim::AdmissionQueuePolicy>("tiergate", parsed.config));
  }
  if (policy == "all" || policy == "fcfs") {
    auto fcfs = std::make_shared<const qos::Config>(false, std::vector<qos::Group>{}, std::nullopt,
                                                    parsed.config->weights());
    policies.push_back(std::make_unique<qos_sim::AdmissionQueuePolicy>("fcfs", fcfs));
  }
  if (policy == "all" || policy == "lmdeploy") {
    policies.push_back(std::make_unique<qos_sim::LmdeployPolicy>(parsed.config));
  }
  if (policies.empty()) {
    std::cerr << "qos-sim: unknown policy " << policy << "\n" << kUsage;
    return 2;
  }

  std::vector<qos_sim::SimResult> results;
  for (auto& p : policies) results.push_back(qos_sim::simulate(workload, *p, shape, *parsed.config));
  std::cout << "workload " << workload_path << ": " << workload.size() << " requests; engine: batch "
            << shape.batch_capacity << ", " << shape.token_budget << " tokens/step, "
            << shape.step_base_s * 1e3 << " ms + " << shape.step_per_token_s * 1e6 << " us/token\n\n"
            << qos_sim::side_by_side(results, *parsed.config);
  return 0;
}
