// AdmissionQueue::plan_step and memory_victim: how one engine step's sequences and tokens are split
// among the running and waiting requests (DESIGN.md §3, "Inside the running batch too",
// "Isolation", "Preemption"). The queue's other operations are in admission_queue.cpp.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <queue>
#include <unordered_map>

#include "qos/admission_queue.h"
#include "qos/admission_queue_state.h"
#include "qos/check.h"

namespace tiergate::qos {
namespace {

// The grain of in-step fairness for prefill: a prompt is handed out in pieces of this many tokens,
// so a long prompt cannot take a whole step while another user of its group is behind.
constexpr std::int64_t kPrefillPiece = 32;

std::int64_t blocks_for(std::int64_t tokens, std::int64_t block_size) {
  // The prompt's blocks plus room for the first generated token.
  return (std::max<std::int64_t>(tokens, 0) + block_size) / block_size;
}

}  // namespace

void AdmissionQueue::plan_fcfs(std::span<const RunningWork> running, const StepCapacity& capacity,
                               Clock::time_point now, StepPlan& plan) {
  // QoS off: what a plain continuous-batching engine does. Every running request decodes, then
  // prefill in admission order, then waiting requests start in arrival order while there is room.
  std::int64_t seqs = capacity.max_seqs;
  std::int64_t tokens = capacity.token_budget;
  std::int64_t blocks = capacity.free_blocks;
  std::vector<StepGrant> grants(running.size());
  for (std::size_t i = 0; i < running.size(); ++i) {
    grants[i].id = running[i].id;
    const RunningWork& w = running[i];
    if (w.decode_seqs > 0 && w.decode_seqs <= seqs && w.decode_seqs <= tokens) {
      grants[i].decode = true;
      seqs -= w.decode_seqs;
      tokens -= w.decode_seqs;
    }
  }
  for (std::size_t i = 0; i < running.size(); ++i) {
    const RunningWork& w = running[i];
    if (w.prefill_tokens == 0 || tokens == 0 || w.prefill_seqs > seqs) continue;
    grants[i].prefill_tokens = std::min(w.prefill_tokens, tokens);
    tokens -= grants[i].prefill_tokens;
    seqs -= w.prefill_seqs;
  }
  for (const StepGrant& g : grants) {
    if (g.decode || g.prefill_tokens > 0) plan.run.push_back(g);
  }
  GroupState& group = groups_[0];
  while (seqs > 0 && tokens > 0 && !group.ready.empty()) {
    Account& account = *std::get<3>(*group.ready.begin());
    const Pending& head = account.waiting.front();
    const std::int64_t need = head.blocks > 0 ? head.blocks : blocks_for(head.request.prompt_tokens, capacity.block_size);
    if (need > blocks) break;  // head of line: nobody jumps it
    blocks -= need;
    const Admission a = admit_head(account, now);
    const std::int64_t grant = std::min(std::max<std::int64_t>(a.prompt_tokens, 1), tokens);
    plan.admit.push_back({a.id, grant, "", std::chrono::duration<double>(a.waited).count(), a.first_start});
    tokens -= grant;
    seqs -= 1;
  }
}

void AdmissionQueue::plan_step(std::span<const RunningWork> running, const StepCapacity& capacity,
                               Clock::time_point now, StepPlan& plan) {
  std::lock_guard lock(mutex_);
  plan.clear();
  if (!config_->enable_user_qos()) return plan_fcfs(running, capacity, now, plan);

  const TokenWeights weights = config_->weights();
  // One entry per running request, and one per request admitted during this plan.
  struct Item {
    RequestId id = 0;
    std::size_t group = 0;
    std::uint64_t order = 0;          // admission order (running first, then this plan's admissions)
    std::int64_t decode_seqs = 0;
    std::int64_t prefill_seqs = 0;
    std::int64_t prefill_left = 0;
    std::int64_t blocks = 0;
    bool first_token_pending = false;
    bool decode = false;              // granted
    std::int64_t prefill = 0;         // granted
    bool prefill_counted = false;     // its prefilling sequences hold step slots
    bool preempted = false;
    std::int64_t admission = -1;      // index into plan.admit for requests started by this plan
  };
  std::deque<Item> items;  // stable addresses as admissions are added
  // A user's work this step: its running requests in admission order, then its waiting ones.
  struct UserWork {
    Account* account = nullptr;
    std::vector<Item*> items;
    std::size_t decode_cursor = 0;   // items before it have had their decode decided
    std::size_t prefill_cursor = 0;  // items before it have no prefill left
    double spent = 0;                // weighted tokens granted this step
    std::uint64_t tiebreak = 0;      // oldest work first among equal keys
    bool done = false;
  };
  std::unordered_map<Account*, UserWork> users;
  std::vector<std::vector<UserWork*>> by_group(groups_.size());
  auto work_of = [&](Account& account, std::uint64_t tiebreak) -> UserWork& {
    auto [it, fresh] = users.try_emplace(&account);
    if (fresh) {
      it->second.account = &account;
      it->second.tiebreak = tiebreak;
      by_group[account.group].push_back(&it->second);
    }
    return it->second;
  };
  for (std::size_t i = 0; i < running.size(); ++i) {
    const RunningWork& w = running[i];
    auto found = requests_.find(w.id);
    if (found == requests_.end()) continue;  // not ours (or already gone): nothing to decide
    Account& account = *found->second;
    auto r = account.running.find(w.id);
    if (r == account.running.end()) continue;
    Item& item = items.emplace_back();
    item.id = w.id;
    item.group = account.group;
    item.order = i;
    item.decode_seqs = w.decode_seqs;
    item.prefill_seqs = w.prefill_seqs;
    item.prefill_left = w.prefill_tokens;
    item.blocks = w.blocks;
    item.first_token_pending = w.first_token_pending;
    work_of(account, r->second.seq).items.push_back(&item);
  }
  std::uint64_t next_order = running.size();

  std::int64_t seqs_left = capacity.max_seqs;
  std::int64_t tokens_left = capacity.token_budget;
  std::int64_t blocks_left = capacity.free_blocks;
  std::int64_t lower_cap = std::numeric_limits<std::int64_t>::max();  // tokens left to strictly lower groups
  bool admission_open = true;  // strict priority: a blocked head stops every lower group's admissions

  // Frees KV blocks for a waiting request of group g from running requests of strictly lower
  // groups, lowest group and most recent admission first; only if that is enough.
  auto make_room = [&](std::size_t g, std::int64_t need) {
    std::vector<Item*> candidates;
    std::int64_t reclaimable = 0;
    for (Item& item : items) {
      if (item.group > g && !item.preempted && item.admission < 0) {
        candidates.push_back(&item);
        reclaimable += item.blocks;
      }
    }
    if (blocks_left + reclaimable < need) return false;
    std::sort(candidates.begin(), candidates.end(), [](const Item* a, const Item* b) {
      return a->group != b->group ? a->group > b->group : a->order > b->order;
    });
    for (Item* victim : candidates) {
      if (blocks_left >= need) break;
      victim->preempted = true;
      blocks_left += victim->blocks;
      plan.preempt.push_back(victim->id);
    }
    return true;
  };

  for (std::size_t g = 0; g < groups_.size(); ++g) {
    GroupState& group = groups_[g];
    const std::int64_t group_budget = std::min(tokens_left, lower_cap);
    std::int64_t group_tokens = group_budget;
    // The pass: min-heap of users by (scavenger, counter + spent / share, oldest work).
    using Key = std::tuple<bool, double, std::uint64_t, UserWork*>;
    auto key_of = [&](UserWork& u) {
      const double s = share(*u.account);
      return Key{s <= 0, u.account->counter + u.spent / (s > 0 ? s : 1.0), u.tiebreak, &u};
    };
    std::priority_queue<Key, std::vector<Key>, std::greater<>> heap;
    for (UserWork* u : by_group[g]) heap.push(key_of(*u));
    // Users with only waiting requests join lazily, in the ready set's order (their key is their
    // counter), so that a long queue costs nothing beyond the users actually reached.
    std::optional<ReadyKey> ready_cursor;
    auto next_ready = [&]() -> Account* {
      if (!admission_open) return nullptr;
      auto it = ready_cursor ? group.ready.upper_bound(*ready_cursor) : group.ready.begin();
      for (; it != group.ready.end(); ++it) {
        if (!users.count(std::get<3>(*it))) return std::get<3>(*it);
      }
      return nullptr;
    };

    enum class Unit { kGranted, kDone, kShortOfSeqs };
    // kShortOfSeqs: u still has work that the step's sequences cannot take.
    auto grant_unit = [&](UserWork& u) -> Unit {
      bool short_of_seqs = false;
      // 1. Decode tokens of its running requests, oldest first.
      // One that does not fit now never will this step (capacity only shrinks): skip it.
      for (; u.decode_cursor < u.items.size(); ++u.decode_cursor) {
        Item& item = *u.items[u.decode_cursor];
        if (item.preempted || item.decode_seqs == 0) continue;
        short_of_seqs |= item.decode_seqs > seqs_left;
        if (item.decode_seqs > seqs_left || item.decode_seqs > group_tokens) continue;
        item.decode = true;
        seqs_left -= item.decode_seqs;
        group_tokens -= item.decode_seqs;
        u.spent += weights.output * static_cast<double>(item.decode_seqs);
        ++u.decode_cursor;
        return Unit::kGranted;
      }
      // 2. A prefill piece of its running (or just started) requests, oldest first.
      for (; u.prefill_cursor < u.items.size(); ++u.prefill_cursor) {
        Item& item = *u.items[u.prefill_cursor];
        if (item.preempted || item.prefill_left == 0) continue;
        if (group_tokens == 0) return Unit::kDone;
        if (!item.prefill_counted && item.prefill_seqs > seqs_left) {
          short_of_seqs = true;
          continue;
        }
        if (!item.prefill_counted) {
          seqs_left -= item.prefill_seqs;
          item.prefill_counted = true;
        }
        const std::int64_t piece = std::min({kPrefillPiece, item.prefill_left, group_tokens});
        item.prefill += piece;
        item.prefill_left -= piece;
        group_tokens -= piece;
        if (item.admission >= 0) plan.admit[static_cast<std::size_t>(item.admission)].prefill_tokens += piece;
        u.spent += weights.input * static_cast<double>(piece);
        return Unit::kGranted;
      }
      // 3. Start its next waiting request, with its first prefill piece.
      Account& account = *u.account;
      const Unit none = short_of_seqs ? Unit::kShortOfSeqs : Unit::kDone;
      if (!admission_open || account.waiting.empty() || group_tokens == 0) return none;
      if (seqs_left == 0) return Unit::kShortOfSeqs;
      const Pending& head = account.waiting.front();
      const std::int64_t need = head.blocks > 0 ? head.blocks : blocks_for(head.request.prompt_tokens, capacity.block_size);
      if (need > blocks_left && !make_room(g, need)) {
        admission_open = false;  // head of line: nobody of this or a lower group starts past it
        return none;
      }
      blocks_left -= need;
      const bool streamed = head.streamed;
      const Admission a = admit_head(account, now);
      Item& item = items.emplace_back();
      item.id = a.id;
      item.group = g;
      item.order = next_order++;
      item.prefill_seqs = 1;  // n > 1 choices fork after the prompt
      item.prefill_counted = true;
      item.blocks = need;
      item.first_token_pending = !streamed;
      const std::int64_t prompt = std::max<std::int64_t>(a.prompt_tokens, 1);
      const std::int64_t piece = std::min({kPrefillPiece, prompt, group_tokens});
      item.prefill = piece;
      item.prefill_left = prompt - piece;
      item.admission = static_cast<std::int64_t>(plan.admit.size());
      plan.admit.push_back({a.id, piece, a.group, std::chrono::duration<double>(a.waited).count(), a.first_start});
      seqs_left -= 1;
      group_tokens -= piece;
      u.spent += weights.input * static_cast<double>(piece);
      u.items.push_back(&item);
      return Unit::kGranted;
    };

    while (group_tokens > 0) {
      // The smaller of the heap's best and the best user with only waiting work.
      Account* waiting_only = next_ready();
      UserWork* u = nullptr;
      if (!heap.empty() &&
          (!waiting_only || std::get<0>(heap.top()) < scavenger(*waiting_only) ||
           (std::get<0>(heap.top()) == scavenger(*waiting_only) &&
            std::pair(std::get<1>(heap.top()), std::get<2>(heap.top())) <=
                std::pair(waiting_only->counter, waiting_only->waiting.front().seq)))) {
        u = std::get<3>(heap.top());
        heap.pop();
      } else if (waiting_only) {
        ready_cursor = *waiting_only->ready_key;
        u = &work_of(*waiting_only, waiting_only->waiting.front().seq);
      } else {
        break;
      }
      const Unit unit = grant_unit(*u);
      if (unit == Unit::kGranted) {
        heap.push(key_of(*u));
      } else if (unit == Unit::kShortOfSeqs) {
        // The user furthest behind still has work, but the step has no sequence left for it:
        // whatever else the group took now would only push the others further ahead of it (a long
        // prefill filling the tokens a decode-bound user cannot use). The group's pass ends here;
        // its share of the step is as fair as the step's sequences allow.
        break;
      }
    }
    const std::int64_t used = group_budget - group_tokens;
    tokens_left -= used;
    if (lower_cap != std::numeric_limits<std::int64_t>::max()) lower_cap -= used;
    // Isolation: a request of this group on its way to its first token bounds every lower group.
    const bool protecting = std::any_of(items.begin(), items.end(), [&](const Item& item) {
      return item.group == g && !item.preempted && item.first_token_pending;
    });
    if (protecting) lower_cap = std::min(lower_cap, config_->groups()[g].limits.lower_groups_step_tokens);
    if (seqs_left == 0 || tokens_left == 0) break;
  }

  for (const Item& item : items) {
    if (item.admission >= 0 || item.preempted || (!item.decode && item.prefill == 0)) continue;
    plan.run.push_back({item.id, item.decode, item.prefill});
  }
}

RequestId AdmissionQueue::memory_victim(std::span<const RunningWork> running) const {
  std::lock_guard lock(mutex_);
  QOS_CHECK(!running.empty());
  // Lowest group; inside it the user most over its share; that user's most recent admission.
  const RunningWork* victim = nullptr;
  std::size_t victim_group = 0;
  double victim_counter = 0;
  for (const RunningWork& w : running) {
    auto found = requests_.find(w.id);
    // A request the queue does not know is the cheapest victim: nobody is waiting on its fairness.
    const std::size_t g = found == requests_.end() ? groups_.size() : found->second->group;
    const double counter = found == requests_.end() ? std::numeric_limits<double>::max() : found->second->counter;
    if (!victim || g > victim_group || (g == victim_group && counter >= victim_counter)) {
      victim = &w;
      victim_group = g;
      victim_counter = counter;
    }
  }
  return victim->id;
}

}  // namespace tiergate::qos
