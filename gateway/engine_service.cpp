#include "gateway/engine_service.h"

#include <chrono>

namespace tiergate::gateway {

// qos::AdmissionQueue as the engine's AdmissionSource.
class EngineService::QosSource : public engine::AdmissionSource {
 public:
  explicit QosSource(qos::AdmissionQueue& queue) : queue_(queue) {}

  std::optional<engine::PulledRequest> pull(std::size_t limit) override {
    const auto admitted = queue_.next(qos::Clock::now(), static_cast<std::int64_t>(std::min<std::size_t>(
                                                             limit, static_cast<std::size_t>(qos::kNoTokenLimit))));
    if (!admitted) return std::nullopt;
    std::lock_guard lock(mutex_);
    users_[admitted->id] = admitted->user_id;
    return engine::PulledRequest{admitted->id, admitted->priority};
  }
  bool waiting_above(int priority) const override { return queue_.waiting_outranks(priority); }
  void preempted(engine::RequestId id) override { queue_.preempt(id); }
  void charge(engine::RequestId id, std::size_t prompt, std::size_t output) override {
    std::string user;
    {
      std::lock_guard lock(mutex_);
      auto it = users_.find(id);
      if (it == users_.end()) return;
      user = it->second;
    }
    queue_.charge(user, static_cast<std::int64_t>(prompt), static_cast<std::int64_t>(output));
  }
  void finished(engine::RequestId id) override {
    queue_.cancel(id);  // running or (if it never ran) waiting: either way it leaves the queue
    std::lock_guard lock(mutex_);
    users_.erase(id);
  }

 private:
  qos::AdmissionQueue& queue_;
  std::mutex mutex_;
  std::unordered_map<engine::RequestId, std::string> users_;
};

EngineService::EngineService(const engine::Model& model, engine::EngineConfig config,
                             std::shared_ptr<const qos::Config> qos)
    : model_(model), queue_(std::move(qos)), source_(std::make_unique<QosSource>(queue_)) {
  engine_ = std::make_unique<engine::Engine>(model, config, *source_,
                                             [this](engine::RequestOutput&& o) { deliver(std::move(o)); });
  thread_ = std::thread([this] { run(); });
}

EngineService::~EngineService() {
  stop_ = true;
  {
    std::lock_guard lock(wake_mutex_);
    pending_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

SubmitResult EngineService::submit(engine::RequestId id, const std::string& user, std::vector<engine::TokenId> prompt,
                                   const engine::SamplingParams& params, OutputCallback on_output) {
  SubmitResult result;
  if (auto bad = engine::validate(params, prompt.size(), model_.config().context_length)) {
    return {SubmitResult::Status::kInvalid, "", 0, bad->message, bad->param};
  }
  const std::size_t need = (prompt.size() + static_cast<std::size_t>(params.max_tokens)) * static_cast<std::size_t>(params.n);
  if (need > engine_->max_request_tokens()) {
    return {SubmitResult::Status::kInvalid, "", 0,
            "the request needs " + std::to_string(need) + " KV slots; this server holds " +
                std::to_string(engine_->max_request_tokens()),
            "max_tokens"};
  }
  {
    std::lock_guard lock(callbacks_mutex_);
    callbacks_[id] = Pending{std::move(on_output), params.n};
  }
  engine_->submit({id, prompt, params});
  const qos::EnqueueResult queued = queue_.enqueue(
      {id, user, static_cast<std::int64_t>(prompt.size()), params.max_tokens}, qos::Clock::now());
  result.group = queued.group;
  if (queued.status != qos::EnqueueStatus::kQueued) {
    engine_->cancel(id);
    std::lock_guard lock(callbacks_mutex_);
    callbacks_.erase(id);
    result.status = queued.status == qos::EnqueueStatus::kQueueFull ? SubmitResult::Status::kQueueFull
                                                                     : SubmitResult::Status::kUserNotConfigured;
    result.retry_after_s = queued.retry_after_s;
    return result;
  }
  {
    std::lock_guard lock(wake_mutex_);
    pending_ = true;
  }
  wake_.notify_one();
  return result;
}

void EngineService::cancel(engine::RequestId id) {
  queue_.cancel(id);
  engine_->cancel(id);
  {
    std::lock_guard lock(wake_mutex_);
    pending_ = true;
  }
  wake_.notify_one();
}

engine::EngineStats EngineService::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void EngineService::deliver(engine::RequestOutput&& output) {
  OutputCallback cb;
  {
    std::lock_guard lock(callbacks_mutex_);
    auto it = callbacks_.find(output.id);
    if (it == callbacks_.end()) return;
    cb = it->second.callback;
    if (output.finish != engine::FinishReason::kNone && --it->second.choices_left == 0) callbacks_.erase(it);
  }
  cb(output, false);
}

void EngineService::run() {
  while (!stop_) {
    for (const qos::ExpiredRequest& e : queue_.expire(qos::Clock::now())) {
      engine_->cancel(e.id);
      OutputCallback cb;
      {
        std::lock_guard lock(callbacks_mutex_);
        auto it = callbacks_.find(e.id);
        if (it == callbacks_.end()) continue;
        cb = std::move(it->second.callback);
        callbacks_.erase(it);
      }
      engine::RequestOutput out;
      out.id = e.id;
      out.finish = engine::FinishReason::kCancelled;
      cb(out, true);
    }
    const bool worked = engine_->step();
    {
      std::lock_guard lock(stats_mutex_);
      stats_ = engine_->stats();
    }
    if (worked) continue;
    std::unique_lock lock(wake_mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(50), [&] { return pending_; });
    pending_ = false;
  }
}

}  // namespace tiergate::gateway
