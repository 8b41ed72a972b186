#include "engine/fifo_policy.h"

#include <algorithm>

namespace tiergate::engine {

void FifoPolicy::enqueue(RequestId id, std::size_t prompt_tokens, int priority) {
  std::lock_guard lock(mutex_);
  waiting_.push_back({id, prompt_tokens, 0, priority});
}

std::size_t FifoPolicy::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

void FifoPolicy::plan_step(std::span<const RunningRequest> running, const StepLimits& limits, StepPlan& plan) {
  std::lock_guard lock(mutex_);
  plan.clear();
  // Everything with work, in service order: priority first; at one priority, running requests in
  // admission order, then waiting ones in arrival order.
  struct Candidate {
    int priority;
    bool waiting;
    std::size_t order;
  };
  std::vector<Candidate> order;
  auto priority_of = [&](RequestId id) {
    auto it = running_.find(id);
    return it == running_.end() ? 0 : it->second.priority;
  };
  for (std::size_t i = 0; i < running.size(); ++i) order.push_back({priority_of(running[i].id), false, i});
  for (std::size_t i = 0; i < waiting_.size(); ++i) order.push_back({waiting_[i].priority, true, i});
  std::stable_sort(order.begin(), order.end(), [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.waiting < b.waiting;
  });

  std::size_t seqs = limits.max_seqs, tokens = limits.token_budget, blocks = limits.free_blocks;
  std::vector<StepGrant> grants(running.size());
  for (std::size_t i = 0; i < running.size(); ++i) grants[i].id = running[i].id;
  std::vector<bool> preempted(running.size(), false);
  std::vector<std::size_t> started;  // indices into waiting_
  bool starting = true;              // false once a waiting request could not start: none past it
  // One priority level at a time: its running requests' decode tokens first, then their prefill
  // and its waiting requests' starts in order.
  for (std::size_t level = 0; level < order.size();) {
    std::size_t end = level;
    while (end < order.size() && order[end].priority == order[level].priority) ++end;
    for (std::size_t k = level; k < end; ++k) {
      if (order[k].waiting) continue;
      const RunningRequest& r = running[order[k].order];
      if (r.decode_seqs > 0 && r.decode_seqs <= seqs && r.decode_seqs <= tokens) {
        grants[order[k].order].decode = true;
        seqs -= r.decode_seqs;
        tokens -= r.decode_seqs;
      }
    }
    for (std::size_t k = level; k < end && tokens > 0; ++k) {
      const Candidate& c = order[k];
      if (!c.waiting) {
        const RunningRequest& r = running[c.order];
        if (preempted[c.order] || r.prefill_tokens == 0 || r.prefill_seqs > seqs) continue;
        grants[c.order].prefill_tokens = std::min(r.prefill_tokens, tokens);
        tokens -= grants[c.order].prefill_tokens;
        seqs -= r.prefill_seqs;
        continue;
      }
      const Entry& e = waiting_[c.order];
      if (!starting || seqs == 0) {
        starting = false;
        continue;
      }
      const std::size_t need = e.blocks > 0 ? e.blocks : (e.tokens + limits.block_size) / limits.block_size;
      if (need > blocks) {
        // Lower-priority running requests make room, lowest priority and latest admitted first.
        std::vector<std::size_t> victims;
        std::size_t reclaimable = 0;
        for (std::size_t i = running.size(); i-- > 0;) {
          if (!preempted[i] && priority_of(running[i].id) < e.priority) {
            victims.push_back(i);
            reclaimable += running[i].blocks;
          }
        }
        if (blocks + reclaimable < need) {  // head of line
          starting = false;
          continue;
        }
        std::stable_sort(victims.begin(), victims.end(), [&](std::size_t a, std::size_t b) {
          return priority_of(running[a].id) < priority_of(running[b].id);
        });
        for (std::size_t v : victims) {
          if (blocks >= need) break;
          preempted[v] = true;
          blocks += running[v].blocks;
          grants[v] = {running[v].id, false, 0};
          plan.preempt.push_back(running[v].id);
        }
      }
      blocks -= need;
      const std::size_t grant = std::min(std::max<std::size_t>(e.tokens, 1), tokens);
      plan.start.push_back({e.id, false, grant});
      tokens -= grant;
      seqs -= 1;
      started.push_back(c.order);
    }
    level = end;
  }
  for (std::size_t i = 0; i < running.size(); ++i) {
    if (!preempted[i] && (grants[i].decode || grants[i].prefill_tokens > 0)) plan.run.push_back(grants[i]);
  }
  std::sort(started.begin(), started.end());
  for (std::size_t k = started.size(); k-- > 0;) {
    const auto it = waiting_.begin() + static_cast<std::ptrdiff_t>(started[k]);
    running_[it->id] = *it;
    waiting_.erase(it);
  }
}

RequestId FifoPolicy::memory_victim(std::span<const RunningRequest> running) {
  std::lock_guard lock(mutex_);
  // Lowest priority; the most recently admitted among equals.
  const RunningRequest* victim = &running.front();
  int lowest = 0;
  bool first = true;
  for (const RunningRequest& r : running) {
    auto it = running_.find(r.id);
    const int p = it == running_.end() ? 0 : it->second.priority;
    if (first || p <= lowest) {
      victim = &r;
      lowest = p;
      first = false;
    }
  }
  return victim->id;
}

void FifoPolicy::preempted(RequestId id, std::size_t resume_tokens, std::size_t resume_blocks, bool) {
  std::lock_guard lock(mutex_);
  auto it = running_.find(id);
  if (it == running_.end()) return;
  Entry e = it->second;
  running_.erase(it);
  e.tokens = resume_tokens;
  e.blocks = resume_blocks;
  // Ahead of everything of its priority that waits.
  auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](const Entry& w) { return w.priority <= e.priority; });
  waiting_.insert(pos, e);
}

void FifoPolicy::finished(RequestId id) {
  std::lock_guard lock(mutex_);
  running_.erase(id);
  std::erase_if(waiting_, [&](const Entry& e) { return e.id == id; });
}

}  // namespace tiergate::engine
