// Fleet-wide fair share for one replica (DESIGN.md §8): a thread of its own that, every interval,
// takes the admission queue's fleet report, folds it into Redis in one round trip (FleetStore)
// and hands the fleet's answer back to the queue. Nothing on the request path or the engine thread
// waits for Redis: when Redis is down or slow (a timeout per round trip) the queue goes on ordering
// by its local counters, /health says "degraded" and a metric counts the failed syncs. A report
// that never left is put back into the queue; one that may have reached Redis is resent as it was
// (same sequence number: Redis folds it in at most once), so nothing is charged twice when Redis
// comes back. Every second the thread also reads the fleet-wide usage for /admin/qos.
// Thread-safe: status, metrics and JSON from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "gateway/fleet_store.h"
#include "gateway/histogram.h"
#include "gateway/redis_connection.h"
#include "qos/admission_queue.h"

namespace tiergate::gateway {

struct FleetSyncOptions {
  RedisUrl url;
  std::chrono::milliseconds interval{50};
  std::chrono::milliseconds timeout{200};  // connect and each round trip
  std::string replica_id;                  // unique per process; "" → host-pid-random
  FleetStoreOptions store;
};

class FleetSync {
 public:
  // Turns fleet sync on in `queue` and starts the thread. `queue` must outlive this object.
  FleetSync(FleetSyncOptions options, qos::AdmissionQueue& queue);
  ~FleetSync();  // stop()
  FleetSync(const FleetSync&) = delete;
  FleetSync& operator=(const FleetSync&) = delete;

  // One last sync (what was charged since the previous one), then the thread ends. Idempotent.
  void stop();

  bool degraded() const;
  const std::string& replica_id() const { return options_.replica_id; }
  std::string health_json() const;  // the "fleet" object of /health
  std::string usage_json() const;   // the "fleet" object of /admin/qos
  std::string metrics() const;      // Prometheus lines

 private:
  void run();
  void sync_once();
  void read_usage();

  FleetSyncOptions options_;
  qos::AdmissionQueue& queue_;
  RedisConnection redis_;
  FleetStore store_;

  // Sync thread only.
  std::optional<qos::FleetReport> outstanding_;  // taken, not answered
  bool maybe_folded_ = false;                    // `outstanding_` may have reached Redis
  std::uint64_t seq_ = 0;
  std::shared_ptr<const qos::Config> fingerprinted_;
  std::string fingerprint_;
  std::chrono::steady_clock::time_point next_usage_read_{};

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable wake_;
  bool stop_ = false;
  bool last_failed_ = false;
  std::string last_error_;
  std::chrono::steady_clock::time_point started_, last_ok_{}, failing_since_{};
  std::uint64_t syncs_ok_ = 0, syncs_failed_ = 0;
  std::size_t replicas_ = 0, config_versions_ = 0;
  std::optional<FleetUsage> usage_;
  std::chrono::steady_clock::time_point usage_at_{};
  Histogram round_trip_;
  std::thread thread_;
};

}  // namespace tiergate::gateway
