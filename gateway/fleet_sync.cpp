#include "gateway/fleet_sync.h"

#include <unistd.h>

#include <cstdio>
#include <random>

#include "qos/config_writer.h"

namespace tiergate::gateway {
namespace {

using Clock = std::chrono::steady_clock;

std::string default_replica_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", random());
  return std::string(host[0] ? host : "replica") + "-" + std::to_string(getpid()) + "-" + suffix;
}

double seconds_since(Clock::time_point t, Clock::time_point now) {
  return std::chrono::duration<double>(now - t).count();
}

std::string served_json(const qos::FleetServed& s) {
  return "\"weighted_tokens\": " + qos::json_number(s.weighted_tokens) +
         ", \"prompt_tokens\": " + std::to_string(s.prompt_tokens) +
         ", \"output_tokens\": " + std::to_string(s.output_tokens) + ", \"requests\": " + std::to_string(s.requests);
}

}  // namespace

FleetSync::FleetSync(FleetSyncOptions options, qos::AdmissionQueue& queue)
    : options_(std::move(options)),
      queue_(queue),
      redis_(options_.url, options_.timeout),
      store_(redis_, options_.store),
      started_(Clock::now()) {
  if (options_.replica_id.empty()) options_.replica_id = default_replica_id();
  queue_.enable_fleet_sync();
  thread_ = std::thread([this] { run(); });
}

FleetSync::~FleetSync() { stop(); }

void FleetSync::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FleetSync::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    lock.unlock();
    const auto began = Clock::now();
    sync_once();
    if (began >= next_usage_read_) {
      read_usage();
      next_usage_read_ = began + std::chrono::seconds(1);
    }
    lock.lock();
    wake_.wait_until(lock, began + options_.interval, [&] { return stop_; });
  }
  lock.unlock();
  sync_once();  // what was charged since the last sync still reaches the fleet
}

void FleetSync::sync_once() {
  if (!outstanding_) {
    outstanding_ = queue_.take_fleet_report();
    maybe_folded_ = false;
    ++seq_;
  }
  const auto config = queue_.config();
  if (config != fingerprinted_) {
    fingerprint_ = config_fingerprint(*config);
    fingerprinted_ = config;
  }
  const auto began = Clock::now();
  const FleetAnswer answer = store_.sync(options_.replica_id, seq_, *outstanding_, fingerprint_);
  const auto now = Clock::now();
  if (answer.failure == RedisResult::Failure::kNone) {
    queue_.apply_fleet_update(*outstanding_, answer.update);
    outstanding_.reset();
    round_trip_.observe(std::chrono::duration<double>(now - began).count());
    std::uint64_t failed_before = 0;
    bool recovered = false;
    {
      std::lock_guard lock(mutex_);
      recovered = last_failed_;
      failed_before = syncs_failed_;
      last_failed_ = false;
      last_ok_ = now;
      ++syncs_ok_;
      replicas_ = answer.replicas;
      config_versions_ = answer.config_versions;
    }
    if (recovered) {
      std::fprintf(stderr, "tiergate: fleet sync: %s answers again (%llu failed syncs so far); counters reconciled\n",
                   options_.url.describe().c_str(), static_cast<unsigned long long>(failed_before));
    }
    return;
  }
  if (answer.failure == RedisResult::Failure::kNotSent && !maybe_folded_) {
    queue_.restore_fleet_report(*outstanding_);  // it never left: its charges go out with the next one
    outstanding_.reset();
  } else {
    maybe_folded_ = true;  // kept and resent as it is: Redis folds a (replica, seq) in once
  }
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    first = !last_failed_;
    if (first) failing_since_ = now;
    last_failed_ = true;
    last_error_ = answer.error;
    ++syncs_failed_;
  }
  if (first) {
    std::fprintf(stderr, "tiergate: fleet sync failed (%s); serving on local counters until Redis answers\n",
                 answer.error.c_str());
  }
}

void FleetSync::read_usage() {
  FleetUsage usage = store_.read_usage(*queue_.config());
  if (usage.failure != RedisResult::Failure::kNone) return;  // the last good snapshot stays, with its age
  std::lock_guard lock(mutex_);
  usage_ = std::move(usage);
  usage_at_ = Clock::now();
}

