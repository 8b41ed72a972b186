// The model step on an NVIDIA GPU (kernels/cuda): weights dequantised once to fp16 at load (or
// random ones of a given shape: `--load-format dummy`), the buffers of the largest step, then a
// paged KV pool sized from the device memory those leave, fp32 activations and residual stream,
// GEMMs through cuBLAS with fp16 inputs and fp32 accumulation, paged attention over the same
// block tables the engine's BlockManager keeps.
//
// Owns all its device memory (RAII) and one stream; every transfer is ordered on that stream.
// Engine-thread only. The constructor throws std::runtime_error naming the problem (no device,
// unsupported shape, too little memory); forward() never throws: a failed launch of a validated
// shape is a bug and aborts.
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

struct EngineConfig;

struct CudaExecutorOptions {
  std::size_t block_size = 16;
  std::size_t num_blocks = 0;               // 0: from free memory × kv_cache_memory_fraction
  double kv_cache_memory_fraction = 0.8;    // of the memory free after the weights and the buffers
                                            // of the largest step (vLLM's gpu_memory_utilization,
                                            // LMDeploy's cache_max_entry_count)
  kernels::DType kv_dtype = kernels::DType::kF16;      // F16 or BF16
  kernels::DType weight_dtype = kernels::DType::kF16;  // F16 or BF16
  bool tie_embeddings = true;  // dummy weights only: the output projection is the embedding table
  // Pure decode steps of up to 256 sequences replay CUDA graphs captured per (batch, context)
  // bucket: one launch instead of ~14 per layer. Off until the GPU tests have run it.
  bool cuda_graphs = false;
  // The largest step the engine sends: its buffers are allocated before the KV pool takes its
  // share of free memory, so serving never allocates. 0: nothing reserved (buffers grow lazily).
  std::size_t max_batch_tokens = 0;
  std::size_t max_sequences = 0;  // most sequences (and logit rows) in one step; 0: max_batch_tokens
};

// The executor's options from the engine's configuration (block size, pool, KV dtype, graphs,
// the largest step the scheduler builds).
CudaExecutorOptions cuda_executor_options(const EngineConfig& config);

// ---- Host-side memory planning (pure: no device needed; tests/engine/cuda_executor_plan_test.cpp)

// The largest step the executor reserves device buffers for before it sizes the KV pool.
struct CudaStepLimits {
  std::size_t tokens = 0;      // tokens in the step
  std::size_t sequences = 0;   // block-table rows, logit rows and draws
  std::size_t max_blocks = 0;  // block-table width (0: unknown before the pool is sized)
};
CudaStepLimits cuda_step_limits(const ModelConfig& config, const CudaExecutorOptions& options);

// Device bytes of every per-step buffer for a step within `limits`: the sizes the executor grows
// its buffers to (reserve()), so that reserving the limits covers every smaller step.
struct CudaStepBytes {
  std::size_t x = 0, h = 0, q = 0, attn = 0, k = 0, v = 0, gate = 0, up = 0;  // [tokens, width] fp32
  std::size_t h_half = 0;                                 // [tokens, widest] GEMM input, weight dtype
  std::size_t selected = 0, logits = 0;                   // [sequences, dim], [sequences, vocab] fp32
  std::size_t tokens = 0, positions = 0, token_seq = 0;   // [tokens] int32
  std::size_t logit_rows = 0;                             // [sequences] int32
  std::size_t block_tables = 0;                           // [sequences, max_blocks] int32
  std::size_t draw_logits = 0, sampling_workspace = 0;    // a row of vocab fp32 per draw
  std::size_t total() const;
};
CudaStepBytes cuda_step_bytes(const ModelConfig& config, kernels::DType weight_dtype, const CudaStepLimits& limits);

// The largest split-K workspace any decode launch within `limits` asks for on a device of
// `sm_count` SMs (kernels/cuda/paged_attention.h), over every decode token count and context.
std::size_t cuda_decode_workspace_bytes(const ModelConfig& config, const CudaExecutorOptions& options,
                                        const CudaStepLimits& limits, int sm_count);

// KV blocks the pool gets from `free_bytes` (measured after the weights and the reserved step
// buffers): as many as `fraction` of it holds, less the scratch block graph padding uses.
// block_bytes: one block's keys and values over every layer.
std::size_t cuda_kv_blocks(std::size_t free_bytes, double fraction, std::size_t block_bytes);

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
  std::size_t step_buffer_bytes() const;  // device bytes of the per-step buffers held now
  std::size_t captured_graphs() const;  // CUDA graphs captured so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tiergate::engine
