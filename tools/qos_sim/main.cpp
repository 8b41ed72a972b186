// qos-sim: replays a JSONL workload through the admission queue against a modelled engine and
// prints, side by side, what tiergate's policy, FCFS and LMDeploy's former policy give each user.
// With --fleet: N replicas sharing fair-share state through a modelled store (fleet_simulator.h),
// one table row per replica count and sync interval.
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include "qos/config_parser.h"
#include "tools/qos_sim/admission_queue_policy.h"
#include "tools/qos_sim/fleet_simulator.h"
#include "tools/qos_sim/lmdeploy_policy.h"
#include "tools/qos_sim/report.h"
#include "tools/qos_sim/simulator.h"

namespace {

constexpr const char* kUsage =
    "usage: qos-sim --workload FILE.jsonl [--config qos_config.json] [--policy all|tiergate|fcfs|lmdeploy]\n"
    "               [--batch N] [--budget TOKENS] [--step-ms MS] [--token-us US]\n"
    "       qos-sim --fleet [--config qos_config.json] [--users A,B (user_id1,user_id2)]\n"
    "               [--replicas 1,10,100] [--sync-ms 10,50,100,250,1000] [--rtt-ms 0.5] [--seconds 60]\n"
    "               [--scenario pinned|round-robin]\n"
    "               [--batch N] [--budget TOKENS] [--step-ms MS] [--token-us US]\n";

std::vector<double> numbers(const std::string& list) {
  std::vector<double> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stod(item));
  return out;
}

int run_fleet(const std::shared_ptr<const tiergate::qos::Config>& config, const std::string& users,
              const tiergate::qos_sim::EngineShape& shape, const std::string& replicas, const std::string& intervals,
              double rtt_ms, double seconds, const std::string& scenario) {
  using namespace tiergate::qos_sim;
  const auto comma = users.find(',');
  if (comma == std::string::npos) {
    std::cerr << "qos-sim: --users takes two ids, A,B\n";
    return 2;
  }
  const std::string a = users.substr(0, comma), b = users.substr(comma + 1);
  const auto ra = config->resolve(a), rb = config->resolve(b);
  if (!ra || !rb || ra->unknown || rb->unknown || ra->group != rb->group || ra->share + rb->share <= 0) {
    std::cerr << "qos-sim: --users " << users << ": two configured users of one group with positive quotas\n";
    return 2;
  }
  FleetShape fleet;
  fleet.store_rtt_s = rtt_ms / 1e3;
  fleet.duration_s = seconds;
  if (scenario == "round-robin") {
    fleet.scenario = FleetScenario::kRoundRobin;
    std::cout << "fleet: " << a << " only through replica 0, " << b << " round-robin over all; "
              << fleet.streams_a << " + " << fleet.streams_b << " closed-loop streams";
  } else if (scenario == "pinned") {
    std::cout << "fleet: " << a << " pinned to the first " << 100 * fleet.a_fraction << "% of the replicas, " << b
              << " to all; "
              << fleet.streams_per_replica << " closed-loop streams per user and replica";
  } else {
    std::cerr << "qos-sim: --scenario is pinned or round-robin, not " << scenario << "\n";
    return 2;
  }
  std::cout << ", " << fleet.prompt_tokens << " + " << fleet.output_tokens
            << " tokens a request; store round trip " << rtt_ms << " ms; "
            << seconds << " s simulated, shares over every " << fleet.window_s << " s window after "
            << fleet.warmup_s << " s\nengine per replica: batch " << shape.batch_capacity << ", "
            << shape.token_budget << " tokens/step, " << shape.step_base_s * 1e3 << " ms + "
            << shape.step_per_token_s * 1e6 << " us/token\n\n"
            << fleet_table_header();
  for (double n : numbers(replicas)) {
    fleet.replicas = static_cast<std::size_t>(n);
    std::vector<double> sync = numbers(intervals);
    sync.push_back(0);  // no fleet sync: the negative control
    for (double ms : sync) {
      fleet.sync_interval_s = ms / 1e3;
      std::cout << fleet_table_row(fleet, simulate_fleet(config, a, b, shape, fleet)) << std::flush;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tiergate;
  std::string workload_path, config_path = "config/qos_config.json", policy = "all";
  qos_sim::EngineShape shape;
  bool fleet = false;
  std::string users = "user_id1,user_id2", replicas = "1,10,100", intervals = "10,50,100,250,1000";
  std::string scenario = "pinned";
  double rtt_ms = 0.5, seconds = 60;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--fleet") {
      fleet = true;
      continue;
    }
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
    else if (arg == "--users") users = value;
    else if (arg == "--replicas") replicas = value;
    else if (arg == "--sync-ms") intervals = value;
    else if (arg == "--rtt-ms") rtt_ms = std::stod(value);
    else if (arg == "--seconds") seconds = std::stod(value);
    else if (arg == "--scenario") scenario = value;
    else {
      std::cerr << "qos-sim: unknown option " << arg << "\n" << kUsage;
      return 2;
    }
  }
  if (workload_path.empty() && !fleet) {
    std::cerr << kUsage;
    return 2;
  }
  const qos::ConfigParseResult parsed = qos::load_config_file(config_path);
  if (!parsed.ok()) {
    std::cerr << parsed.describe();
    return 1;
  }
  if (fleet) return run_fleet(parsed.config, users, shape, replicas, intervals, rtt_ms, seconds, scenario);
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
