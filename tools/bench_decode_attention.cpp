// Decode paged attention's HBM bandwidth: batch 64 x context {1k, 2k, 4k, 8k}, MHA 32/32 and GQA
// 32/8, head_dim 128, F16 and BF16 caches of 16-token blocks scattered through the pool. Times the
// launcher (decode kernel plus split merge) with CUDA events around 20 launches back to back, 5
// warm-up samples then the median of --iters (default 30) samples, and prints the bytes it must
// move (K and V of every context, q and out), the achieved GB/s and the fraction of HBM peak:
// 3350 GB/s on an H100 SXM, 4800 on an H200, from the device name, or --peak-gbps. Without a GPU
// it says why and exits 0.
//
//   bench_decode_attention [--peak-gbps N] [--iters N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/paged_attention.h"

namespace {

using namespace tiergate::kernels;
using tiergate::kernels::cuda::DeviceBuffer;

constexpr std::size_t kBatch = 64;
constexpr std::size_t kHeadDim = 128;
constexpr std::size_t kBlock = 16;
constexpr std::size_t kMaxContext = 8192;
constexpr std::size_t kContexts[] = {1024, 2048, 4096, 8192};
constexpr int kWarmup = 5;
constexpr int kLaunchesPerSample = 20;

struct Options {
  double peak_gbps = 0;  // 0 = from the device name
  int iters = 30;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--peak-gbps" && i + 1 < argc) {
      o.peak_gbps = std::atof(argv[++i]);
    } else if (a == "--iters" && i + 1 < argc) {
      o.iters = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--peak-gbps N] [--iters N]\n", argv[0]);
      return false;
    }
  }
  return true;
}

double peak_for(const std::string& name) {
  if (name.find("H200") != std::string::npos) return 4800;
  if (name.find("H100") != std::string::npos) return 3350;
  return 0;
}

