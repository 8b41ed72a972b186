// The inference engine: continuous batching over a paged KV cache. Each step() asks its
// SchedulingPolicy for the step's plan (which waiting requests start, which running ones are
// preempted for them, which decode and how much each prefills, within max_running sequences and a
// token budget), executes it as one model step that mixes decode tokens with prefill chunks,
// samples, detokenizes, matches stop strings, and reports output deltas through a sink. Running
// requests the plan leaves out rest with their KV in place; when running sequences need KV blocks
// that are not there, the policy names the victim. Preempted requests resume by recomputation,
// which is never charged; nothing already reported is reported again.
//
// Threads: submit() and cancel() may be called from any thread (they post to an inbox); step()
// and everything else run on the one engine thread. The sink is called on the engine thread.
// Expected scarcity (no blocks, no slot) is handled inside the step, never thrown.
//
// Request states: submitted → (started by the plan) running → finished | cancelled;
//                 running → (preempted) waiting in the policy → running again;
//                 running requests the plan gives no work this step rest, keeping their KV.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"
#include "engine/executor.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/scheduling_policy.h"
#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "engine/stop_matcher.h"
#include "engine/tokenizer.h"

namespace tiergate::engine {

enum class Device { kCpu, kCuda, kAuto };  // kAuto: CUDA where a GPU is usable, else the CPU

struct EngineConfig {
  Device device = Device::kCpu;
  std::size_t num_blocks = 2048;   // KV blocks in the pool (CUDA: 0 = sized from free memory)
  double kv_cache_memory_fraction = 0.8;  // CUDA: share of the memory free after the weights
  bool cuda_graphs = false;               // CUDA: replay pure decode steps from captured graphs
  std::size_t block_size = 16;     // tokens per block
  std::size_t max_running = 64;    // sequences one step carries (more may be resident, resting)
  std::size_t token_budget = 512;  // tokens per step, decode + prefill chunks
  std::size_t threads = 0;         // CPU threads; 0 = all cores
  kernels::DType kv_dtype = kernels::DType::kF16;  // F16: ggml's flash-attention arithmetic
};

struct EngineRequest {
  RequestId id = 0;
  std::vector<TokenId> prompt;
  SamplingParams params;
};

enum class FinishReason { kNone, kStop, kLength, kCancelled };
const char* to_string(FinishReason reason);

// What one step produced for one choice of one request (deltas since the previous output).
struct RequestOutput {
  RequestId id = 0;
  std::int32_t index = 0;           // choice index, for n > 1
  std::string text;                 // new text, whole UTF-8 characters, never part of a stop string
  std::vector<TokenId> tokens;      // new tokens
  std::vector<SampledToken> logprobs;  // with tokens, when asked for
  // prompt_logprobs (echo with logprobs): prompt tokens 1..n-1 scored by the model, in the first
  // output of choice 0 (the first prompt token has no logprob).
  std::vector<SampledToken> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::size_t prompt_tokens = 0;
  std::size_t completion_tokens = 0;  // so far, this choice
};

struct EngineStats {
  std::size_t running_requests = 0;
  std::size_t running_sequences = 0;
  std::uint64_t steps = 0;
  std::uint64_t preemptions = 0;
  std::uint64_t prompt_tokens_computed = 0;
  std::uint64_t tokens_generated = 0;
  std::uint64_t mask_waits = 0;  // steps a sequence rested while its grammar's next mask was computed
  BlockManagerStats blocks;
};

using OutputSink = std::function<void(RequestOutput&&)>;

class Engine {
 public:
  Engine(const Model& model, EngineConfig config, SchedulingPolicy& policy, OutputSink sink);
  ~Engine();

  // Registers a request's content; the policy decides when it runs (submit before the policy can
  // hand out its id). Thread-safe. The request must be valid (validate() in sampling_params.h) and
  // fit the KV pool (max_request_tokens()).
  void submit(EngineRequest request);
  // Finishes a request wherever it is, freeing its blocks; its sink gets kCancelled. Thread-safe.
  void cancel(RequestId id);

  // One scheduling step. Returns false when there was nothing to do.
  bool step();
  bool idle() const;
  std::size_t max_request_tokens() const;
  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }  // num_blocks as the executor sized it
  std::string describe() const { return executor_->describe(); }

 private:
  struct Sequence;
  struct Request;

  void drain_inbox(bool with_cancels = true);
  Request* find_started(RequestId id);  // a request the policy starts; it may still be in the inbox
  bool prepare_masks();                 // this step's grammar-mask work; true when some are still pending
  bool mask_ready(Sequence& seq);       // its next draw's mask is there (else it rests this step)
  void list_running();                  // running_work_ from running_ (sequences waiting on a mask rest)
  void execute_plan();                  // plan_ → rows_
  void preempt(Request& request);
  bool start(Request& request);
  void requeue(Request& request);  // back to the policy's queue, its blocks released
  void finish(Request& request, FinishReason reason);
  // prompt_logprobs: the scores of prompt positions [from, to) from this step's logit rows.
  void score_prompt(Request& request, std::size_t from, std::size_t to, std::size_t first_row, std::size_t vocab);
  void emit_token(Request& request, Sequence& seq, const SampledToken& sampled);
  void fork_choices(Request& request, Sequence& first, std::vector<std::unique_ptr<Sequence>> children,
                    std::span<const SampledToken> sampled);

  const Model& model_;
  EngineConfig config_;
  SchedulingPolicy& policy_;
  OutputSink sink_;
  std::unique_ptr<KvCache> cpu_cache_;  // the CPU executor's pool (null on the GPU)
  std::unique_ptr<Executor> executor_;
  BlockManager blocks_;                 // accounts for the executor's pool

  mutable std::mutex inbox_mutex_;
  std::vector<EngineRequest> inbox_submit_;
  std::vector<RequestId> inbox_cancel_;

  std::unordered_map<RequestId, std::unique_ptr<Request>> requests_;  // submitted, not finished
  std::map<std::uint64_t, Request*> running_;                          // by admission order
  std::uint64_t admissions_ = 0;
  SequenceId next_sequence_ = 1;
  EngineStats stats_;
  // This step's working state (kept to reuse their capacity).
  struct Row {
    Request* request;
    Sequence* seq;
    std::size_t from, to;  // token range computed this step
  };
  std::vector<RunningRequest> running_work_;
  std::vector<Sequence*> masks_waiting_;
  bool masks_pending_ = false;
  StepPlan plan_;
  std::vector<Row> rows_;
  SamplingStep draws_;   // this step's draws
  SampledStep sampled_;  // and their outcome
};

}  // namespace tiergate::engine
