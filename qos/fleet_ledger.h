// The fleet store's semantics, in memory: what gateway/fleet_sync.cpp's Redis script does with a
// replica's FleetReport, for the simulator and the tests (and the test that holds the script to it).
//   - A report is folded in once per (replica, seq): a report resent because its answer was lost
//     changes nothing the second time (no double charge), and is answered all the same.
//   - A user's counter starts, when the store has none (first report, or the store restarted empty),
//     from the reporting replica's base, then takes the report's op: max(counter + add, floor).
//   - A group's virtual time is the largest any replica reported; its waiting floor, as answered to
//     one replica, the smallest the other replicas reported (a replica's lapses like its load).
//   - Unknown users with work are counted per replica; a replica's count lapses after load_ttl_s
//     without a report (a replica that died stops counting).
//   - These fleet-wide minimum and sum are recomputed from the replicas' entries at most every
//     `aggregate_every_s` (0: on every report), so that a store serving N replicas does O(N) work
//     per period for them, not per report; between recomputations a replica is answered from the
//     last result (its own entry as it was then: one less than the others' minimum or minus its
//     current count, as the case may be).
// Single-threaded; no I/O.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "qos/fleet_counters.h"

namespace tiergate::qos {

class FleetLedger {
 public:
  explicit FleetLedger(double load_ttl_s = 5, double aggregate_every_s = 0)
      : load_ttl_s_(load_ttl_s), aggregate_every_s_(aggregate_every_s) {}

  FleetUpdate apply(const std::string& replica, std::uint64_t seq, const FleetReport& report, double now_s);
  void clear();  // the store restarted empty

  std::optional<double> counter(const std::string& group, bool scavenger, const std::string& user) const;
  FleetServed served(const std::string& group, const std::string& user) const;
  FleetServed group_served(const std::string& group) const;
  std::uint64_t reports_folded() const { return folded_; }

 private:
  struct FloorAggregate {  // the two smallest waiting floors, and whose the smallest is
    double min1 = std::numeric_limits<double>::infinity(), min2 = std::numeric_limits<double>::infinity();
    std::string min1_replica;
    double at = -std::numeric_limits<double>::infinity();
  };
  struct LoadAggregate {
    std::size_t sum = 0;
    double at = -std::numeric_limits<double>::infinity();
  };
  double load_ttl_s_;
  double aggregate_every_s_;
  std::map<std::pair<std::string, bool>, FloorAggregate> floor_aggregates_;
  std::map<std::string, LoadAggregate> load_aggregates_;
  std::map<std::string, std::uint64_t> last_seq_;                          // per replica
  std::map<std::tuple<std::string, bool, std::string>, double> counters_;  // (group, class, user)
  std::map<std::pair<std::string, std::string>, FleetServed> served_;      // (group, user)
  std::map<std::string, FleetServed> group_served_;
  std::map<std::pair<std::string, bool>, double> clocks_;
  std::map<std::pair<std::string, bool>, std::map<std::string, std::pair<double, double>>> floors_;  // → replica → (floor, t)
  std::map<std::string, std::map<std::string, std::pair<std::size_t, double>>> loads_;  // group → replica → (n, t)
  std::uint64_t folded_ = 0;
};

}  // namespace tiergate::qos
