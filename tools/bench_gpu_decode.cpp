// Decode throughput of the GPU executor on a Llama shape with random weights (vLLM's
// --load-format dummy): for each batch size, B sequences of --prompt-tokens random tokens are
// prefilled, then --decode-steps greedy steps (argmax on the GPU) are timed. Prints tokens/s,
// the step time, and at each batch the time one read of the weights takes at the GPU's HBM peak
// (the floor of a decode step). tools/bench_gpu_vs_hf.py runs this next to HF transformers.
//   bench_gpu_decode [--shape llama-1b|smollm2-135m] [--batch 1,16,64,256] [--prompt-tokens 128]
//                    [--decode-steps 128] [--peak-gbps G] [--cuda-graphs] [--json]
// Without a GPU it says why and exits 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/cuda_executor.h"
#include "kernels/cuda/device.h"

namespace {

using tiergate::engine::BlockManager;
using tiergate::engine::CudaExecutor;
using tiergate::engine::CudaExecutorOptions;
using tiergate::engine::ModelConfig;
using tiergate::engine::StepBatch;
using tiergate::engine::TokenId;
using Clock = std::chrono::steady_clock;

ModelConfig shape_named(const std::string& name) {
  ModelConfig c;
  c.architecture = "llama";
  c.name = name;
  if (name == "llama-1b") {  // Llama 3.2 1B
    c.vocab_size = 128256, c.dim = 2048, c.layers = 16, c.heads = 32, c.kv_heads = 8, c.head_dim = 64;
    c.ffn_dim = 8192, c.context_length = 8192, c.rope_dims = 64, c.rope_base = 500000.0f;
  } else if (name == "smollm2-135m") {
    c.vocab_size = 49152, c.dim = 576, c.layers = 30, c.heads = 9, c.kv_heads = 3, c.head_dim = 64;
    c.ffn_dim = 1536, c.context_length = 8192, c.rope_dims = 64, c.rope_base = 100000.0f;
  } else {
    std::fprintf(stderr, "bench_gpu_decode: unknown --shape %s (llama-1b, smollm2-135m)\n", name.c_str());
    std::exit(2);
  }
  return c;
}

double peak_gbps_of(const std::string& device) {
  if (device.find("H200") != std::string::npos) return 4800;
  if (device.find("H100") != std::string::npos) return 3350;
  if (device.find("A100") != std::string::npos) return 2039;
  return 0;
}

struct Result {
  std::size_t batch;
  double prefill_s, decode_tps, step_ms;
};

Result run(CudaExecutor& gpu, const ModelConfig& c, std::size_t batch, std::size_t prompt, std::size_t steps) {
  BlockManager bm(gpu.num_blocks(), 16);
  std::vector<std::vector<TokenId>> seqs(batch);
  for (std::size_t s = 0; s < batch; ++s) {
    for (std::size_t i = 0; i < prompt; ++i) seqs[s].push_back(static_cast<TokenId>((s * 1000003 + i * 7919) % c.vocab_size));
    if (!bm.allocate(s + 1, seqs[s])) {
      std::fprintf(stderr, "bench_gpu_decode: KV pool too small for batch %zu\n", batch);
      std::exit(1);
    }
  }
  auto step = [&](std::size_t first_seq, std::size_t last_seq, std::size_t from, std::vector<TokenId>& next) {
    StepBatch b;
    for (std::size_t s = first_seq; s < last_seq; ++s) b.max_blocks = std::max(b.max_blocks, bm.block_table(s + 1).size());
    for (std::size_t s = first_seq; s < last_seq; ++s) {
      const std::int32_t row = b.add_sequence(bm.block_table(s + 1));
      for (std::size_t p = from; p < seqs[s].size(); ++p)
        b.add_token(seqs[s][p], static_cast<std::int32_t>(p), row, p + 1 == seqs[s].size());
    }
    gpu.forward_greedy(b, next);
  };
  std::vector<TokenId> next;
  // Prefill: whole prompts, as many sequences per step as fit 4096 tokens.
  const auto t0 = Clock::now();
  const std::size_t per_step = std::max<std::size_t>(1, 4096 / prompt);
  std::vector<TokenId> first(batch);
  for (std::size_t s = 0; s < batch; s += per_step) {
    const std::size_t e = std::min(batch, s + per_step);
    step(s, e, 0, next);
    std::copy(next.begin(), next.end(), first.begin() + static_cast<long>(s));
  }
  const double prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto grow = [&](const std::vector<TokenId>& tokens) {
    for (std::size_t s = 0; s < batch; ++s) {
      bm.mark_computed(s + 1, seqs[s].size());
      seqs[s].push_back(tokens[s]);
      if (!bm.append(s + 1, std::vector<TokenId>{tokens[s]})) {
        std::fprintf(stderr, "bench_gpu_decode: KV pool too small\n");
        std::exit(1);
      }
    }
  };
  grow(first);
  // Two untimed decode steps (cuBLAS heuristics, buffers at their final size), then the timed ones.
  for (int w = 0; w < 2; ++w) {
    step(0, batch, seqs[0].size() - 1, next);
    grow(next);
  }
  const auto t1 = Clock::now();
  for (std::size_t i = 0; i < steps; ++i) {
    step(0, batch, seqs[0].size() - 1, next);
    grow(next);
  }
  const double decode_s = std::chrono::duration<double>(Clock::now() - t1).count();
  return {batch, prefill_s, static_cast<double>(batch * steps) / decode_s, 1e3 * decode_s / static_cast<double>(steps)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "llama-1b", batches = "1,16,64,256";
  std::size_t prompt = 128, steps = 128;
  double peak = 0;
  bool json = false, cuda_graphs = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gpu_decode: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--shape") shape = value();
    else if (a == "--batch") batches = value();
    else if (a == "--prompt-tokens") prompt = std::strtoul(value().c_str(), nullptr, 10);
    else if (a == "--decode-steps") steps = std::strtoul(value().c_str(), nullptr, 10);
    else if (a == "--peak-gbps") peak = std::strtod(value().c_str(), nullptr);
    else if (a == "--json") json = true;
    else if (a == "--cuda-graphs") cuda_graphs = true;
    else {
      std::fprintf(stderr, "bench_gpu_decode: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::string why;
  if (!tiergate::kernels::cuda::device_available(&why)) {
    std::printf("bench_gpu_decode: skipped: %s\n", why.c_str());
    return 0;
  }
  if (prompt == 0 || steps == 0) {
    std::fprintf(stderr, "bench_gpu_decode: --prompt-tokens and --decode-steps must be positive\n");
    return 2;
  }
  const ModelConfig c = shape_named(shape);
  const auto info = tiergate::kernels::cuda::device_info();
  if (peak == 0) peak = peak_gbps_of(info.name);
  CudaExecutorOptions options;
  options.kv_cache_memory_fraction = 0.5;
  options.cuda_graphs = cuda_graphs;
  options.max_batch_tokens = 4096;  // prefill steps take whole prompts up to 4096 tokens
  {
    std::stringstream list(batches);  // decode steps hold up to the largest batch
    for (std::string item; std::getline(list, item, ',');)
      options.max_sequences = std::max<std::size_t>(options.max_sequences, std::strtoul(item.c_str(), nullptr, 10));
  }
  CudaExecutor gpu(c, options, 1234);
  const double weight_read_ms = peak > 0 ? static_cast<double>(gpu.weight_bytes()) / (peak * 1e9) * 1e3 : 0;
  if (!json) {
    std::printf("%s on %s (HBM peak %.0f GB/s), CUDA graphs %s: %s\n", shape.c_str(), info.name.c_str(), peak,
                cuda_graphs ? "on" : "off", gpu.describe().c_str());
    std::printf("weights %.1f MiB: one read at peak takes %.3f ms; %zu prompt tokens, %zu timed decode steps\n",
                static_cast<double>(gpu.weight_bytes()) / (1 << 20), weight_read_ms, prompt, steps);
    std::printf("batch  prefill_s  decode_tok/s  step_ms  step/weight_read\n");
  }
  std::stringstream list(batches);
  for (std::string item; std::getline(list, item, ',');) {
    const std::size_t b = std::strtoul(item.c_str(), nullptr, 10);
    if (b == 0) continue;
    const Result r = run(gpu, c, b, prompt, steps);
    if (json) {
      std::printf("{\"shape\": \"%s\", \"device\": \"%s\", \"batch\": %zu, \"decode_tps\": %.1f, \"step_ms\": %.4f, "
                  "\"weight_read_ms\": %.4f, \"cuda_graphs\": %s}\n",
                  shape.c_str(), info.name.c_str(), b, r.decode_tps, r.step_ms, weight_read_ms,
                  cuda_graphs ? "true" : "false");
    } else {
      std::printf("%5zu  %9.3f  %12.1f  %7.3f  %16.2f\n", b, r.prefill_s, r.decode_tps, r.step_ms,
                  weight_read_ms > 0 ? r.step_ms / weight_read_ms : 0.0);
    }
    std::fflush(stdout);
  }
  return 0;
}
