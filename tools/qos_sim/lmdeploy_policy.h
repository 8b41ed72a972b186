// LMDeploy's former QoS policy (lmdeploy/serve/qos_engine), modelled as the baseline:
// - strict priority across user_groups;
// - inside a group, one FIFO queue per listed user plus one shared "default" queue for every
//   unknown user; unknown users go to the third group of the map (LMDeploy's hard-coded choice);
// - the user served next has the smallest (requests in the last 60 s / group's requests in the last
//   60 s) / quota share; every admitted request counts 100 units whatever its length;
// - usage is recorded under the real user id but looked up under "default" for the shared queue,
//   so that queue always reads as unserved and wins whenever it is non-empty (as LMDeploy did);
// - quota 0 entries divide by zero in LMDeploy; here they are served only when nothing else waits.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "qos/config.h"
#include "tools/qos_sim/policy.h"

namespace tiergate::qos_sim {

class LmdeployPolicy : public Policy {
 public:
  explicit LmdeployPolicy(std::shared_ptr<const qos::Config> config);

  std::string name() const override { return "lmdeploy"; }
  bool enqueue(const SimRequest& request, double now_s) override;
  std::optional<std::uint64_t> next(double now_s) override;
  void charge(const std::string&, std::int64_t, std::int64_t) override {}  // counts requests only
  void finish(std::uint64_t) override {}

 private:
  struct UserQueue {
    std::string id;     // a listed user id, or "default"
    double due_share;   // quota_pct / group's sum
    std::deque<SimRequest> waiting;
  };
  struct Usage {
    double time_s;
    std::string user;
    std::size_t group;
  };

  std::size_t requests_in_window(const std::string& user, std::size_t group) const;

  std::shared_ptr<const qos::Config> config_;
  std::vector<std::vector<UserQueue>> groups_;  // per group, entries in file order
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> where_;  // id → (group, queue)
  std::deque<Usage> window_;  // admissions in the last 60 s
};

}  // namespace tiergate::qos_sim
