#include "tools/qos_sim/fleet_simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>

#include "qos/check.h"
#include "qos/fleet_ledger.h"
#include "tools/qos_sim/admission_queue_policy.h"

namespace tiergate::qos_sim {
namespace {

enum class EventKind { kStep, kTake, kFold, kApply, kSample };

struct Event {
  double t = 0;
  std::uint64_t order = 0;  // ties: scheduling order
  EventKind kind = EventKind::kStep;
  std::size_t replica = 0;
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : order > o.order; }
};

struct Replica {
  std::unique_ptr<AdmissionQueuePolicy> policy;
  std::unique_ptr<EngineModel> engine;
  bool stepping = false;  // a step event is scheduled
  std::uint64_t seq = 0;
  std::optional<qos::FleetReport> report;
  qos::FleetUpdate update;
};

}  // namespace

FleetResult simulate_fleet(const std::shared_ptr<const qos::Config>& config, const std::string& user_a,
                           const std::string& user_b, const EngineShape& engine, const FleetShape& fleet) {
  QOS_CHECK(fleet.replicas > 0);
  const bool syncing = fleet.sync_interval_s > 0;
  std::vector<Replica> replicas(fleet.replicas);
  for (Replica& r : replicas) {
    r.policy = std::make_unique<AdmissionQueuePolicy>("tiergate", config);
    if (syncing) r.policy->queue().enable_fleet_sync();
    r.engine = std::make_unique<EngineModel>(engine);
  }
  qos::FleetLedger ledger;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  std::uint64_t order = 0;
  auto schedule = [&](double t, EventKind kind, std::size_t replica) { events.push({t, order++, kind, replica}); };

  std::unordered_map<std::uint64_t, SimRequest> requests;
  std::unordered_map<std::uint64_t, std::size_t> pinned;  // kPinned: request → its stream's replica
  std::uint64_t next_id = 1;
  std::size_t round_robin = 0;
  const bool round_robin_b = fleet.scenario == FleetScenario::kRoundRobin;
  // `replica`: where the stream is pinned; SIZE_MAX: A to replica 0, B through the load balancer.
  auto send = [&](const std::string& user, std::size_t replica, double now) {
    std::size_t r = replica;
    if (r == SIZE_MAX) r = user == user_a ? 0 : round_robin++ % replicas.size();
    SimRequest request{next_id++, now, user, fleet.prompt_tokens, fleet.output_tokens};
    auto [it, inserted] = requests.emplace(request.id, request);
    QOS_CHECK(inserted && replicas[r].policy->enqueue(it->second, now));
    if (replica != SIZE_MAX) pinned[request.id] = replica;
    if (!replicas[r].stepping) {
      replicas[r].stepping = true;
      schedule(now, EventKind::kStep, r);
    }
  };
  if (round_robin_b) {
    for (std::size_t s = 0; s < fleet.streams_a; ++s) send(user_a, SIZE_MAX, 0);
    for (std::size_t s = 0; s < fleet.streams_b; ++s) send(user_b, SIZE_MAX, 0);
  } else {
    const auto with_a = static_cast<std::size_t>(std::ceil(fleet.a_fraction * static_cast<double>(replicas.size())));
    for (std::size_t r = 0; r < replicas.size(); ++r) {
      for (std::size_t s = 0; s < fleet.streams_per_replica; ++s) {
        if (r < with_a) send(user_a, r, 0);
        send(user_b, r, 0);
      }
    }
  }
  std::mt19937_64 random(fleet.seed);
  if (syncing) {
    for (std::size_t r = 0; r < replicas.size(); ++r) {
      schedule(std::uniform_real_distribution<double>(0, fleet.sync_interval_s)(random), EventKind::kTake, r);
    }
  }
  schedule(0, EventKind::kSample, 0);

  // Fleet-wide weighted tokens of each user, sampled every second.
  auto served = [&](const std::string& user) {
    double total = 0;
    for (Replica& r : replicas) {
      for (const qos::UserUsage& u : r.policy->queue().usage().users) {
        if (u.user_id == user) total += u.weighted_tokens;
      }
    }
    return total;
  };
  std::vector<std::pair<double, double>> samples;  // per second: (A, B)
  std::uint64_t round_trips = 0, entries = 0;

  while (!events.empty()) {
    const Event e = events.top();
    events.pop();
    if (e.t > fleet.duration_s) break;
    Replica& r = replicas[e.replica];
    switch (e.kind) {
      case EventKind::kStep: {
        const StepResult step = r.engine->step(*r.policy, requests, e.t);
        if (step.duration_s == 0) {
          r.stepping = false;
          break;
        }
        const double done = e.t + step.duration_s;
        schedule(done, EventKind::kStep, e.replica);
        for (std::uint64_t id : step.finished) {
          const std::string user = requests.at(id).user;
          requests.erase(id);
          std::size_t replica = SIZE_MAX;
          if (auto p = pinned.find(id); p != pinned.end()) {
            replica = p->second;
            pinned.erase(p);
          }
          send(user, replica, done);  // the stream's next request; the step event above is already queued
        }
        break;
      }
      case EventKind::kTake:
        if (!r.report) {
          r.report = r.policy->queue().take_fleet_report();
          ++r.seq;
        }
        schedule(e.t + fleet.store_rtt_s / 2, EventKind::kFold, e.replica);
        break;
      case EventKind::kFold:
        r.update = ledger.apply("r" + std::to_string(e.replica), r.seq, *r.report, e.t);
        ++round_trips;
        entries += r.report->users.size();
        schedule(e.t + fleet.store_rtt_s / 2, EventKind::kApply, e.replica);
        break;
      case EventKind::kApply:
        r.policy->queue().apply_fleet_update(*r.report, r.update);
        r.report.reset();
        schedule(e.t + std::max(0.0, fleet.sync_interval_s - fleet.store_rtt_s), EventKind::kTake, e.replica);
        break;
      case EventKind::kSample:
        samples.emplace_back(served(user_a), served(user_b));
        schedule(e.t + 1, EventKind::kSample, 0);
        break;
    }
  }

  FleetResult result;
  const auto a = config->resolve(user_a), b = config->resolve(user_b);
  QOS_CHECK(a && b && a->group == b->group && a->share + b->share > 0);
  result.quota_a = a->share / (a->share + b->share);
  const auto warm = static_cast<std::size_t>(fleet.warmup_s);
  const auto window = static_cast<std::size_t>(std::max(1.0, fleet.window_s));
  auto share = [&](std::size_t from, std::size_t to) {
    const double wa = samples[to].first - samples[from].first, wb = samples[to].second - samples[from].second;
    return wa + wb > 0 ? wa / (wa + wb) : 0.0;
  };
  for (std::size_t from = warm; from + window < samples.size(); ++from) {
    const double s = share(from, from + window);
    result.max_deviation_pp = std::max(result.max_deviation_pp, 100 * std::abs(s - result.quota_a));
    if ((from - warm) % window == 0) result.window_shares_a.push_back(s);
  }
  if (samples.size() > warm + 1) {
    const std::size_t last = samples.size() - 1;
    result.share_a = share(warm, last);
    const double tokens = samples[last].first + samples[last].second - samples[warm].first - samples[warm].second;
    result.weighted_tokens_per_s = tokens / static_cast<double>(last - warm);
  }
  result.store_round_trips_per_s = static_cast<double>(round_trips) / fleet.duration_s;
  result.store_entries_per_s = static_cast<double>(entries) / fleet.duration_s;
  return result;
}

std::string fleet_table_header() {
  char line[200];
  std::snprintf(line, sizeof line, "%8s %9s %8s %9s %10s %12s %12s %14s\n", "replicas", "sync_ms", "quota_a%",
                "share_a%", "max_dev_pp", "wtok_per_s", "store_rt/s", "store_entries/s");
  return line;
}

std::string fleet_table_row(const FleetShape& fleet, const FleetResult& r) {
  char interval[32], line[200];
  if (fleet.sync_interval_s > 0) {
    std::snprintf(interval, sizeof interval, "%g", fleet.sync_interval_s * 1e3);
  } else {
    std::snprintf(interval, sizeof interval, "none");
  }
  std::snprintf(line, sizeof line, "%8zu %9s %8.1f %9.1f %10.1f %12.0f %12.0f %14.0f\n", fleet.replicas, interval,
                100 * r.quota_a, 100 * r.share_a, r.max_deviation_pp, r.weighted_tokens_per_s,
                r.store_round_trips_per_s, r.store_entries_per_s);
  return line;
}

}  // namespace tiergate::qos_sim
