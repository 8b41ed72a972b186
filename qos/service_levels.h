// Per-group service levels that the admission queue does not keep, for /admin/qos and the
// dashboard: time to first token over a recent window, preemptions, requests refused with 429
// (queue full) and answered 503 (waited past the group's bound, or the server stopped first).
// Owned by the server wiring, which reports each request's moves; a request is remembered under
// the group it was queued in from its submission until it leaves (so a reload that moves its user
// later does not move its numbers). The engine thread may report a request's output, preemption or
// end before the submitting thread reports its group: those events wait in the request's record
// until queued() names the group. Thread-safe: one short mutex per call. Memory: the requests in
// flight plus at most kSamplesPerGroup first-token samples per group.
//
// Request states: submitted → queued (group known) → gone (left / unavailable);
//                 submitted → gone (queue_full, never_queued) when it was never queued.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "qos/admission_queue.h"
#include "qos/usage_report.h"

namespace tiergate::qos {

class ServiceLevels {
 public:
  static constexpr std::size_t kSamplesPerGroup = 4096;
  static constexpr Clock::duration kWindow = std::chrono::seconds(60);  // TTFT percentiles look back this far

  // → submitted, before it is handed to the queue (TTFT counts from here). A known id: nothing.
  void submitted(RequestId id, Clock::time_point now);
  // submitted → queued in `group`; what happened to it meanwhile is counted now.
  void queued(RequestId id, const std::string& group);
  // submitted → gone, counted as a 429 of `group` (its queue was full).
  void queue_full(RequestId id, const std::string& group);
  // submitted → gone, refused for another reason (user not configured): counted nowhere.
  void never_queued(RequestId id);
  // Its first output: one TTFT sample (submission → now); later calls add nothing.
  void first_output(RequestId id, Clock::time_point now);
  void preempted(RequestId id);
  // → gone, counted as a 503 (it waited past its bound, or the server stopped before it finished).
  void unavailable(RequestId id);
  // → gone (finished or cancelled). Unknown ids are ignored.
  void left(RequestId id);

  // Sets the service-level fields of the report's groups that have records (by group name).
  void fill(UsageReport& report, Clock::time_point now) const;
  std::size_t tracked() const;

 private:
  struct InFlight {
    std::optional<std::string> group;  // set by queued()
    Clock::time_point submitted;
    bool first_output_seen = false;
    // Seen before the group was known, counted when it is.
    std::optional<Clock::time_point> early_first_output;
    std::uint64_t early_preemptions = 0;
    enum class Ending { kNone, kLeft, kUnavailable } early_end = Ending::kNone;
  };
  struct GroupLevels;
  void record_first_output(const InFlight& request, Clock::time_point when);
  struct GroupLevels {
    std::deque<std::pair<Clock::time_point, double>> ttft;  // (when, seconds), oldest first
    std::uint64_t first_outputs = 0;
    std::uint64_t preemptions = 0;
    std::uint64_t refused_429 = 0;
    std::uint64_t unavailable_503 = 0;
  };

  mutable std::mutex mutex_;
  std::unordered_map<RequestId, InFlight> in_flight_;
  std::unordered_map<std::string, GroupLevels> groups_;
};

}  // namespace tiergate::qos
