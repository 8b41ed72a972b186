// The engine's scheduling decisions, made outside it. Before every step the engine tells the
// policy what each running request still has to do and how much the step can carry; the policy
// answers with the step's plan: which waiting requests start, which running ones are preempted to
// make room, which decode and how many tokens each prefills. The engine executes the plan and
// never learns why: it knows requests by id only, never groups, users or quotas (the gateway
// implements this with qos::AdmissionQueue; FifoPolicy is the plain priority + first-come-first-
// served one for the CLI and tests). The engine thread is the only caller; implementations that
// other threads feed synchronise themselves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tiergate::engine {

using RequestId = std::uint64_t;

// One running (KV-resident) request's outstanding work; the engine lists them in admission order.
struct RunningRequest {
  RequestId id = 0;
  std::size_t decode_seqs = 0;     // sequences that would decode one token each
  std::size_t prefill_seqs = 0;    // sequences with tokens to compute before their next draw
  std::size_t prefill_tokens = 0;  // those tokens, all such sequences together
  std::size_t blocks = 0;          // KV blocks its sequences hold
  bool first_token_pending = true; // it has produced no output yet
};

struct StepLimits {
  std::size_t max_seqs = 0;      // sequences one step may carry
  std::size_t token_budget = 0;  // tokens one step may compute
  std::size_t free_blocks = 0;   // KV blocks requests that start now may take (growth reserve kept)
  std::size_t block_size = 16;
};

struct StepGrant {
  RequestId id = 0;
  bool decode = false;             // each of its decoding sequences computes one token
  std::size_t prefill_tokens = 0;  // tokens its prefilling sequences may compute, in order
};

struct StepPlan {
  std::vector<RequestId> preempt;  // first: running → waiting, to free blocks for `start`
  std::vector<StepGrant> start;    // then: waiting → running, in order; the first that cannot get
                                   // its blocks goes back to wait, and so does every one after it
  std::vector<StepGrant> run;      // work for running requests; a running request not listed rests

  void clear() {
    preempt.clear();
    start.clear();
    run.clear();
  }
};

class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  // This step's plan for `running` (admission order) within `limits`. Every id in plan.start is
  // running in the policy's eyes on return.
  virtual void plan_step(std::span<const RunningRequest> running, const StepLimits& limits, StepPlan& plan) = 0;
  // Running sequences need KV blocks that are not there: which of `running` (non-empty) to preempt.
  virtual RequestId memory_victim(std::span<const RunningRequest> running) = 0;
  // A running request waits again, ahead of its user's other requests: preempted, or a start that
  // could not get its blocks. To run again it must compute `resume_tokens` tokens into
  // `resume_blocks` blocks; `streamed` when it already produced output.
  virtual void preempted(RequestId id, std::size_t resume_tokens, std::size_t resume_blocks, bool streamed) = 0;
  // Tokens processed for a request: prompt tokens as first prefilled (never recomputation), output
  // tokens as generated.
  virtual void charge(RequestId id, std::size_t prompt_tokens, std::size_t output_tokens) = 0;
  // The request left the engine (finished, cancelled or failed), or it was never known to it.
  virtual void finished(RequestId id) = 0;
};

}  // namespace tiergate::engine