bool FleetSync::degraded() const {
  std::lock_guard lock(mutex_);
  const auto stale = std::max<Clock::duration>(std::chrono::seconds(1), 4 * options_.interval);
  if (last_failed_) return true;
  const Clock::time_point reference = syncs_ok_ ? last_ok_ : started_;
  return Clock::now() - reference > stale;
}

std::string FleetSync::health_json() const {
  const bool is_degraded = degraded();
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  std::string out = "{\"redis\": " + qos::json_string(options_.url.describe()) +
                    ", \"replica_id\": " + qos::json_string(options_.replica_id) +
                    ", \"state\": " + (is_degraded ? "\"degraded\"" : "\"ok\"");
  out += ", \"last_sync_age_s\": " + (syncs_ok_ ? qos::json_number(seconds_since(last_ok_, now)) : "null");
  if (last_failed_) {
    out += ", \"failing_for_s\": " + qos::json_number(seconds_since(failing_since_, now)) +
           ", \"error\": " + qos::json_string(last_error_);
  }
  out += ", \"replicas\": " + std::to_string(replicas_) +
         ", \"config_skew\": " + (config_versions_ > 1 ? "true" : "false") + "}";
  return out;
}

std::string FleetSync::usage_json() const {
  const std::string health = health_json();
  std::lock_guard lock(mutex_);
  std::string out = "{\"sync\": " + health + ", \"usage_age_s\": ";
  if (!usage_) return out + "null, \"groups\": [], \"replicas\": []}";
  out += qos::json_number(seconds_since(usage_at_, Clock::now())) + ", \"groups\": [";
  for (std::size_t g = 0; g < usage_->groups.size(); ++g) {
    const FleetGroupUsage& group = usage_->groups[g];
    out += (g ? ", " : "") + std::string("{\"name\": ") + qos::json_string(group.name) + ", " +
           served_json(group.served) + ", \"users\": [";
    double listed = 0;
    for (std::size_t u = 0; u < group.users.size(); ++u) {
      const FleetUserUsage& user = group.users[u];
      listed += user.served.weighted_tokens;
      const double share = group.served.weighted_tokens > 0 ? user.served.weighted_tokens / group.served.weighted_tokens : 0;
      out += (u ? ", " : "") + std::string("{\"user_id\": ") + qos::json_string(user.user_id) + ", " +
             served_json(user.served) + ", \"served_share\": " + qos::json_number(share) + "}";
    }
    out += "], \"unknown_users_weighted_tokens\": " + qos::json_number(std::max(0.0, group.served.weighted_tokens - listed)) + "}";
  }
  out += "], \"replicas\": [";
  for (std::size_t r = 0; r < usage_->replicas.size(); ++r) {
    const FleetReplicaInfo& info = usage_->replicas[r];
    out += (r ? ", " : "") + std::string("{\"id\": ") + qos::json_string(info.id) +
           ", \"config\": " + qos::json_string(info.config_fingerprint) + ", \"age_s\": " + qos::json_number(info.age_s) + "}";
  }
  return out + "]}";
}

std::string FleetSync::metrics() const {
  const bool is_degraded = degraded();
  const std::uint64_t dropped = queue_.fleet_reports_dropped();
  std::lock_guard lock(mutex_);
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, const std::string& value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + value + "\n";
  };
  metric("tiergate_fleet_syncs_total", "counter", "Fleet syncs with Redis that were answered.", std::to_string(syncs_ok_));
  metric("tiergate_fleet_sync_failures_total", "counter", "Fleet syncs that failed (Redis down, slow or refusing).",
         std::to_string(syncs_failed_));
  metric("tiergate_fleet_degraded", "gauge", "1 while this replica orders by local counters only.",
         is_degraded ? "1" : "0");
  metric("tiergate_fleet_replicas", "gauge", "Replicas that synced with Redis lately.", std::to_string(replicas_));
  metric("tiergate_fleet_config_versions", "gauge", "Distinct QoS configs among those replicas (> 1: skew).",
         std::to_string(config_versions_));
  metric("tiergate_fleet_reports_dropped_total", "counter", "Records of dropped users lost while Redis stayed away.",
         std::to_string(dropped));
  out += "# HELP tiergate_fleet_sync_seconds Round trip of an answered fleet sync.\n"
         "# TYPE tiergate_fleet_sync_seconds histogram\n" +
         round_trip_.render("tiergate_fleet_sync_seconds", "");
  return out;
}

}  // namespace tiergate::gateway
