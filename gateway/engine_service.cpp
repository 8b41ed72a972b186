#include "gateway/engine_service.h"

#include <chrono>
#include <limits>

namespace tiergate::gateway {

// qos::AdmissionQueue as the engine's AdmissionSource.
class EngineService::QosSource : public engine::AdmissionSource {
 public:
  QosSource(qos::AdmissionQueue& queue, EngineService& service) : queue_(queue), service_(service) {}

  std::optional<engine::PulledRequest> pull(std::size_t limit) override {
    const auto admitted = queue_.next(qos::Clock::now(), static_cast<std::int64_t>(std::min<std::size_t>(
                                                             limit, static_cast<std::size_t>(qos::kNoTokenLimit))));
    if (!admitted) return std::nullopt;
    service_.record_wait(admitted->group, std::chrono::duration<double>(admitted->waited).count());
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
  EngineService& service_;
  std::mutex mutex_;
  std::unordered_map<engine::RequestId, std::string> users_;
};

EngineService::EngineService(const engine::Model& model, engine::EngineConfig config,
                             std::shared_ptr<const qos::Config> qos, std::size_t stand_in_tokens)
    : model_(model), queue_(std::move(qos)), source_(std::make_unique<QosSource>(queue_, *this)),
      stand_in_tokens_(stand_in_tokens) {
  if (stand_in_tokens_ > 0) {  // no KV memory, no device needed
    config.num_blocks = 1;
    config.device = engine::Device::kCpu;
  }
  engine_ = std::make_unique<engine::Engine>(model, config, *source_,
                                             [this](engine::RequestOutput&& o) { deliver(std::move(o)); });
  thread_ = std::thread([this] { run(); });
}

EngineService::~EngineService() { shutdown(); }

void EngineService::shutdown() {
  if (!thread_.joinable()) return;
  stop_ = true;
  {
    std::lock_guard lock(wake_mutex_);
    pending_ = true;
  }
  wake_.notify_all();
  thread_.join();
  std::unordered_map<engine::RequestId, Pending> dropped;
  {
    std::lock_guard lock(callbacks_mutex_);
    dropped.swap(callbacks_);
  }
}

SubmitResult EngineService::submit(engine::RequestId id, const std::string& user, std::vector<engine::TokenId> prompt,
                                   const engine::SamplingParams& params, OutputCallback on_output) {
  SubmitResult result;
  if (auto bad = engine::validate(params, prompt.size(), model_.config().context_length)) {
    return {SubmitResult::Status::kInvalid, "", 0, bad->message, bad->param};
  }
  const std::size_t need = (prompt.size() + static_cast<std::size_t>(params.max_tokens)) * static_cast<std::size_t>(params.n);
  if (stand_in_tokens_ == 0 && need > engine_->max_request_tokens()) {
    return {SubmitResult::Status::kInvalid, "", 0,
            "the request needs " + std::to_string(need) + " KV slots; this server holds " +
                std::to_string(engine_->max_request_tokens()),
            "max_tokens"};
  }
  {
    std::lock_guard lock(callbacks_mutex_);
    callbacks_[id] = Pending{std::move(on_output), params.n};
  }
  if (stand_in_tokens_ > 0) {
    std::lock_guard lock(stand_in_mutex_);
    stand_in_choices_[id] = params.n;
  } else {
    engine_->submit({id, prompt, params});
  }
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

void EngineService::record_wait(const std::string& group, double seconds) {
  std::lock_guard lock(wait_mutex_);
  auto& h = queue_wait_[group.empty() ? "fcfs" : group];
  if (!h) h = std::make_unique<Histogram>();
  h->observe(seconds);
}

std::string EngineService::queue_wait_metrics() const {
  std::lock_guard lock(wait_mutex_);
  std::string out =
      "# HELP tiergate_queue_wait_seconds Time admitted requests waited in the QoS queue, by group.\n"
      "# TYPE tiergate_queue_wait_seconds histogram\n";
  for (const auto& [group, h] : queue_wait_) out += h->render("tiergate_queue_wait_seconds", "group=\"" + group + "\"");
  return out;
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

bool EngineService::stand_in_step() {
  bool worked = false;
  while (auto pulled = source_->pull(std::numeric_limits<std::size_t>::max())) {
    worked = true;
    std::int32_t choices = 1;
    {
      std::lock_guard lock(stand_in_mutex_);
      auto it = stand_in_choices_.find(pulled->id);
      if (it == stand_in_choices_.end()) {  // cancelled before it ran
        source_->finished(pulled->id);
        continue;
      }
      choices = it->second;
      stand_in_choices_.erase(it);
    }
    const engine::TokenId token = model_.tokenizer().find("Ġok").value_or(model_.tokenizer().eos());
    const std::string text = model_.tokenizer().token_bytes(token);
    for (std::int32_t c = 0; c < choices; ++c) {
      engine::RequestOutput out;
      out.id = pulled->id;
      out.index = c;
      for (std::size_t i = 0; i < stand_in_tokens_; ++i) {
        out.tokens.push_back(token);
        out.text += text;
      }
      out.completion_tokens = stand_in_tokens_;
      out.finish = engine::FinishReason::kLength;
      source_->charge(pulled->id, 0, stand_in_tokens_);
      deliver(std::move(out));
    }
    source_->finished(pulled->id);
  }
  return worked;
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
    const bool worked = stand_in_tokens_ > 0 ? stand_in_step() : engine_->step();
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