// Fills `buf` with copies of a 16 MiB pattern of random cache values in [-1, 1).
void fill_random(DeviceBuffer& buf, DType dtype, std::uint32_t seed, void* stream) {
  std::vector<std::uint16_t> pattern(std::size_t{8} << 20);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (std::uint16_t& x : pattern) x = dtype == DType::kBF16 ? float_to_bf16(dist(rng)) : float_to_half(dist(rng));
  const std::size_t chunk = pattern.size() * sizeof(std::uint16_t);
  for (std::size_t off = 0; off < buf.bytes(); off += chunk) buf.upload(pattern.data(), std::min(chunk, buf.bytes() - off), stream, off);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_decode_attention: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) return 2;
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("bench_decode_attention: nothing to measure without a GPU (%s)\n", why.c_str());
    return 0;
  }
  const cuda::DeviceInfo info = cuda::device_info();
  const double peak = opt.peak_gbps > 0 ? opt.peak_gbps : peak_for(info.name);
  std::printf("device: %s, %d SMs; HBM peak %s\n", info.name.c_str(), info.sm_count,
              peak > 0 ? (std::to_string(static_cast<int>(peak)) + " GB/s").c_str() : "unknown (pass --peak-gbps)");
  std::printf("batch %zu, head_dim %zu, block %zu, median of %d samples of %d back-to-back launches after %d warm-up\n\n",
              kBatch, kHeadDim, kBlock, opt.iters, kLaunchesPerSample, kWarmup);
  std::printf("%-5s %-6s %7s %6s %12s %12s %10s %8s\n", "kv", "heads", "context", "splits", "MB moved", "time us",
              "GB/s", "of peak");

  const std::size_t blocks_per_seq = kMaxContext / kBlock;
  const std::size_t num_blocks = kBatch * blocks_per_seq;
  std::vector<std::int32_t> tables(num_blocks);
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(7));
  std::vector<std::int32_t> token_seq(kBatch);
  std::iota(token_seq.begin(), token_seq.end(), 0);
  cuda::Stream stream;
  const auto st = static_cast<cudaStream_t>(stream.handle());
  DeviceBuffer d_tables(tables.size() * sizeof(std::int32_t)), d_seq(kBatch * sizeof(std::int32_t)),
      d_pos(kBatch * sizeof(std::int32_t));
  d_tables.upload(tables.data(), d_tables.bytes(), stream.handle());
  d_seq.upload(token_seq.data(), d_seq.bytes(), stream.handle());
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");

  for (const DType dtype : {DType::kF16, DType::kBF16}) {
    for (const std::size_t kv_heads : {std::size_t{32}, std::size_t{8}}) {
      const std::size_t heads = 32;
      const std::size_t pool_bytes = num_blocks * kBlock * kv_heads * kHeadDim * 2;
      DeviceBuffer k(pool_bytes), v(pool_bytes);
      fill_random(k, dtype, 1, stream.handle());
      fill_random(v, dtype, 2, stream.handle());
      const std::size_t row = kBatch * heads * kHeadDim;
      std::vector<float> q_host(row);
      std::mt19937 rng(3);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      for (float& x : q_host) x = dist(rng);
      DeviceBuffer q(row * sizeof(float)), out(row * sizeof(float));
      q.upload(q_host.data(), q.bytes(), stream.handle());

      for (const std::size_t context : kContexts) {
        const std::vector<std::int32_t> pos(kBatch, static_cast<std::int32_t>(context - 1));
        d_pos.upload(pos.data(), d_pos.bytes(), stream.handle());
        PagedAttentionParams p;
        p.kv = {k.get(), v.get(), dtype, num_blocks, kBlock, kv_heads, kHeadDim};
        p.layout = {d_tables.as<std::int32_t>(), blocks_per_seq, d_seq.as<std::int32_t>(), d_pos.as<std::int32_t>(), kBatch};
        p.q = q.as<float>();
        p.out = out.as<float>();
        p.num_heads = heads;
        p.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
        const cuda::AttentionBatchShape shape{context, 1, 0};
        DeviceBuffer ws(cuda::paged_attention_workspace_bytes(p, shape));
        const cuda::SplitPlan plan = cuda::plan_decode_splits(p, shape, info.sm_count);

        std::vector<float> times;
        for (int i = 0; i < kWarmup + opt.iters; ++i) {
          // Launches back to back between the events: the stream stays busy, so the host's
          // launch cost between kernels (which a decode step's graph also hides) is not timed.
          check(cudaEventRecord(start, st), "cudaEventRecord");
          for (int l = 0; l < kLaunchesPerSample; ++l) {
            const cuda::Status s = cuda::paged_attention(p, shape, {ws.get(), ws.bytes()}, stream.handle());
            if (!s.ok()) {
              std::fprintf(stderr, "bench_decode_attention: %s\n", s.error.c_str());
              return 1;
            }
          }
          check(cudaEventRecord(stop, st), "cudaEventRecord");
          check(cudaEventSynchronize(stop), "cudaEventSynchronize");
          float ms = 0;
          check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
          if (i >= kWarmup) times.push_back(ms / kLaunchesPerSample);
        }
        std::sort(times.begin(), times.end());
        const double median_us = 1000.0 * times[times.size() / 2];
        const double bytes = static_cast<double>(kBatch * context * kv_heads * kHeadDim * 2 * 2) +  // K and V
                             static_cast<double>(2 * row * sizeof(float));                          // q and out
        const double gbps = bytes / (median_us * 1e3);
        std::printf("%-5s %2zu/%-3zu %7zu %6zu %12.1f %12.1f %10.1f %7.1f%%\n", dtype == DType::kBF16 ? "BF16" : "F16",
                    heads, kv_heads, context, plan.num_splits, bytes / 1e6, median_us, gbps,
                    peak > 0 ? 100.0 * gbps / peak : 0.0);
      }
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 0;
}
