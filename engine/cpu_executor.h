// Runs one model step on the CPU for a batch that mixes prefill chunks and decode tokens of many
// sequences: embeds the tokens, runs every layer (keys and values appended to the paged cache
// before attention, so chunks attend to their cached prefix and to themselves), and returns
// logits for the requested rows only. Owns its thread pool and scratch buffers; engine-thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"
#include "engine/executor.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "kernels/cpu/thread_pool.h"

namespace tiergate::engine {

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(const Model& model, KvCache& cache, std::size_t threads);

  void forward(const StepBatch& batch, std::vector<float>& logits) override;
  // forward(), then the draws on the host, spread over the pool's threads.
  void forward_sampled(const StepBatch& batch, const SamplingStep& draws, SampledStep& out) override;
  void copy_blocks(std::span<const BlockCopy> copies) override;
  std::string describe() const override;
  std::size_t threads() const { return pool_.size(); }

 private:
  // y = x · Wᵀ for each (W, y) in outputs, all on the same input x [tokens, W.cols].
  void linear(std::initializer_list<std::pair<const Weight*, float*>> outputs, const float* x, std::size_t tokens);

  const Model& model_;
  KvCache& cache_;
  kernels::cpu::ThreadPool pool_;
  // The ISA level's re-layout of each quantised weight (kernels/cpu/matmul.h's pack_weight), by the
  // weight's data; weights the level does not pack are absent.
  std::unordered_map<const void*, std::vector<std::byte>> packed_;
  std::vector<std::byte> scratch_;
  std::vector<float> x_, h_, q_, k_, v_, attn_, o_, gate_, up_, act_;
};

}  // namespace tiergate::engine
