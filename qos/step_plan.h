// What the engine tells the QoS policy before each step, and the plan it gets back (DESIGN.md §3,
// "Inside the running batch too" and "Isolation"): the running requests' outstanding work and the
// step's capacity in; which running requests decode, how many tokens each prefills, which waiting
// requests start now and which running ones are preempted to make room, out. Plain values; the
// engine executes the plan and never learns why (AdmissionQueue::plan_step decides).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tiergate::qos {

using RequestId = std::uint64_t;

// One running (admitted, KV-resident) request's work before a step; the engine lists them in
// admission order.
struct RunningWork {
  RequestId id = 0;
  std::int64_t decode_seqs = 0;     // sequences that would decode one token each
  std::int64_t prefill_seqs = 0;    // sequences with tokens to compute before their next draw
  std::int64_t prefill_tokens = 0;  // those tokens, all such sequences together
  std::int64_t blocks = 0;          // KV blocks it holds (freed if it is preempted)
  bool first_token_pending = true;  // no output yet: its client is waiting for the first token
};

struct StepCapacity {
  std::int64_t max_seqs = 64;        // sequences one step may carry
  std::int64_t token_budget = 512;   // tokens one step may compute (decode + prefill)
  std::int64_t free_blocks = 0;      // KV blocks free for requests that start now
  std::int64_t block_size = 16;      // tokens per KV block
};

struct StepGrant {
  RequestId id = 0;
  bool decode = false;              // its decoding sequences each get one token
  std::int64_t prefill_tokens = 0;  // tokens its prefilling sequences may compute, in order
};

// A waiting request the plan starts now.
struct StepAdmission {
  RequestId id = 0;
  std::int64_t prefill_tokens = 0;  // granted this step
  std::string group;                // "" with QoS off
  double waited_s = 0;              // time it spent waiting, this wait included
  bool first_start = true;          // false when it ran before (preempted, or a start that failed)
};

struct StepPlan {
  std::vector<RequestId> preempt;     // running → waiting first, lowest group first (they make room for `admit`)
  std::vector<StepAdmission> admit;   // waiting → running now, in decision order
  std::vector<StepGrant> run;         // running requests that get work this step

  void clear() {
    preempt.clear();
    admit.clear();
    run.clear();
  }
};

}  // namespace tiergate::qos
