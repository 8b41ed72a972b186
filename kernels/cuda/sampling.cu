#include "kernels/cuda/sampling.h"

#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/cuda/launch_status.cuh"

namespace tiergate::kernels::cuda {
namespace {

namespace cg = cooperative_groups;
using u64 = unsigned long long;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr double kFixedOne = 8796093022208.0;  // 2^43: exp(0) in fixed point; vocab·2^43 < 2^64

struct Shared {
  u64 hist[256];            // mass per digit of the current radix pass
  unsigned count[256];      // candidates per digit
  u64 u64_scratch[kWarps];  // block reductions
  double f64_scratch[kWarps];
  float f32_scratch[kWarps];
  int i32_scratch[kWarps];
  u64 sel_above;            // radix pass result, broadcast by thread 0
  u64 sel_found;
  unsigned sel_count;
  int sel_digit;
};

// Descending key order == the CPU's sort order: scaled logit descending, then token id ascending.
__device__ __forceinline__ u64 order_key(float s, int token) {
  if (s == 0.0f) s = 0.0f;  // -0 and +0 compare equal on the CPU: give them one key
  std::uint32_t b = __float_as_uint(s);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<u64>(b) << 32) | static_cast<u64>(0xFFFFFFFFu - static_cast<std::uint32_t>(token));
}
__device__ __forceinline__ int key_token(u64 key) {
  return static_cast<int>(0xFFFFFFFFu - static_cast<std::uint32_t>(key & 0xFFFFFFFFull));
}

// exp(s - max) in the CPU's arithmetic (float difference, double exp), and its fixed-point mass.
__device__ __forceinline__ double rel_exp(float s, float max) { return exp(static_cast<double>(__fsub_rn(s, max))); }
__device__ __forceinline__ u64 fixed_mass(double e) { return __double2ull_rn(e * kFixedOne); }

// Block reductions: every thread of the (full) block calls them and gets the result, combined in
// the same order everywhere. The leading barrier keeps the scratch of a previous call intact until
// every thread has read it.
__device__ u64 block_sum(u64 v, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh.u64_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  u64 t = 0;
  for (int w = 0; w < kWarps; ++w) t += sh.u64_scratch[w];
  return t;
}

__device__ double block_sum(double v, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh.f64_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0;
  for (int w = 0; w < kWarps; ++w) t += sh.f64_scratch[w];
  return t;
}

struct ArgMax {
  float value;
  int token;
};
// a ranks before b: larger value, then lower token (NaN never wins).
__device__ __forceinline__ bool ranks_before(float av, int at, float bv, int bt) {
  return av > bv || (av == bv && at < bt);
}

__device__ ArgMax block_argmax(const float* row, int vocab, Shared& sh) {
  float best = -INFINITY;
  int token = INT_MAX;
  for (int v = static_cast<int>(threadIdx.x); v < vocab; v += kThreads) {
    const float s = row[v];
    if (ranks_before(s, v, best, token)) best = s, token = v;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int ot = __shfl_xor_sync(0xffffffffu, token, o);
    if (ranks_before(ov, ot, best, token)) best = ov, token = ot;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    sh.f32_scratch[threadIdx.x >> 5] = best;
    sh.i32_scratch[threadIdx.x >> 5] = token;
  }
  __syncthreads();
  ArgMax r{sh.f32_scratch[0], sh.i32_scratch[0]};
  for (int w = 1; w < kWarps; ++w)
    if (ranks_before(sh.f32_scratch[w], sh.i32_scratch[w], r.value, r.token)) r = {sh.f32_scratch[w], sh.i32_scratch[w]};
  if (r.token == INT_MAX) r.token = 0;  // a row of NaN: unspecified, but a valid id
  return r;
}

__device__ float block_max(const float* row, int vocab, Shared& sh) {
  float m = -INFINITY;
  for (int v = static_cast<int>(threadIdx.x); v < vocab; v += kThreads) m = fmaxf(m, row[v]);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh.f32_scratch[threadIdx.x >> 5] = m;
  __syncthreads();
  float r = sh.f32_scratch[0];
  for (int w = 1; w < kWarps; ++w) r = fmaxf(r, sh.f32_scratch[w]);
  return r;
}

// In descending key order, the first element at which the running sum of weight(s, key) reaches
// `target` (>= 1); elements of weight 0 never qualify. When the total weight falls short of the
// target, the last element of positive weight (the CPU's fallback to its last candidate). Returns
// that element's key, or 0 when no element has positive weight. Radix select, 8 bits a pass from
// the top: each pass histograms (mass, count) per digit among elements matching the prefix so
// far, thread 0 walks the digits from the top to where the running mass reaches the target, and
// a digit holding a single element ends the search with one pass to fetch its key.
template <class Weight>
__device__ u64 select_by_mass(const float* row, int vocab, u64 target, Weight weight, Shared& sh) {
  u64 prefix = 0, mask = 0;
  const int tid = static_cast<int>(threadIdx.x);
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kThreads) {
      sh.hist[i] = 0;
      sh.count[i] = 0;
    }
    __syncthreads();
    for (int v = tid; v < vocab; v += kThreads) {
      const float s = row[v];
      const u64 key = order_key(s, v);
      const u64 w = (key & mask) == prefix ? weight(s, key) : 0;
      if (w != 0) {
        // Lanes of a warp that share a digit add their mass once (logits of one magnitude share
        // the top digits: per-lane atomics would serialise on a handful of bins).
        const int digit = static_cast<int>((key >> shift) & 0xFF);
        const cg::coalesced_group active = cg::coalesced_threads();
        const cg::coalesced_group peers = cg::labeled_partition(active, digit);
        const u64 mass = cg::reduce(peers, w, cg::plus<u64>());
        if (peers.thread_rank() == 0) {
          atomicAdd(&sh.hist[digit], mass);
          atomicAdd(&sh.count[digit], static_cast<unsigned>(peers.num_threads()));
        }
      }
    }
    __syncthreads();
    if (tid == 0) {
      u64 above = shift == 56 ? 0 : sh.sel_above;
      int chosen = -1, last = -1;
      for (int d = 255; d >= 0; --d) {
        if (sh.count[d] == 0) continue;
        last = d;
        if (above + sh.hist[d] >= target) {
          chosen = d;
          break;
        }
        above += sh.hist[d];
      }
      if (chosen < 0 && last >= 0) {  // short of the target: the lowest element
        chosen = last;
        above -= sh.hist[last];
      }
      sh.sel_digit = chosen;
      sh.sel_above = above;
      sh.sel_count = chosen >= 0 ? sh.count[chosen] : 0;
    }
    __syncthreads();
    const int digit = sh.sel_digit;
    const unsigned count = sh.sel_count;
    if (digit < 0) return 0;  // uniform: every thread read the same shared value
    prefix |= static_cast<u64>(digit) << shift;
    mask |= u64{0xFF} << shift;
    if (count == 1 && shift > 0) {
      for (int v = tid; v < vocab; v += kThreads) {
        const float s = row[v];
        const u64 key = order_key(s, v);
        if ((key & mask) == prefix && weight(s, key) != 0) sh.sel_found = key;  // exactly one writer
      }
      __syncthreads();
      return sh.sel_found;
    }
  }
  return prefix;  // all 64 bits fixed: the key itself
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SamplingBatch b, float* workspace) {
  __shared__ Shared sh;
  const int tid = static_cast<int>(threadIdx.x);
  const int r = static_cast<int>(blockIdx.x);
  const int vocab = b.vocab;
  const SamplingRowParams p = b.params[r];
  const float* raw = b.logits + static_cast<std::size_t>(r) * static_cast<std::size_t>(vocab);
  float* row = workspace + static_cast<std::size_t>(r) * static_cast<std::size_t>(vocab);
  const bool greedy = p.temperature == 0.0f;

  // The mask, then (CPU order) bias, penalties and temperature. Without bias or history the scaled
  // logits are written in one pass; otherwise the sparse passes work on unscaled logits and a last
  // pass scales them (the barriers order the writes of a token). Banned tokens stay -inf.
  const std::uint32_t* mask =
      b.mask_index && b.mask_index[r] >= 0
          ? b.token_masks + static_cast<std::size_t>(b.mask_index[r]) * static_cast<std::size_t>(mask_words(vocab))
          : nullptr;
  const int bias_begin = b.bias_offsets ? b.bias_offsets[r] : 0, bias_end = b.bias_offsets ? b.bias_offsets[r + 1] : 0;
  const int hist_begin = b.history_offsets ? b.history_offsets[r] : 0;
  const int hist_end = b.history_offsets ? b.history_offsets[r + 1] : 0;
  const bool sparse = bias_end > bias_begin || hist_end > hist_begin;
  const bool scale_now = !greedy && !sparse;
  for (int v = tid; v < vocab; v += kThreads) {
    const float l = mask && !mask_allows(mask, v) ? -INFINITY : raw[v];
    row[v] = scale_now ? __fdiv_rn(l, p.temperature) : l;
  }
  if (sparse) {
    __syncthreads();
    for (int e = bias_begin + tid; e < bias_end; e += kThreads) {
      const int t = b.bias_tokens[e];
      if (t < 0 || t >= vocab || row[t] == -INFINITY) continue;
      row[t] = __fadd_rn(row[t], b.bias_values[e]);
    }
    __syncthreads();
    for (int e = hist_begin + tid; e < hist_end; e += kThreads) {
      const int t = b.history_tokens[e];
      if (t < 0 || t >= vocab || row[t] == -INFINITY) continue;
      row[t] = apply_penalties(row[t], b.history_counts[e], p);
    }
    if (!greedy) {
      __syncthreads();
      for (int v = tid; v < vocab; v += kThreads) row[v] = __fdiv_rn(row[v], p.temperature);
    }
  }
  __syncthreads();

  const ArgMax best = block_argmax(row, vocab, sh);
  int token = best.token;
  if (!greedy) {
    const float max = best.value;
    const auto mass_of = [max](float s) { return fixed_mass(rel_exp(s, max)); };
    u64 live = 0, total = 0;
    for (int v = tid; v < vocab; v += kThreads) {
      const u64 w = mass_of(row[v]);
      live += w != 0;
      total += w;
    }
    live = block_sum(live, sh);
    total = block_sum(total, sh);

    // top-k: the key of the k-th candidate (candidates of zero mass rank last and never matter).
    u64 k_key = 0, total_k = total;
    if (p.top_k > 0 && static_cast<u64>(p.top_k) < live) {
      k_key = select_by_mass(row, vocab, static_cast<u64>(p.top_k),
                             [&](float s, u64) -> u64 { return mass_of(s) != 0 ? 1 : 0; }, sh);
      u64 m = 0;
      for (int v = tid; v < vocab; v += kThreads) {
        const float s = row[v];
        if (order_key(s, v) >= k_key) m += mass_of(s);
      }
      total_k = block_sum(m, sh);
    }
    // top-p: the first candidate at which the top-k-normalised mass reaches top_p.
    u64 p_key = 0;
    if (p.top_p < 1.0f) {
      const double want = ceil(static_cast<double>(p.top_p) * static_cast<double>(total_k));
      const u64 target = want < 1.0 ? 1 : static_cast<u64>(want);
      if (target < total_k) {
        p_key = select_by_mass(row, vocab, target, [&](float s, u64 key) -> u64 { return key >= k_key ? mass_of(s) : 0; }, sh);
      }
    }
    // min-p: p_i >= min_p · p_max, i.e. exp(s_i - max) >= min_p.
    const u64 cut = k_key > p_key ? k_key : p_key;
    const bool use_min_p = p.min_p > 0.0f;
    const double min_p = p.min_p;
    const auto kept_mass = [&](float s, u64 key) -> u64 {
      if (key < cut) return 0;
      const double e = rel_exp(s, max);
      if (use_min_p && e < min_p) return 0;
      return fixed_mass(e);
    };
    u64 kept_total = total;
    if (cut != 0 || use_min_p) {
      u64 m = 0;
      for (int v = tid; v < vocab; v += kThreads) m += kept_mass(row[v], order_key(row[v], v));
      kept_total = block_sum(m, sh);
    }
    if (kept_total > 0) {
      // The draw: the first kept candidate whose cumulative mass exceeds u · kept_total.
      const double scaled = floor(sampling_uniform(p.seed, p.step) * static_cast<double>(kept_total));
      u64 draw = static_cast<u64>(scaled);
      if (draw >= kept_total) draw = kept_total - 1;
      const u64 key = select_by_mass(row, vocab, draw + 1, kept_mass, sh);
      if (key != 0) token = key_token(key);
    }
  }

  if (b.logprobs) {  // log-softmax of the raw logits, as the CPU computes it
    const float max = block_max(raw, vocab, sh);
    double sum = 0;
    for (int v = tid; v < vocab; v += kThreads) sum += exp(static_cast<double>(__fsub_rn(raw[v], max)));
    sum = block_sum(sum, sh);
    if (tid == 0) b.logprobs[r] = __fsub_rn(raw[token], __fadd_rn(max, static_cast<float>(log(sum))));
  }
  if (tid == 0) b.tokens[r] = token;
}

}  // namespace

