// qos/admission_queue.* under the threads the server runs it with: gateway threads enqueueing and
// cancelling, the engine thread planning steps, charging, finishing and preempting, and reloads
// between them. Bounded; afterwards the queue's books balance. (Meant to run under TSan too.)
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "qos/admission_queue.h"
#include "qos/config_parser.h"

namespace tiergate::qos {
namespace {

std::shared_ptr<const Config> config_from(const std::string& text) {
  ConfigParseResult parsed = parse_config(text, "race.json");
  EXPECT_TRUE(parsed.ok()) << parsed.describe();
  return parsed.config;
}

TEST(AdmissionQueueRace, ClientsEngineAndReloadsTogetherLeaveConsistentBooks) {
  const auto first = config_from(R"({"enable_user_qos": true, "user_groups": ["Hi", "Lo"],
      "user_group_map": {"Hi": [{"id": "h", "quota_pct": 60}, {"id": "default", "quota_pct": 40}],
                         "Lo": [{"id": "l", "quota_pct": 100}]},
      "group_limits": {"Lo": {"max_queue_wait_s": 0.001}}})");
  const auto second = config_from(R"({"enable_user_qos": true, "user_groups": ["Lo", "Hi"],
      "user_group_map": {"Lo": [{"id": "l", "quota_pct": 1}], "Hi": [{"id": "default", "quota_pct": 1}]}})");
  AdmissionQueue queue(first);
  std::atomic<RequestId> next_id{1};
  std::mutex live_mutex;
  std::set<RequestId> live;  // enqueued and not yet gone by a client's or the engine's hand
  std::atomic<bool> stop{false};

  auto client = [&](unsigned seed) {
    std::mt19937 rng(seed);
    const std::string users[] = {"h", "l", "u1", "u2", "u3"};
    for (int i = 0; i < 3000; ++i) {
      const RequestId id = next_id++;
      if (queue.enqueue({id, users[rng() % 5], static_cast<std::int64_t>(1 + rng() % 64), 8}, Clock::now()).status ==
          EnqueueStatus::kQueued) {
        std::lock_guard lock(live_mutex);
        live.insert(id);
      }
      if (rng() % 3 == 0) {
        const RequestId victim = 1 + rng() % id;
        if (queue.cancel(victim)) {
          std::lock_guard lock(live_mutex);
          live.erase(victim);
        }
      }
    }
  };
  auto engine = [&] {
    std::mt19937 rng(7);
    std::vector<RunningWork> running;
    StepPlan plan;
    while (!stop) {
      queue.plan_step(running, StepCapacity{8, 64, 40, 16}, Clock::now(), plan);
      for (RequestId v : plan.preempt) {
        std::erase_if(running, [&](const RunningWork& w) { return w.id == v; });
        queue.preempt(v, Clock::now(), 4, 1, rng() % 2 == 0);
      }
      for (const StepAdmission& a : plan.admit) running.push_back({a.id, 0, 1, 4, 1, true});
      for (RunningWork& w : running) {
        queue.charge(w.id, 1, 1);
        w.decode_seqs = 1;
        w.prefill_seqs = 0;
        w.prefill_tokens = 0;
        w.first_token_pending = false;
      }
      for (const ExpiredRequest& e : queue.expire(Clock::now())) {
        std::lock_guard lock(live_mutex);
        live.erase(e.id);
      }
      if (!running.empty() && rng() % 4 == 0) {
        const RequestId v = queue.memory_victim(running);
        std::erase_if(running, [&](const RunningWork& w) { return w.id == v; });
        queue.preempt(v, Clock::now());
      }
      // Finish some; a request a client cancelled meanwhile is gone from the queue already.
      for (auto it = running.begin(); it != running.end();) {
        if (rng() % 3 == 0) {
          queue.finish(it->id);
          std::lock_guard lock(live_mutex);
          live.erase(it->id);
          it = running.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const RunningWork& w : running) {
      queue.finish(w.id);
      std::lock_guard lock(live_mutex);
      live.erase(w.id);
    }
  };
  auto reloader = [&] {
    for (int i = 0; !stop; ++i) {
      queue.reload(i % 2 ? first : second);
      (void)queue.usage();
      std::this_thread::yield();
    }
  };

  std::thread e(engine), r(reloader);
  std::thread c1(client, 1), c2(client, 2);
  c1.join();
  c2.join();
  stop = true;
  e.join();
  r.join();
  // Whatever is left is waiting; cancelling it empties the queue exactly.
  std::size_t cancelled = 0;
  for (RequestId id : live) cancelled += queue.cancel(id);
  EXPECT_EQ(queue.running(), 0u);
  EXPECT_EQ(queue.waiting(), 0u);
  EXPECT_LE(cancelled, live.size());
  EXPECT_LE(queue.accounts(), 5u);
}

}  // namespace
}  // namespace tiergate::qos
