#include "gateway/engine_service.h"

#include <chrono>
#include <cstdio>
#include <limits>
#include <thread>

#include "gateway/metrics.h"

namespace tiergate::gateway {

// qos::AdmissionQueue as the engine's SchedulingPolicy: the engine's view of its running requests
// goes in, the queue's step plan comes out (the types mirror each other across the seam that keeps
// engine/ free of qos/).
class EngineService::QosPolicy : public engine::SchedulingPolicy {
 public:
  QosPolicy(qos::AdmissionQueue& queue, EngineService& service) : queue_(queue), service_(service) {}

  void plan_step(std::span<const engine::RunningRequest> running, const engine::StepLimits& limits,
                 engine::StepPlan& plan) override {
    to_work(running);
    const qos::StepCapacity capacity{static_cast<std::int64_t>(limits.max_seqs),
                                     static_cast<std::int64_t>(limits.token_budget),
                                     static_cast<std::int64_t>(limits.free_blocks),
                                     static_cast<std::int64_t>(limits.block_size)};
    queue_.plan_step(work_, capacity, qos::Clock::now(), plan_);
    plan.clear();
    plan.preempt = plan_.preempt;
    for (const qos::StepAdmission& a : plan_.admit) {
      if (a.first_start) service_.record_wait(a.group, a.waited_s);
      plan.start.push_back({a.id, false, static_cast<std::size_t>(a.prefill_tokens)});
    }
    for (const qos::StepGrant& g : plan_.run) {
      plan.run.push_back({g.id, g.decode, static_cast<std::size_t>(g.prefill_tokens)});
    }
  }
  engine::RequestId memory_victim(std::span<const engine::RunningRequest> running) override {
    to_work(running);
    return queue_.memory_victim(work_);
  }
  void preempted(engine::RequestId id, std::size_t tokens, std::size_t blocks, bool streamed) override {
    queue_.preempt(id, qos::Clock::now(), static_cast<std::int64_t>(tokens), static_cast<std::int64_t>(blocks),
                   streamed);
    service_.levels_.preempted(id);
  }
  void charge(engine::RequestId id, std::size_t prompt, std::size_t output) override {
    queue_.charge(id, static_cast<std::int64_t>(prompt), static_cast<std::int64_t>(output));
  }
  void finished(engine::RequestId id) override {
    queue_.cancel(id);  // running or (if it never ran) waiting: either way it leaves the queue
    service_.levels_.left(id);
  }

 private:
  void to_work(std::span<const engine::RunningRequest> running) {
    work_.clear();
    for (const engine::RunningRequest& r : running) {
      work_.push_back({r.id, static_cast<std::int64_t>(r.decode_seqs), static_cast<std::int64_t>(r.prefill_seqs),
                       static_cast<std::int64_t>(r.prefill_tokens), static_cast<std::int64_t>(r.blocks),
                       r.first_token_pending});
    }
  }

