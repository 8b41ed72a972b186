// The wiring between the network and the engine: the QoS admission queue (qos/) is the engine's
// engine::SchedulingPolicy (it plans every step); one engine thread runs step() while there is work
// and sleeps otherwise; outputs are delivered to per-request callbacks on the engine thread (the
// HTTP sessions post them onto their own strands). A callback that throws fails its own request
// (500), never the engine thread. Thread-safe: submit/cancel/reload/stop from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <span>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/engine.h"
#include "gateway/histogram.h"
#include "engine/model.h"
#include "qos/admission_queue.h"
#include "qos/service_levels.h"

namespace tiergate::gateway {

struct SubmitResult {
  enum class Status { kQueued, kQueueFull, kUserNotConfigured, kInvalid, kStopping } status = Status::kQueued;
  std::string group;
  double retry_after_s = 0;
  std::string message;  // with kInvalid
  std::string param;    // with kInvalid
};

// What a callback is told. After any event but kOutput, and after the last choice's finishing
// kOutput, the callback is never called again.
enum class OutputEvent {
  kOutput,    // a delta (the output)
  kExpired,   // it waited past its group's max_queue_wait_s and never ran: answer 503
  kFailed,    // the server failed it (an error building its answer): answer 500
  kStopping,  // the server is shutting down before it could finish: answer 503
};
// Called on the engine thread (kStopping: on the thread that stops the service).
using OutputCallback = std::function<void(const engine::RequestOutput& output, OutputEvent event)>;

class EngineService {
 public:
  // stand_in_tokens > 0: no model step runs; every admitted request gets that many copies of one
  // fixed token at no cost (for measuring the gateway alone, QoS queue and hand-offs included).
  EngineService(const engine::Model& model, engine::EngineConfig config, std::shared_ptr<const qos::Config> qos,
                std::size_t stand_in_tokens = 0);
  ~EngineService();  // shutdown()

  // Stops the engine thread and drops every pending callback (and what they hold: the HTTP
  // sessions), so the server can be torn down after it. Idempotent.
  void shutdown();

  SubmitResult submit(engine::RequestId id, const std::string& user, std::vector<engine::TokenId> prompt,
                      const engine::SamplingParams& params, OutputCallback on_output);
  void cancel(engine::RequestId id);
  // Graceful stop, first half: refuses new requests and answers every waiting one (kStopping);
  // running ones go on. Second half (stop_running): the running ones are answered too.
  void stop_waiting();
  void stop_running();
  bool stopping() const { return stopping_; }
  std::size_t pending_requests() const;
  void reload(std::shared_ptr<const qos::Config> config) { queue_.reload(std::move(config)); }

  qos::AdmissionQueue& queue() { return queue_; }
  // Seconds each admitted request waited in the QoS queue, by group name.
  std::string queue_wait_metrics() const;
  // Seconds each engine step took (the floor under any time to first token: a step in flight).
  std::string step_metrics() const;
  // Per-group TTFT, preemptions, 429s and 503s (qos::ServiceLevels::fill adds them to a report).
  const qos::ServiceLevels& service_levels() const { return levels_; }
  engine::EngineStats stats() const;
  const engine::Model& model() const { return model_; }
  std::size_t max_request_tokens() const { return engine_->max_request_tokens(); }
  std::string describe_engine() const { return engine_->describe(); }
  engine::RequestId next_id() { return next_id_++; }

 private:
  class QosPolicy;
  void run();
  bool stand_in_step();
  void record_wait(const std::string& group, double seconds);
  void deliver(engine::RequestOutput&& output);
  // Takes the request's callback out and calls it once with `event` (kOutput never).
  void end_with(engine::RequestId id, OutputEvent event);
  void end_all_running();

  const engine::Model& model_;
  qos::AdmissionQueue queue_;
  std::unique_ptr<QosPolicy> policy_;
  std::unique_ptr<engine::Engine> engine_;
  std::size_t stand_in_tokens_ = 0;
  std::mutex stand_in_mutex_;
  std::unordered_map<engine::RequestId, std::int32_t> stand_in_choices_;
  mutable std::mutex callbacks_mutex_;
  struct Pending {
    OutputCallback callback;
    int choices_left = 1;  // the entry goes when every choice has finished
  };
  std::unordered_map<engine::RequestId, Pending> callbacks_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool pending_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> abort_running_{false};
  std::atomic<engine::RequestId> next_id_{1};
  mutable std::mutex stats_mutex_;
  engine::EngineStats stats_;
  mutable std::mutex wait_mutex_;
  std::map<std::string, std::unique_ptr<Histogram>> queue_wait_;  // by group
  qos::ServiceLevels levels_;
  Histogram step_seconds_{{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06,
                           0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0}};
  std::thread thread_;
};

}  // namespace tiergate::gateway
