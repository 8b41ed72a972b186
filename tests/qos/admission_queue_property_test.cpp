// Properties of qos/admission_queue.* under random configs and random operation sequences,
// checked against a plain model of what is waiting: strict priority, work conservation, FIFO per
// user, scavengers last, determinism, and consistent bookkeeping.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <deque>
#include <map>

#include "qos/admission_queue.h"
#include "qos/config_parser.h"

namespace tiergate::qos {
namespace {

const Clock::time_point kT0{};

struct Op {
  int kind;       // 0-2 enqueue, 3-4 next, 5 charge, 6 finish, 7 cancel, 8 preempt
  int pick;       // which user / request
  int amount;     // tokens
};

// A random config: 1-4 groups of 1-4 users named u<g>_<i>, quotas 0..100, sometimes a default entry.
std::string random_config_text() {
  const int groups = *rc::gen::inRange(1, 5);
  std::string names, map;
  for (int g = 0; g < groups; ++g) {
    const std::string name = "G" + std::to_string(g);
    names += (g ? ", \"" : "\"") + name + "\"";
    map += (g ? ", \"" : "\"") + name + "\": [";
    const int users = *rc::gen::inRange(1, 5);
    for (int u = 0; u < users; ++u) {
      map += (u ? ", " : "") + std::string("{\"id\": \"u") + std::to_string(g) + "_" +
             std::to_string(u) + "\", \"quota_pct\": " + std::to_string(*rc::gen::inRange(0, 101)) + "}";
    }
    if (*rc::gen::arbitrary<bool>()) {
      map += ", {\"id\": \"default\", \"quota_pct\": " + std::to_string(*rc::gen::inRange(0, 101)) + "}";
    }
    map += "]";
  }
  return "{\"enable_user_qos\": true, \"user_groups\": [" + names + "], \"user_group_map\": {" + map + "}}";
}

std::vector<std::string> candidate_users(const Config& config) {
  std::vector<std::string> users = {"stranger_a", "stranger_b"};
  for (const Group& g : config.groups()) {
    for (const UserQuota& u : g.users) {
      if (u.id != kDefaultUserId) users.push_back(u.id);
    }
  }
  return users;
}

// Runs the ops on a fresh queue, checking every admission against the model; returns the
// sequence of admitted ids so that two runs can be compared.
std::vector<RequestId> run_and_check(const std::shared_ptr<const Config>& config, const std::vector<Op>& ops) {
  AdmissionQueue queue(config);
  const std::vector<std::string> users = candidate_users(*config);
  struct Waiting {
    RequestId id;
    std::string user;
  };
  std::map<std::string, std::deque<RequestId>> waiting_by_user;  // FIFO per user
  std::map<RequestId, std::string> running;
  std::vector<RequestId> admitted;
  RequestId next_id = 1;
  std::size_t waiting_count = 0;

  auto group_of = [&](const std::string& user) { return config->resolve(user)->group; };
  auto is_scavenger = [&](const std::string& user) { return config->resolve(user)->share <= 0; };

  for (const Op& op : ops) {
    if (op.kind <= 2) {
      const std::string& user = users[static_cast<std::size_t>(op.pick) % users.size()];
      const EnqueueResult r = queue.enqueue({next_id, user, op.amount, op.amount}, kT0);
      if (r.status == EnqueueStatus::kQueued) {
        RC_ASSERT(config->resolve(user).has_value());
        waiting_by_user[user].push_back(next_id);
        ++waiting_count;
      } else {
        RC_ASSERT(r.status == EnqueueStatus::kUserNotConfigured);
        RC_ASSERT(!config->resolve(user).has_value());
      }
      ++next_id;
    } else if (op.kind <= 4) {
      const std::optional<Admission> a = queue.next(kT0);
      // Work conservation: something is returned exactly when something waits.
      RC_ASSERT(a.has_value() == (waiting_count > 0));
      if (!a) continue;
      // FIFO per user: the oldest waiting request of that user.
      auto& fifo = waiting_by_user[a->user_id];
      RC_ASSERT(!fifo.empty());
      RC_ASSERT(fifo.front() == a->id);
      fifo.pop_front();
      --waiting_count;
      const std::size_t g = group_of(a->user_id);
      for (const auto& [user, ids] : waiting_by_user) {
        if (ids.empty()) continue;
        // Strict priority: nothing of a higher group was waiting.
        RC_ASSERT(group_of(user) >= g);
        // Scavengers only when no positive-quota user of the group waits.
        if (group_of(user) == g && is_scavenger(a->user_id)) RC_ASSERT(is_scavenger(user));
      }
      RC_ASSERT(a->priority == static_cast<int>(config->groups().size() - 1 - g));
      running[a->id] = a->user_id;
      admitted.push_back(a->id);
    } else if (running.empty()) {
      continue;
    } else {
      auto it = std::next(running.begin(), static_cast<long>(static_cast<std::size_t>(op.pick) % running.size()));
      if (op.kind == 5) {
        queue.charge(it->second, op.amount, op.amount / 2);
      } else if (op.kind == 6) {
        RC_ASSERT(queue.finish(it->first));
        running.erase(it);
      } else if (op.kind == 7) {
        RC_ASSERT(queue.cancel(it->first));
        running.erase(it);
      } else {
        RC_ASSERT(queue.preempt(it->first));
        waiting_by_user[it->second].push_front(it->first);
        ++waiting_count;
        running.erase(it);
      }
    }
    RC_ASSERT(queue.waiting() == waiting_count);
    RC_ASSERT(queue.running() == running.size());
  }
  // Cancelling everything leaves nothing behind.
  for (const auto& [user, ids] : waiting_by_user) {
    for (RequestId id : ids) RC_ASSERT(queue.cancel(id));
  }
  for (const auto& [id, user] : running) RC_ASSERT(queue.cancel(id));
  RC_ASSERT(queue.waiting() == 0u);
  RC_ASSERT(queue.running() == 0u);
  return admitted;
}

rc::Gen<Op> op_gen() {
  return rc::gen::build<Op>(rc::gen::set(&Op::kind, rc::gen::inRange(0, 9)),
                            rc::gen::set(&Op::pick, rc::gen::inRange(0, 1000)),
                            rc::gen::set(&Op::amount, rc::gen::inRange(1, 500)));
}

RC_GTEST_PROP(AdmissionQueueProperty, PriorityFifoConservationAndScavengers, ()) {
  const std::string text = random_config_text();
  ConfigParseResult parsed = parse_config(text, "random.json");
  RC_ASSERT(parsed.ok());
  const auto ops = *rc::gen::container<std::vector<Op>>(op_gen());
  run_and_check(parsed.config, ops);
}

RC_GTEST_PROP(AdmissionQueueProperty, DeterministicSameInputsSameOrder, ()) {
  ConfigParseResult parsed = parse_config(random_config_text(), "random.json");
  RC_ASSERT(parsed.ok());
  const auto ops = *rc::gen::container<std::vector<Op>>(op_gen());
  RC_ASSERT(run_and_check(parsed.config, ops) == run_and_check(parsed.config, ops));
}

RC_GTEST_PROP(AdmissionQueueProperty, ReloadNeverLosesARequest, ()) {
  ConfigParseResult first = parse_config(random_config_text(), "a.json");
  ConfigParseResult second = parse_config(random_config_text(), "b.json");
  RC_ASSERT(first.ok() && second.ok());
  AdmissionQueue queue(first.config);
  const std::vector<std::string> users = candidate_users(*first.config);
  const int n = *rc::gen::inRange(0, 60);
  std::size_t queued = 0;
  for (int i = 0; i < n; ++i) {
    const std::string& user = users[static_cast<std::size_t>(*rc::gen::inRange(0, 1000)) % users.size()];
    if (queue.enqueue({static_cast<RequestId>(i + 1), user, 1, 1}, kT0).status == EnqueueStatus::kQueued) ++queued;
  }
  const int admit = *rc::gen::inRange(0, 10);
  std::size_t running = 0;
  for (int i = 0; i < admit && queue.next(kT0); ++i) ++running;
  queue.reload(second.config);
  RC_ASSERT(queue.waiting() == queued - running);
  RC_ASSERT(queue.running() == running);
  std::size_t drained = 0;
  while (queue.next(kT0)) ++drained;
  RC_ASSERT(drained == queued - running);
}

}  // namespace
}  // namespace tiergate::qos
