#include "qos/service_levels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tiergate::qos {
namespace {

// Nearest rank: the smallest sample with at least p% of the samples at or below it.
double nearest_rank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

void ServiceLevels::submitted(RequestId id, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  InFlight request;
  request.submitted = now;
  in_flight_.try_emplace(id, std::move(request));
}

void ServiceLevels::record_first_output(const InFlight& request, Clock::time_point when) {
  GroupLevels& g = groups_[*request.group];
  g.ttft.emplace_back(when, std::chrono::duration<double>(when - request.submitted).count());
  if (g.ttft.size() > kSamplesPerGroup) g.ttft.pop_front();
  ++g.first_outputs;
}

void ServiceLevels::queued(RequestId id, const std::string& group) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end() || it->second.group) return;
  InFlight& r = it->second;
  r.group = group;
  GroupLevels& g = groups_[group];
  if (r.early_first_output) record_first_output(r, *r.early_first_output);
  g.preemptions += r.early_preemptions;
  if (r.early_end == InFlight::Ending::kUnavailable) ++g.unavailable_503;
  if (r.early_end != InFlight::Ending::kNone) in_flight_.erase(it);
}

void ServiceLevels::queue_full(RequestId id, const std::string& group) {
  std::lock_guard lock(mutex_);
  in_flight_.erase(id);
  ++groups_[group].refused_429;
}

void ServiceLevels::never_queued(RequestId id) {
  std::lock_guard lock(mutex_);
  in_flight_.erase(id);
}

void ServiceLevels::first_output(RequestId id, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end() || it->second.first_output_seen) return;
  InFlight& r = it->second;
  r.first_output_seen = true;
  if (r.group) {
    record_first_output(r, now);
  } else {
    r.early_first_output = now;
  }
}

void ServiceLevels::preempted(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  if (it->second.group) {
    ++groups_[*it->second.group].preemptions;
  } else {
    ++it->second.early_preemptions;
  }
}

void ServiceLevels::unavailable(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  if (!it->second.group) {
    it->second.early_end = InFlight::Ending::kUnavailable;
    return;
  }
  ++groups_[*it->second.group].unavailable_503;
  in_flight_.erase(it);
}

void ServiceLevels::left(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  if (!it->second.group) {
    if (it->second.early_end == InFlight::Ending::kNone) it->second.early_end = InFlight::Ending::kLeft;
    return;
  }
  in_flight_.erase(it);
}

std::size_t ServiceLevels::tracked() const {
  std::lock_guard lock(mutex_);
  return in_flight_.size();
}

void ServiceLevels::fill(UsageReport& report, Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  std::vector<double> recent;
  for (GroupUsage& usage : report.groups) {
    auto it = groups_.find(usage.name);
    if (it == groups_.end()) continue;
    const GroupLevels& g = it->second;
    recent.clear();
    for (const auto& [when, seconds] : g.ttft) {
      if (now - when <= kWindow) recent.push_back(seconds);
    }
    std::sort(recent.begin(), recent.end());
    usage.ttft_p50_s = nearest_rank(recent, 50);
    usage.ttft_p99_s = nearest_rank(recent, 99);
    usage.ttft_samples = recent.size();
    usage.first_outputs = g.first_outputs;
    usage.preemptions = g.preemptions;
    usage.refused_429 = g.refused_429;
    usage.unavailable_503 = g.unavailable_503;
  }
}

}  // namespace tiergate::qos
