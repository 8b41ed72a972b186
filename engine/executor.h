// One model step over a batch that mixes prefill chunks and decode tokens of many sequences, on
// some device: the seam between the engine's scheduling (engine.cpp) and the kernels. CpuExecutor
// runs kernels/cpu; CudaExecutor (built where nvcc exists) runs kernels/cuda. Block ids in the
// batch index the executor's own KV pool, which the engine's BlockManager accounts for.
// Engine-thread only; a broken invariant aborts (TG_CHECK), nothing is thrown on the data path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sampling_step.h"
#include "engine/tokenizer.h"

namespace tiergate::engine {

struct StepBatch {
  std::vector<TokenId> tokens;             // [num_tokens]
  std::vector<std::int32_t> positions;     // [num_tokens]
  std::vector<std::int32_t> token_seq;     // [num_tokens] row in block_tables
  std::vector<std::int32_t> block_tables;  // [num_seqs, max_blocks]
  std::size_t max_blocks = 0;              // set before add_sequence: the longest table
  std::vector<std::int32_t> logit_rows;    // tokens whose next-token logits are wanted

  // Appends a sequence's block table as a new row; returns its row index.
  std::int32_t add_sequence(const std::vector<BlockId>& table);
  void add_token(TokenId token, std::int32_t position, std::int32_t seq_row, bool wants_logits);
  std::size_t num_sequences() const { return max_blocks == 0 ? 0 : block_tables.size() / max_blocks; }
};

class Executor {
 public:
  virtual ~Executor() = default;
  // logits: [batch.logit_rows.size(), vocab] on the host, in logit_rows order.
  virtual void forward(const StepBatch& batch, std::vector<float>& logits) = 0;
  // The step and its draws (draws.logit_rows index batch.logit_rows), sampled where the logits
  // are: out.tokens and out.logprobs, and out.logits when draws.want_logits.
  virtual void forward_sampled(const StepBatch& batch, const SamplingStep& draws, SampledStep& out) = 0;
  // Copy-on-write of whole blocks (every layer's keys and values).
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;
  // One line for logs: device, KV pool, precision.
  virtual std::string describe() const = 0;
};

}  // namespace tiergate::engine
