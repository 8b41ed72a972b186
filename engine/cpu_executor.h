// Runs one model step on the CPU for a batch that mixes prefill chunks and decode tokens of many
// sequences: embeds the tokens, runs every layer (keys and values appended to the paged cache
// before attention, so chunks attend to their cached prefix and to themselves), and returns
// logits for the requested rows only. Owns its thread pool and scratch buffers; engine-thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/block_manager.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "kernels/cpu/thread_pool.h"

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
};

class CpuExecutor {
 public:
  CpuExecutor(const Model& model, KvCache& cache, std::size_t threads);

  // logits: [batch.logit_rows.size(), vocab], in logit_rows order.
  void forward(const StepBatch& batch, std::vector<float>& logits);
  void copy_blocks(std::span<const BlockCopy> copies);
  std::size_t threads() const { return pool_.size(); }

 private:
  void linear(const Weight& w, const float* x, float* y, std::size_t tokens);

  const Model& model_;
  KvCache& cache_;
  kernels::cpu::ThreadPool pool_;
  std::vector<std::byte> scratch_;
  std::vector<float> x_, h_, q_, k_, v_, attn_, o_, gate_, up_, act_;
};

}  // namespace tiergate::engine