std::size_t sampling_workspace_bytes(std::int32_t rows, std::int32_t vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(vocab) * sizeof(float);
}

std::string sampling_error(const SamplingBatch& b) {
  if (b.rows < 0) return "sample: rows must be >= 0";
  if (b.vocab <= 0 || b.vocab > kMaxSamplingVocab)
    return "sample: vocab " + std::to_string(b.vocab) + " outside 1.." + std::to_string(kMaxSamplingVocab);
  if (b.rows > 0 && (!b.logits || !b.params || !b.tokens)) return "sample: logits, params and tokens are required";
  if (b.mask_index && !b.token_masks) return "sample: mask_index needs token_masks";
  if (b.bias_offsets && (!b.bias_tokens || !b.bias_values)) return "sample: bias_offsets needs bias_tokens and bias_values";
  return {};
}

Status sample(const SamplingBatch& batch, void* workspace, std::size_t workspace_bytes, void* stream) {
  if (auto e = sampling_error(batch); !e.empty()) return Status::failure(e);
  if (batch.rows == 0) return Status::success();
  if (workspace_bytes < sampling_workspace_bytes(batch.rows, batch.vocab) || !workspace ||
      reinterpret_cast<std::uintptr_t>(workspace) % alignof(float) != 0)
    return Status::failure("sample: workspace smaller than sampling_workspace_bytes or misaligned");
  sample_kernel<<<static_cast<unsigned>(batch.rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      batch, static_cast<float*>(workspace));
  return detail::launch_status("sample");
}

}  // namespace tiergate::kernels::cuda
