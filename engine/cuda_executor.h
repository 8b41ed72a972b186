// The model step on an NVIDIA GPU (kernels/cuda): weights dequantised once to fp16 at load (or
// random ones of a given shape: `--load-format dummy`), a paged KV pool sized from free device
// memory, fp32 activations and residual stream, GEMMs through cuBLAS with fp16 inputs and fp32
// accumulation, paged attention over the same block tables the engine's BlockManager keeps.
//
// Owns all its device memory (RAII) and one stream. Engine-thread only. The constructor throws
// std::runtime_error naming the problem (no device, unsupported shape, too little memory);
// forward() never throws: a failed launch of a validated shape is a bug and aborts.
// Built only where nvcc exists (TIERGATE_HAVE_CUDA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/model.h"
#include "kernels/tensor_type.h"

namespace tiergate::engine {

struct CudaExecutorOptions {
  std::size_t block_size = 16;
  std::size_t num_blocks = 0;               // 0: from free memory × kv_cache_memory_fraction
  double kv_cache_memory_fraction = 0.8;    // of the memory free after the weights (vLLM's
                                            // gpu_memory_utilization, LMDeploy's cache_max_entry_count)
  kernels::DType kv_dtype = kernels::DType::kF16;      // F16 or BF16
  kernels::DType weight_dtype = kernels::DType::kF16;  // F16 or BF16
  bool tie_embeddings = true;  // dummy weights only: the output projection is the embedding table
  // Pure decode steps of up to 256 sequences replay CUDA graphs captured per (batch, context)
  // bucket: one launch instead of ~14 per layer. Off until the GPU tests have run it.
  bool cuda_graphs = false;
  std::size_t max_batch_tokens = 0;  // largest step the engine sends (sizes buffers up front)
};

class CudaExecutor final : public Executor {
 public:
  // Weights of a loaded GGUF model (any type kernels/cuda/dequant.h reads), dequantised on the GPU.
  CudaExecutor(const Model& model, CudaExecutorOptions options);
  // A model of `shape` with seeded random weights (uniform, scaled by 1/sqrt(fan-in)): for
  // benchmarks of shapes we have no file for.
  CudaExecutor(const ModelConfig& shape, CudaExecutorOptions options, std::uint64_t seed);
  ~CudaExecutor() override;

  void forward(const StepBatch& batch, std::vector<float>& logits) override;
  // Samples on the GPU (kernels/cuda/sampling.h): only tokens and logprobs come back, and the
  // logits only when a draw wants top_logprobs.
  void forward_sampled(const StepBatch& batch, const SamplingStep& draws, SampledStep& out) override;
  void copy_blocks(std::span<const BlockCopy> copies) override;
  std::string describe() const override;

  // Greedy next token of every logit row, chosen on the GPU (no logits cross to the host).
  // next: [batch.logit_rows.size()].
  void forward_greedy(const StepBatch& batch, std::vector<TokenId>& next);

  std::size_t num_blocks() const;
  std::size_t weight_bytes() const;  // device bytes of the weights, read once per decode step
  std::size_t kv_cache_bytes() const;
  std::size_t captured_graphs() const;  // CUDA graphs captured so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tiergate::engine