  qos::AdmissionQueue& queue_;
  EngineService& service_;
  std::vector<qos::RunningWork> work_;  // engine thread only, reused every step
  qos::StepPlan plan_;
};

EngineService::EngineService(const engine::Model& model, engine::EngineConfig config,
                             std::shared_ptr<const qos::Config> qos, std::size_t stand_in_tokens,
                             double stand_in_tokens_per_s)
    : model_(model), queue_(std::move(qos)), policy_(std::make_unique<QosPolicy>(queue_, *this)),
      stand_in_tokens_(stand_in_tokens), stand_in_tokens_per_s_(stand_in_tokens_per_s) {
  if (stand_in_tokens_ > 0) {  // no KV memory, no device needed
    config.num_blocks = 1;
    config.device = engine::Device::kCpu;
  }
  engine_ = std::make_unique<engine::Engine>(model, config, *policy_,
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
  // Whoever is still waiting for an answer gets one (503) before the callbacks, and the sessions
  // they hold, are dropped.
  stop_waiting();
  stop_running();
}

void EngineService::end_with(engine::RequestId id, OutputEvent event) {
  OutputCallback cb;
  {
    std::lock_guard lock(callbacks_mutex_);
    auto it = callbacks_.find(id);
    if (it == callbacks_.end()) return;
    cb = std::move(it->second.callback);
    callbacks_.erase(it);
  }
  engine::RequestOutput out;
  out.id = id;
  out.finish = engine::FinishReason::kCancelled;
  try {
    cb(out, event);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiergate: request %llu: its error answer failed too: %s\n",
                 static_cast<unsigned long long>(id), e.what());
  }
}

void EngineService::stop_waiting() {
  stopping_ = true;
  for (engine::RequestId id : queue_.drain_waiting()) {
    levels_.unavailable(id);
    end_with(id, OutputEvent::kStopping);  // first: then no engine output can reach its callback
    engine_->cancel(id);
  }
}

void EngineService::stop_running() {
  stopping_ = true;
  if (thread_.joinable()) {  // callbacks run on the engine thread: let it answer them
    abort_running_ = true;
    {
      std::lock_guard lock(wake_mutex_);
      pending_ = true;
    }
    wake_.notify_one();
    return;
  }
  end_all_running();
}

void EngineService::end_all_running() {
  std::vector<engine::RequestId> ids;
  {
    std::lock_guard lock(callbacks_mutex_);
    for (const auto& [id, pending] : callbacks_) ids.push_back(id);
  }
  for (engine::RequestId id : ids) {
    levels_.unavailable(id);
    end_with(id, OutputEvent::kStopping);
    cancel(id);
  }
}

std::size_t EngineService::pending_requests() const {
  std::lock_guard lock(callbacks_mutex_);
  return callbacks_.size();
}

SubmitResult EngineService::submit(engine::RequestId id, const std::string& user, std::vector<engine::TokenId> prompt,
                                   const engine::SamplingParams& params, OutputCallback on_output) {
  SubmitResult result;
  if (stopping_) return {SubmitResult::Status::kStopping, "", 0, "the server is shutting down", ""};
  if (auto bad = engine::validate(params, prompt.size(), model_.config().context_length, model_.config().vocab_size)) {
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
  levels_.submitted(id, qos::Clock::now());  // first: the engine may report on it as soon as it is queued
  const qos::EnqueueResult queued = queue_.enqueue(
      {id, user, static_cast<std::int64_t>(prompt.size()), params.max_tokens}, qos::Clock::now());
  result.group = queued.group;
  const std::string levels_group = queued.group.empty() ? "fcfs" : queued.group;  // as record_wait names it
  if (queued.status == qos::EnqueueStatus::kQueued) {
    levels_.queued(id, levels_group);
  } else if (queued.status == qos::EnqueueStatus::kQueueFull) {
    levels_.queue_full(id, levels_group);
  } else {
    levels_.never_queued(id);
  }
  if (queued.status != qos::EnqueueStatus::kQueued) {
    {
      std::lock_guard lock(callbacks_mutex_);  // first: the refusal is the only answer it gets
      callbacks_.erase(id);
    }
    if (stand_in_tokens_ == 0) {
      engine_->cancel(id);
    } else {
      std::lock_guard lock(stand_in_mutex_);
      stand_in_choices_.erase(id);
    }
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

std::string EngineService::step_metrics() const {
  return "# HELP tiergate_engine_step_seconds Duration of each engine step that did work.\n"
         "# TYPE tiergate_engine_step_seconds histogram\n" +
         step_seconds_.render("tiergate_engine_step_seconds", "");
}

std::string EngineService::queue_wait_metrics() const {
  std::lock_guard lock(wait_mutex_);
  std::string out =
      "# HELP tiergate_queue_wait_seconds Time admitted requests waited in the QoS queue, by group.\n"
      "# TYPE tiergate_queue_wait_seconds histogram\n";
  for (const auto& [group, h] : queue_wait_) out += h->render("tiergate_queue_wait_seconds", render_labels({{"group", group}}));
  return out;
}

engine::EngineStats EngineService::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void EngineService::deliver(engine::RequestOutput&& output) {
  if (!output.tokens.empty()) levels_.first_output(output.id, qos::Clock::now());
  OutputCallback cb;
  {
    std::lock_guard lock(callbacks_mutex_);
    auto it = callbacks_.find(output.id);
    if (it == callbacks_.end()) return;
    cb = it->second.callback;
    if (output.finish != engine::FinishReason::kNone && --it->second.choices_left == 0) callbacks_.erase(it);
  }
  // The engine thread's exception boundary: whatever building this answer throws (bad_alloc for a
  // huge n with logprobs, say) fails this request alone.
  try {
    cb(output, OutputEvent::kOutput);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiergate: request %llu failed while its output was delivered: %s\n",
                 static_cast<unsigned long long>(output.id), e.what());
    engine_->cancel(output.id);
    {
      std::lock_guard lock(callbacks_mutex_);
      auto it = callbacks_.find(output.id);
      if (it == callbacks_.end()) callbacks_[output.id] = Pending{std::move(cb), 1};  // its last choice threw
    }
    end_with(output.id, OutputEvent::kFailed);
  }
}

bool EngineService::stand_in_step() {
  bool worked = false;
  while (true) {
    if (stand_in_tokens_per_s_ > 0) {  // paced: busy until the last request's tokens took their time
      const auto now = std::chrono::steady_clock::now();
      if (now < stand_in_free_at_) {
        std::this_thread::sleep_until(std::min(stand_in_free_at_, now + std::chrono::milliseconds(10)));
        return true;
      }
    }
    auto admitted = queue_.next(qos::Clock::now());
    if (!admitted) break;
    worked = true;
    if (admitted->first_start) record_wait(admitted->group, std::chrono::duration<double>(admitted->waited).count());
    std::int32_t choices = 1;
    {
      std::lock_guard lock(stand_in_mutex_);
      auto it = stand_in_choices_.find(admitted->id);
      if (it == stand_in_choices_.end()) {  // cancelled before it ran
        queue_.cancel(admitted->id);
        levels_.left(admitted->id);
        continue;
      }
      choices = it->second;
      stand_in_choices_.erase(it);
    }
    const engine::TokenId token = model_.tokenizer().find("Ġok").value_or(model_.tokenizer().eos());
    const std::string text = model_.tokenizer().token_bytes(token);
    for (std::int32_t c = 0; c < choices; ++c) {
      engine::RequestOutput out;
      out.id = admitted->id;
      out.index = c;
      for (std::size_t i = 0; i < stand_in_tokens_; ++i) {
        out.tokens.push_back(token);
        out.text += text;
      }
      out.completion_tokens = stand_in_tokens_;
      out.finish = engine::FinishReason::kLength;
      if (stand_in_tokens_per_s_ > 0) {
        stand_in_free_at_ = std::max(stand_in_free_at_, std::chrono::steady_clock::now()) +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(
                                static_cast<double>(stand_in_tokens_) / stand_in_tokens_per_s_));
      }
      queue_.charge(admitted->id, 0, static_cast<std::int64_t>(stand_in_tokens_));
      deliver(std::move(out));
    }
    queue_.finish(admitted->id);
    levels_.left(admitted->id);
  }
  return worked;
}

void EngineService::run() {
  while (!stop_) {
    if (abort_running_.exchange(false)) end_all_running();
    for (const qos::ExpiredRequest& e : queue_.expire(qos::Clock::now())) {
      levels_.unavailable(e.id);
      engine_->cancel(e.id);
      end_with(e.id, OutputEvent::kExpired);
    }
    const auto step_began = std::chrono::steady_clock::now();
    const bool worked = stand_in_tokens_ > 0 ? stand_in_step() : engine_->step();
    if (worked && stand_in_tokens_ == 0) {
      step_seconds_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - step_began).count());
    }
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
