// Replicas of the admission queue sharing a FleetLedger, for the fleet tests: each sync is one
// report → fold → answer round, with the failure modes a real store has (the report lost before it
// arrived, or its answer lost after it was folded in and the report resent).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qos/admission_queue.h"
#include "qos/check.h"
#include "qos/config_parser.h"
#include "qos/fleet_ledger.h"

namespace tiergate::qos {

inline std::shared_ptr<const Config> fleet_config(std::string_view text) {
  ConfigParseResult result = parse_config(text, "fleet_test.json");
  QOS_CHECK(result.ok());
  return result.config;
}

// Gold: a, b (50/50) and z (0, a scavenger). Silver: s (50) and default (50): unknown users land
// in Silver and split half of it.
inline std::shared_ptr<const Config> fleet_test_config() {
  return fleet_config(R"({"enable_user_qos": true,
    "user_groups": ["Gold", "Silver"],
    "user_group_map": {
      "Gold": [{"id": "a", "quota_pct": 50}, {"id": "b", "quota_pct": 50}, {"id": "z", "quota_pct": 0}],
      "Silver": [{"id": "s", "quota_pct": 50}, {"id": "default", "quota_pct": 50}]}})");
}

struct FleetReplica {
  std::string id;
  AdmissionQueue queue;
  std::uint64_t seq = 0;
  std::optional<FleetReport> unanswered;  // taken, its answer not received
  bool maybe_folded = false;              // `unanswered` reached the store at least once

  FleetReplica(std::string name, std::shared_ptr<const Config> config) : id(std::move(name)), queue(std::move(config)) {
    queue.enable_fleet_sync();
  }

  enum class Outcome { kOk, kLostBefore, kLostAfter };

  // One sync round. kLostBefore: the store never saw the report (no connection): its contents go
  // back to the queue, unless an earlier attempt may have reached the store, in which case it is
  // kept to be resent. kLostAfter: the store folded it in but the answer was lost, so the same
  // report (same seq) goes again next time. The gateway's FleetSync follows the same rules.
  void sync(FleetLedger& ledger, double now_s, Outcome outcome = Outcome::kOk) {
    if (!unanswered) {
      unanswered = queue.take_fleet_report();
      maybe_folded = false;
      ++seq;
    }
    if (outcome == Outcome::kLostBefore) {
      if (!maybe_folded) {
        queue.restore_fleet_report(*unanswered);
        unanswered.reset();
      }
      return;
    }
    const FleetUpdate update = ledger.apply(id, seq, *unanswered, now_s);
    maybe_folded = true;
    if (outcome == Outcome::kLostAfter) return;
    queue.apply_fleet_update(*unanswered, update);
    unanswered.reset();
  }

  double counter(const std::string& user) const {
    for (const UserUsage& u : queue.usage().users) {
      if (u.user_id == user) return u.virtual_counter;
    }
    return -1;
  }
};

}  // namespace tiergate::qos
