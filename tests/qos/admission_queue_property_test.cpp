// Properties of qos/admission_queue.* under random configs (QoS on and off, with wait bounds) and
// random operation sequences (enqueue, next with and without a prompt-token limit, charge, finish,
// cancel, preempt, expire, reload), checked against a plain model of what is waiting: strict
// priority, work conservation, head of line under a token limit, FIFO per user, scavengers last,
// exactly the right requests expiring, determinism, and consistent bookkeeping.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "qos/admission_queue.h"
#include "qos/config_parser.h"

namespace tiergate::qos {
namespace {

const Clock::time_point kT0{};

struct Op {
  int kind;       // 0-2 enqueue, 3-4 next, 5 charge, 6 finish, 7 cancel, 8 preempt,
                  // 9 next under a token limit, 10 expire, 11 reload
  int pick;       // which user / request
  int amount;     // tokens (also: the clock advances 10x as many milliseconds before the op)
};

// A random config: 1-4 groups of 1-4 users named u<g>_<i>, quotas 0..100, sometimes a default
// entry, sometimes a wait bound; one time in five with QoS off.
std::string random_config_text() {
  if (*rc::gen::inRange(0, 5) == 0) return R"({"enable_user_qos": false})";
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
  std::string limits;
  for (int g = 0; g < groups; ++g) {
    if (*rc::gen::inRange(0, 3) != 0) continue;
    limits += (limits.empty() ? "\"G" : ", \"G") + std::to_string(g) +
              "\": {\"max_queue_wait_s\": " + std::to_string(*rc::gen::inRange(1, 4)) + "}";
  }
  return "{\"enable_user_qos\": true, \"user_groups\": [" + names + "], \"user_group_map\": {" + map + "}" +
         (limits.empty() ? "" : ", \"group_limits\": {" + limits + "}") + "}";
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

// Runs the ops on a fresh queue (reloading to `second` on op 11), checking every admission and
// expiry against the model; returns the sequence of admitted ids so that two runs can be compared.
std::vector<RequestId> run_and_check(const std::shared_ptr<const Config>& first,
                                     const std::shared_ptr<const Config>& second, const std::vector<Op>& ops) {
  AdmissionQueue queue(first);
  std::shared_ptr<const Config> config = first;
  std::vector<std::string> users = candidate_users(*first);
  for (const std::string& u : candidate_users(*second)) users.push_back(u);
  struct Waiting {
    std::int64_t tokens;
    Clock::duration waited_before{};
    Clock::time_point since;
    bool streamed = false;
  };
  std::map<std::string, std::deque<RequestId>> waiting_by_user;  // FIFO per user
  std::map<RequestId, Waiting> waiting;
  std::map<RequestId, std::pair<std::string, Waiting>> running;
  std::vector<RequestId> admitted;
  RequestId next_id = 1;
  Clock::time_point now = kT0;

  // Where a user stands under the config in force; users it no longer admits are served last, as
  // scavengers of the lowest group.
  auto group_of = [&](const std::string& user) -> std::size_t {
    if (!config->enable_user_qos()) return 0;
    auto r = config->resolve(user);
    return r ? r->group : config->groups().size() - 1;
  };
  auto is_scavenger = [&](const std::string& user) {
    if (!config->enable_user_qos()) return false;
    auto r = config->resolve(user);
    return !r || r->share <= 0;
  };
  auto check_admission = [&](const Admission& a) {
    auto& fifo = waiting_by_user[a.user_id];
    // FIFO per user: the oldest waiting request of that user.
    RC_ASSERT(!fifo.empty());
    RC_ASSERT(fifo.front() == a.id);
    const std::size_t g = group_of(a.user_id);
    for (const auto& [user, ids] : waiting_by_user) {
      if (ids.empty()) continue;
      // Strict priority: nothing of a higher group was waiting.
      RC_ASSERT(group_of(user) >= g);
      // Scavengers only when no positive-quota user of the group waits.
      if (group_of(user) == g && is_scavenger(a.user_id)) RC_ASSERT(is_scavenger(user));
      // QoS off: first come, first served overall.
      if (!config->enable_user_qos()) RC_ASSERT(ids.front() >= a.id || ids.front() == a.id);
    }
    const std::size_t groups = config->enable_user_qos() ? config->groups().size() : 1;
    RC_ASSERT(a.priority == static_cast<int>(groups - 1 - g));
    fifo.pop_front();
    Waiting w = waiting.at(a.id);
    waiting.erase(a.id);
    w.waited_before += now - w.since;
    RC_ASSERT(a.waited == w.waited_before);
    running[a.id] = {a.user_id, w};
    admitted.push_back(a.id);
  };

  for (const Op& op : ops) {
    now += std::chrono::milliseconds(10 * op.amount);
    if (op.kind <= 2) {
      const std::string& user = users[static_cast<std::size_t>(op.pick) % users.size()];
      const EnqueueResult r = queue.enqueue({next_id, user, op.amount, op.amount}, now);
      if (r.status == EnqueueStatus::kQueued) {
        RC_ASSERT(config->resolve(user).has_value());
        waiting_by_user[user].push_back(next_id);
        waiting[next_id] = Waiting{op.amount, {}, now, false};
      } else {
        RC_ASSERT(r.status == EnqueueStatus::kUserNotConfigured);
        RC_ASSERT(!config->resolve(user).has_value());
      }
      ++next_id;
    } else if (op.kind <= 4) {
      const UsageReport before = queue.usage();
      const std::optional<Admission> a = queue.next(now);
      // The smallest counter: no other waiting user of the pick's group and class is below it.
      if (a && config->enable_user_qos()) {
        double picked = 0;
        for (const UserUsage& u : before.users) {
          if (u.user_id == a->user_id) picked = u.virtual_counter;
        }
        for (const UserUsage& u : before.users) {
          if (u.waiting == 0 || u.user_id == a->user_id || group_of(u.user_id) != group_of(a->user_id)) continue;
          if (is_scavenger(u.user_id) == is_scavenger(a->user_id)) RC_ASSERT(picked <= u.virtual_counter);
        }
      }
      // Work conservation: something is returned exactly when something waits.
      RC_ASSERT(a.has_value() == !waiting.empty());
      if (a) check_admission(*a);
    } else if (op.kind == 9) {
      // Under a limit the pick is returned if it fits; if it does not, nothing is (head of line):
      // the unlimited pick is then the one that did not fit.
      const std::int64_t limit = op.pick % 500;
      if (const std::optional<Admission> a = queue.next(now, limit)) {
        RC_ASSERT(a->prompt_tokens <= limit);
        check_admission(*a);
      } else if (!waiting.empty()) {
        const std::optional<Admission> unlimited = queue.next(now);
        RC_ASSERT(unlimited.has_value());
        RC_ASSERT(unlimited->prompt_tokens > limit);
        check_admission(*unlimited);
      }
    } else if (op.kind == 10) {
      // Exactly the waiting requests past their group's bound that never streamed expire.
      std::set<RequestId> due;
      for (const auto& [id, w] : waiting) {
        std::string user;
        for (const auto& [u, ids] : waiting_by_user) {
          if (std::find(ids.begin(), ids.end(), id) != ids.end()) user = u;
        }
        if (!config->enable_user_qos() || !config->resolve(user)) continue;
        const auto& bound = config->groups()[group_of(user)].limits.max_queue_wait_s;
        const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(bound.value_or(1e9)));
        if (!w.streamed && w.waited_before + (now - w.since) > limit) due.insert(id);
      }
      std::set<RequestId> got;
      for (const ExpiredRequest& e : queue.expire(now)) got.insert(e.id);
      RC_ASSERT(got == due);
      for (RequestId id : got) {
        waiting.erase(id);
        for (auto& [u, ids] : waiting_by_user) std::erase(ids, id);
      }
    } else if (op.kind == 11) {
      queue.reload(second);
      config = second;
    } else if (running.empty()) {
      continue;
    } else {
      auto it = std::next(running.begin(), static_cast<long>(static_cast<std::size_t>(op.pick) % running.size()));
      if (op.kind == 5) {
        queue.charge(it->second.first, op.amount, op.amount / 2);
      } else if (op.kind == 6) {
        RC_ASSERT(queue.finish(it->first));
        running.erase(it);
      } else if (op.kind == 7) {
        RC_ASSERT(queue.cancel(it->first));
        running.erase(it);
      } else {
        const bool streamed = op.amount % 2 == 0;
        RC_ASSERT(queue.preempt(it->first, now, -1, 0, streamed));
        Waiting w = it->second.second;
        w.since = now;
        w.streamed = w.streamed || streamed;
        waiting_by_user[it->second.first].push_front(it->first);
        waiting[it->first] = w;
        running.erase(it);
      }
    }
    RC_ASSERT(queue.waiting() == waiting.size());
    RC_ASSERT(queue.running() == running.size());
  }
  // Cancelling everything leaves nothing behind.
  for (const auto& [id, w] : waiting) RC_ASSERT(queue.cancel(id));
  for (const auto& [id, r] : running) RC_ASSERT(queue.cancel(id));
  RC_ASSERT(queue.waiting() == 0u);
  RC_ASSERT(queue.running() == 0u);
  return admitted;
}

rc::Gen<Op> op_gen() {
  return rc::gen::build<Op>(rc::gen::set(&Op::kind, rc::gen::inRange(0, 12)),
                            rc::gen::set(&Op::pick, rc::gen::inRange(0, 1000)),
                            rc::gen::set(&Op::amount, rc::gen::inRange(1, 500)));
}

RC_GTEST_PROP(AdmissionQueueProperty, PriorityFifoConservationScavengersAndExpiry, ()) {
  ConfigParseResult first = parse_config(random_config_text(), "a.json");
  ConfigParseResult second = parse_config(random_config_text(), "b.json");
  RC_ASSERT(first.ok() && second.ok());
  const auto ops = *rc::gen::container<std::vector<Op>>(op_gen());
  run_and_check(first.config, second.config, ops);
}

RC_GTEST_PROP(AdmissionQueueProperty, DeterministicSameInputsSameOrder, ()) {
  ConfigParseResult first = parse_config(random_config_text(), "a.json");
  ConfigParseResult second = parse_config(random_config_text(), "b.json");
  RC_ASSERT(first.ok() && second.ok());
  const auto ops = *rc::gen::container<std::vector<Op>>(op_gen());
  RC_ASSERT(run_and_check(first.config, second.config, ops) == run_and_check(first.config, second.config, ops));
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
