// Paged attention and KV append on the GPU. See paged_attention.h for the contract.
//
// Decode kernel: CTA = (token, KV head, group of HG query heads of that KV head, context split),
// 4 warps. A warp covers 32 / (D / 8) keys at a time: each key row is read by D / 8 lanes, each lane
// loading one 16-byte vector (8 elements) of K and of V. The lane keeps its 8 query elements of
// every one of the HG heads in registers, so one K/V load feeds HG dot products (GQA sharing). Each
// lane keeps its own online-softmax state per head (running max, sum and 8 accumulators); states
// are merged across the lanes of a warp by shuffles and across warps through shared memory at the
// end. Keys are processed in chunks of 256 whose block ids are staged in shared memory first, so
// the K/V address of a key costs no dependent global load. With more than one split, each CTA
// writes its unnormalised partial (max, sum, accumulator) and a merge kernel combines the splits
// with log-sum-exp rescaling. Scores live in the log2 domain (q pre-scaled by scale * log2(e)).
//
// Prefill kernel: CTA = (tile of 32 / H consecutive tokens, KV head, H query heads), 32 rows of
// (token, head), 4 lanes per row. K and V tiles of 32 keys are staged in shared memory (16-byte
// vectors, rows padded by 16 bytes so the lanes of a quarter-warp hit distinct banks) and shared by
// every row whose token belongs to the tile's current sequence; tokens of other sequences in the
// same tile are served by further passes. Plain SIMT arithmetic: correct first, fast enough for
// chunked prefill, a tensor-core version is future work.
#include "kernels/cuda/paged_attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

namespace tiergate::kernels::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------
// Device helpers

// Eight cache elements (one 16-byte vector) widened exactly to float.
template <class T>
__device__ __forceinline__ void widen8(const uint4& r, float (&f)[8]);

template <>
__device__ __forceinline__ void widen8<__half>(const uint4& r, float (&f)[8]) {
  const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h;
    static_assert(sizeof(h) == sizeof(unsigned));
    memcpy(&h, &w[i], sizeof(h));
    const float2 x = __half22float2(h);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

template <>
__device__ __forceinline__ void widen8<__nv_bfloat16>(const uint4& r, float (&f)[8]) {
  const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // a bf16 is the top half of a float
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 load16(const void* p) { return __ldg(static_cast<const uint4*>(p)); }

// Round to nearest even, bit-identical to kernels/cpu/fp16.h (which sets the quiet bit of a NaN and
// keeps its sign; the hardware conversion would return the canonical NaN).
__device__ __forceinline__ std::uint16_t to_cache_bits(float f, __half*) {
  const unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>(((x >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(f));
}
__device__ __forceinline__ std::uint16_t to_cache_bits(float f, __nv_bfloat16*) {
  unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

// ---------------------------------------------------------------------------------------------
// KV append

struct AppendArgs {
  void* k;  // [num_blocks, block_size, num_kv_heads, head_dim]
  void* v;
  const float* k_new;  // [num_tokens, num_kv_heads, head_dim]
  const float* v_new;
  const std::int32_t* block_tables;  // [num_seqs, max_blocks]
  const std::int32_t* token_seq;     // [num_tokens]
  const std::int32_t* token_pos;     // [num_tokens]
  std::size_t num_tokens;
  std::size_t row;  // num_kv_heads * head_dim elements per slot
  int max_blocks;
  int block_shift;  // log2(block_size)
  int num_blocks;
};

template <class T>
__global__ void kv_append_kernel(const AppendArgs a) {
  const std::size_t n = a.num_tokens * a.row;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const int mask = (1 << a.block_shift) - 1;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::size_t t = i / a.row, r = i % a.row;
    const int seq = a.token_seq[t], pos = a.token_pos[t];
    if (seq < 0 || pos < 0 || (pos >> a.block_shift) >= a.max_blocks) __trap();
    const int block = a.block_tables[static_cast<std::size_t>(seq) * a.max_blocks + (pos >> a.block_shift)];
    if (block < 0 || block >= a.num_blocks) __trap();
    const std::size_t dst = ((static_cast<std::size_t>(block) << a.block_shift) + (pos & mask)) * a.row + r;
    static_cast<std::uint16_t*>(a.k)[dst] = to_cache_bits(a.k_new[i], static_cast<T*>(nullptr));
    static_cast<std::uint16_t*>(a.v)[dst] = to_cache_bits(a.v_new[i], static_cast<T*>(nullptr));
  }
}

// ---------------------------------------------------------------------------------------------
// Decode (split-K) kernel

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kChunk = static_cast<int>(kSplitAlign);  // keys whose block ids are staged at once
constexpr int kMinBlockSize = 16;

struct DecodeArgs {
  const void* k;  // [num_blocks, block_size, num_kv_heads, D]
  const void* v;
  const std::int32_t* block_tables;  // [num_seqs, max_blocks]
  const std::int32_t* token_seq;     // [num_tokens]
  const std::int32_t* token_pos;     // [num_tokens]
  const float* q;                    // [num_tokens, num_heads, D]
  float* out;                        // [num_tokens, num_heads, D] (num_splits == 1)
  float* part_o;                     // [num_tokens, num_heads, num_splits, D] (num_splits > 1)
  float* part_ml;                    // [num_tokens, num_heads, num_splits, 2]: log2-domain max, sum
  int max_blocks;
  int block_shift;
  int num_blocks;
  int num_heads;
  int num_kv_heads;
  int group;        // query heads per KV head
  int head_chunks;  // group / HG
  int split_len;    // keys per split (a multiple of kChunk); the last split takes the rest
  int num_splits;
  float q_scale;  // scale * log2(e)
};

template <class T, int D, int HG>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(const DecodeArgs a) {
  constexpr int kLanesPerKey = D / 8;
  constexpr int kKeysPerWarp = 32 / kLanesPerKey;
  constexpr int kSlots = kDecodeWarps * kKeysPerWarp;  // keys in flight per CTA step and unroll
  constexpr int kUnroll = HG >= 8 ? 2 : 4;              // bounded by registers: HG * 16 are state
  constexpr int kKeysPerStep = kSlots * kUnroll;
  static_assert(kLanesPerKey * kKeysPerWarp == 32 && kChunk % kKeysPerStep == 0);

  __shared__ int s_blocks[kChunk / kMinBlockSize];
  __shared__ __align__(16) float s_acc[kDecodeWarps][HG][D];
  __shared__ float s_m[kDecodeWarps][HG];
  __shared__ float s_l[kDecodeWarps][HG];

  const int t = static_cast<int>(blockIdx.x);
  const int kvh = static_cast<int>(blockIdx.y) / a.head_chunks;
  const int h0 = kvh * a.group + (static_cast<int>(blockIdx.y) % a.head_chunks) * HG;
  const int split = static_cast<int>(blockIdx.z);
  const int seq = a.token_seq[t];
  const int pos = a.token_pos[t];
  if (seq < 0 || pos < 0 || (pos >> a.block_shift) >= a.max_blocks) __trap();
  const int ctx = pos + 1;
  const int kbeg = split * a.split_len;
  if (kbeg >= ctx) return;  // uniform over the CTA, before any barrier
  const int kend = split == a.num_splits - 1
                       ? ctx
                       : static_cast<int>(min(static_cast<long long>(ctx), static_cast<long long>(kbeg) + a.split_len));

  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int c = lane % kLanesPerKey;  // this lane's dims: [8c, 8c + 8)
  const int slot = warp * kKeysPerWarp + lane / kLanesPerKey;

  float q[HG][8];
#pragma unroll
  for (int h = 0; h < HG; ++h) {
    const float4* qp = reinterpret_cast<const float4*>(a.q + (static_cast<std::size_t>(t) * a.num_heads + h0 + h) * D + 8 * c);
    const float4 x = __ldg(qp), y = __ldg(qp + 1);
    q[h][0] = x.x * a.q_scale, q[h][1] = x.y * a.q_scale, q[h][2] = x.z * a.q_scale, q[h][3] = x.w * a.q_scale;
    q[h][4] = y.x * a.q_scale, q[h][5] = y.y * a.q_scale, q[h][6] = y.z * a.q_scale, q[h][7] = y.w * a.q_scale;
  }
  // -FLT_MAX rather than -inf: exp2(m - max) stays 1 (not NaN) while a lane has seen no key.
  float m[HG], l[HG], acc[HG][8];
#pragma unroll
  for (int h = 0; h < HG; ++h) {
    m[h] = -FLT_MAX;
    l[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.0f;
  }

  const T* kbase = static_cast<const T*>(a.k);
  const T* vbase = static_cast<const T*>(a.v);
  const std::size_t slot_stride = static_cast<std::size_t>(a.num_kv_heads) * D;
  const std::size_t head_offset = static_cast<std::size_t>(kvh) * D + 8 * c;
  const std::int32_t* table = a.block_tables + static_cast<std::size_t>(seq) * a.max_blocks;
  const int slot_mask = (1 << a.block_shift) - 1;

  // Chunks start at multiples of kChunk (split_len is one), hence at block boundaries.
  for (int cs = kbeg; cs < kend; cs += kChunk) {
    const int ce = min(cs + kChunk, kend);
    const int first_block = cs >> a.block_shift;
    const int nblocks = ((ce - 1) >> a.block_shift) - first_block + 1;  // <= kChunk / kMinBlockSize
    __syncthreads();  // the previous chunk's readers of s_blocks are done
    for (int i = static_cast<int>(threadIdx.x); i < nblocks; i += kDecodeThreads) {
      const int block = table[first_block + i];
      if (block < 0 || block >= a.num_blocks) __trap();
      s_blocks[i] = block;
    }
    __syncthreads();

    for (int base = cs; base < ce; base += kKeysPerStep) {  // uniform trip count: shuffles below
      uint4 kr[kUnroll], vr[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kSlots + slot;
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
        if (j < ce) {
          const std::size_t off =
              ((static_cast<std::size_t>(s_blocks[(j - cs) >> a.block_shift]) << a.block_shift) + (j & slot_mask)) *
                  slot_stride +
              head_offset;
          kr[u] = load16(kbase + off);
          vr[u] = load16(vbase + off);
        }
      }
      float s[kUnroll][HG];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        float kf[8];
        widen8<T>(kr[u], kf);
        const bool valid = base + u * kSlots + slot < ce;
#pragma unroll
        for (int h = 0; h < HG; ++h) {
          float d = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(q[h][e], kf[e], d);
          // The key's lanes are contiguous and aligned, so xor offsets below kLanesPerKey stay
          // inside it; every lane ends with the same (commutatively equal) sum.
#pragma unroll
          for (int o = kLanesPerKey / 2; o > 0; o >>= 1) d += __shfl_xor_sync(kFullMask, d, o);
          s[u][h] = valid ? d : -INFINITY;
        }
      }
      float vf[kUnroll][8];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) widen8<T>(vr[u], vf[u]);
#pragma unroll
      for (int h = 0; h < HG; ++h) {
        float mx = m[h];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) mx = fmaxf(mx, s[u][h]);
        const float alpha = exp2f(m[h] - mx);
        m[h] = mx;
        float p[kUnroll];
        float psum = 0.0f;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          p[u] = exp2f(s[u][h] - mx);
          psum += p[u];
        }
        l[h] = fmaf(l[h], alpha, psum);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          float x = acc[h][e] * alpha;
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) x = fmaf(p[u], vf[u][e], x);
          acc[h][e] = x;
        }
      }
    }
  }

  // Merge the key slots of each warp (lanes kLanesPerKey apart hold the same dims).
#pragma unroll
  for (int o = kLanesPerKey; o < 32; o <<= 1) {
#pragma unroll
    for (int h = 0; h < HG; ++h) {
      const float mo = __shfl_xor_sync(kFullMask, m[h], o);
      const float lo = __shfl_xor_sync(kFullMask, l[h], o);
      const float mx = fmaxf(m[h], mo);
      const float wa = exp2f(m[h] - mx), wb = exp2f(mo - mx);
      l[h] = l[h] * wa + lo * wb;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] = acc[h][e] * wa + __shfl_xor_sync(kFullMask, acc[h][e], o) * wb;
      m[h] = mx;
    }
  }
  if (lane < kLanesPerKey) {
#pragma unroll
    for (int h = 0; h < HG; ++h) {
      float4* dst = reinterpret_cast<float4*>(&s_acc[warp][h][8 * c]);
      dst[0] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
      dst[1] = make_float4(acc[h][4], acc[h][5], acc[h][6], acc[h][7]);
      if (c == 0) {
        s_m[warp][h] = m[h];
        s_l[warp][h] = l[h];
      }
    }
  }
  __syncthreads();

  // Merge the warps; write the normalised row, or this split's partial for the merge kernel.
  for (int i = static_cast<int>(threadIdx.x); i < HG * D; i += kDecodeThreads) {
    const int h = i / D, d = i % D;
    float mx = -FLT_MAX;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) mx = fmaxf(mx, s_m[w][h]);
    float sum = 0.0f, x = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float wt = exp2f(s_m[w][h] - mx);
      sum = fmaf(s_l[w][h], wt, sum);
      x = fmaf(s_acc[w][h][d], wt, x);
    }
    const std::size_t row = static_cast<std::size_t>(t) * a.num_heads + h0 + h;
    if (a.num_splits == 1) {
      a.out[row * D + d] = x * (sum == 0.0f ? 0.0f : 1.0f / sum);
    } else {
      const std::size_t part = row * a.num_splits + split;
      a.part_o[part * D + d] = x;
      if (d == 0) {
        a.part_ml[2 * part] = mx;
        a.part_ml[2 * part + 1] = sum;
      }
    }
  }
}

struct MergeArgs {
  const float* part_o;   // [num_tokens, num_heads, num_splits, D]
  const float* part_ml;  // [num_tokens, num_heads, num_splits, 2]
  const std::int32_t* token_pos;
  float* out;  // [num_tokens, num_heads, D]
  int num_heads;
  int num_splits;
  int split_len;
};

// grid (num_tokens, num_heads), one thread per dim (blockDim.x == D). Splits at or past the
// token's context wrote nothing and are not read.
__global__ void merge_splits_kernel(const MergeArgs a) {
  const int t = static_cast<int>(blockIdx.x), h = static_cast<int>(blockIdx.y), d = static_cast<int>(threadIdx.x);
  const int D = static_cast<int>(blockDim.x);
  const long long ctx = static_cast<long long>(a.token_pos[t]) + 1;
  const int n = static_cast<int>(min(static_cast<long long>(a.num_splits), (ctx + a.split_len - 1) / a.split_len));
  const std::size_t row = static_cast<std::size_t>(t) * a.num_heads + h;
  const float* ml = a.part_ml + row * a.num_splits * 2;
  const float* o = a.part_o + row * a.num_splits * D + d;
  float mx = -FLT_MAX;
  for (int s = 0; s < n; ++s) mx = fmaxf(mx, ml[2 * s]);
  float sum = 0.0f, x = 0.0f;
  for (int s = 0; s < n; ++s) {
    const float w = exp2f(ml[2 * s] - mx);
    sum = fmaf(ml[2 * s + 1], w, sum);
    x = fmaf(o[static_cast<std::size_t>(s) * D], w, x);
  }
  a.out[row * D + d] = x * (sum == 0.0f ? 0.0f : 1.0f / sum);
}

// ---------------------------------------------------------------------------------------------
// Chunked-prefill kernel

constexpr int kPrefillThreads = 128;
constexpr int kPrefillRows = 32;  // (token, head) rows per CTA, 4 lanes each
constexpr int kPrefillKeys = 32;  // keys per K/V tile: 8 per lane in the score phase

struct PrefillArgs {
  const void* k;  // [num_blocks, block_size, num_kv_heads, D]
  const void* v;
  const std::int32_t* block_tables;  // [num_seqs, max_blocks]
  const std::int32_t* token_seq;     // [num_tokens]
  const std::int32_t* token_pos;     // [num_tokens]
  const float* q;                    // [num_tokens, num_heads, D]
  float* out;                        // [num_tokens, num_heads, D]
  int num_tokens;
  int max_blocks;
  int block_shift;
  int num_blocks;
  int num_heads;
  int num_kv_heads;
  int group;
  int head_chunks;     // group / heads_per_cta
  int heads_per_cta;   // query heads of one KV head per CTA
  int tokens_per_cta;  // kPrefillRows / heads_per_cta
  float q_scale;       // scale * log2(e)
};

template <class T, int D>
__global__ void __launch_bounds__(kPrefillThreads) prefill_kernel(const PrefillArgs a) {
  constexpr int kVecs = D / 8;              // 16-byte vectors per K/V row
  constexpr int kOutVecs = kVecs / 4;       // vectors of the output row per lane
  constexpr int kQStride = D + 4;           // floats; rows 16 bytes apart modulo 128
  constexpr int kKvStride = D + 8;          // elements; rows 16 bytes apart modulo 128
  static_assert(kPrefillThreads == 4 * kPrefillRows && kPrefillKeys == 32);

  __shared__ __align__(16) float s_q[kPrefillRows][kQStride];
  __shared__ __align__(16) T s_k[kPrefillKeys][kKvStride];
  __shared__ __align__(16) T s_v[kPrefillKeys][kKvStride];
  __shared__ int s_seq[kPrefillRows];  // per token of the tile; -1 past num_tokens
  __shared__ int s_pos[kPrefillRows];

  const int tq = a.tokens_per_cta, hg = a.heads_per_cta;
  const int t0 = static_cast<int>(blockIdx.x) * tq;
  const int kvh = static_cast<int>(blockIdx.y) / a.head_chunks;
  const int hbase = kvh * a.group + (static_cast<int>(blockIdx.y) % a.head_chunks) * hg;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31;
  const int row = tid >> 2, sub = tid & 3;  // row = token * hg + head; 4 lanes of a row in one warp

  if (tid < tq) {
    const int t = t0 + tid;
    int seq = -1, pos = -1;
    if (t < a.num_tokens) {
      seq = a.token_seq[t];
      pos = a.token_pos[t];
      if (seq < 0 || pos < 0 || (pos >> a.block_shift) >= a.max_blocks) __trap();
    }
    s_seq[tid] = seq;
    s_pos[tid] = pos;
  }
  for (int i = tid; i < kPrefillRows * (D / 4); i += kPrefillThreads) {
    const int r = i / (D / 4), c4 = i % (D / 4);
    const int tok = r / hg, hh = r % hg;
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < tq * hg && t0 + tok < a.num_tokens) {
      x = __ldg(reinterpret_cast<const float4*>(a.q + (static_cast<std::size_t>(t0 + tok) * a.num_heads + hbase + hh) * D) + c4);
      x.x *= a.q_scale, x.y *= a.q_scale, x.z *= a.q_scale, x.w *= a.q_scale;
    }
    *reinterpret_cast<float4*>(&s_q[r][4 * c4]) = x;
  }
  __syncthreads();

  const bool row_used = row < tq * hg;
  const int my_tok = row_used ? row / hg : 0;
  const int my_seq = row_used ? s_seq[my_tok] : -1;
  const int my_pos = row_used ? s_pos[my_tok] : -1;
  const T* kbase = static_cast<const T*>(a.k);
  const T* vbase = static_cast<const T*>(a.v);
  const std::size_t slot_stride = static_cast<std::size_t>(a.num_kv_heads) * D;
  const int slot_mask = (1 << a.block_shift) - 1;

  // One pass per distinct sequence of the tile, in order of first appearance (uniform: shared
  // memory decides). Usually one: a sequence's chunk is consecutive in the token list.
  for (int first = 0; first < tq; ++first) {
    const int seq = s_seq[first];
    if (seq < 0) continue;
    bool seen = false;
    for (int i = 0; i < first; ++i) seen = seen || s_seq[i] == seq;
    if (seen) continue;
    int kmax = 0;  // keys 0..kmax-1 cover every token of this sequence in the tile
    for (int i = first; i < tq; ++i) {
      if (s_seq[i] == seq) kmax = max(kmax, s_pos[i] + 1);
    }
    const bool active = my_seq == seq;
    const std::int32_t* table = a.block_tables + static_cast<std::size_t>(seq) * a.max_blocks;

    float m = -FLT_MAX, l = 0.0f;
    float acc[kOutVecs][8];
#pragma unroll
    for (int ci = 0; ci < kOutVecs; ++ci) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[ci][e] = 0.0f;
    }

    for (int kt = 0; kt < kmax; kt += kPrefillKeys) {
      __syncthreads();  // readers of the previous tile are done
      for (int i = tid; i < kPrefillKeys * kVecs; i += kPrefillThreads) {
        const int key = i / kVecs, cv = i % kVecs, j = kt + key;
        uint4 kx = make_uint4(0, 0, 0, 0), vx = kx;
        if (j < kmax) {
          const int block = table[j >> a.block_shift];
          if (block < 0 || block >= a.num_blocks) __trap();
          const std::size_t off = ((static_cast<std::size_t>(block) << a.block_shift) + (j & slot_mask)) * slot_stride +
                                  static_cast<std::size_t>(kvh) * D + 8 * cv;
          kx = load16(kbase + off);
          vx = load16(vbase + off);
        }
        *reinterpret_cast<uint4*>(&s_k[key][8 * cv]) = kx;
        *reinterpret_cast<uint4*>(&s_v[key][8 * cv]) = vx;
      }
      __syncthreads();

      float s[8];  // keys kt + 4i + sub
#pragma unroll
      for (int i = 0; i < 8; ++i) s[i] = 0.0f;
#pragma unroll 4
      for (int cv = 0; cv < kVecs; ++cv) {
        const float4 qa = *reinterpret_cast<const float4*>(&s_q[row][8 * cv]);
        const float4 qb = *reinterpret_cast<const float4*>(&s_q[row][8 * cv + 4]);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          float kf[8];
          widen8<T>(*reinterpret_cast<const uint4*>(&s_k[4 * i + sub][8 * cv]), kf);
          float x = s[i];
          x = fmaf(qa.x, kf[0], x), x = fmaf(qa.y, kf[1], x), x = fmaf(qa.z, kf[2], x), x = fmaf(qa.w, kf[3], x);
          x = fmaf(qb.x, kf[4], x), x = fmaf(qb.y, kf[5], x), x = fmaf(qb.z, kf[6], x), x = fmaf(qb.w, kf[7], x);
          s[i] = x;
        }
      }
      float tile_max = -FLT_MAX;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (!active || kt + 4 * i + sub > my_pos) s[i] = -INFINITY;  // causal (and other rows)
        tile_max = fmaxf(tile_max, s[i]);
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 2));
      const float mx = fmaxf(m, tile_max);
      const float alpha = exp2f(m - mx);
      m = mx;
      float p[8], psum = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        p[i] = exp2f(s[i] - mx);
        psum += p[i];
      }
      psum += __shfl_xor_sync(kFullMask, psum, 1);
      psum += __shfl_xor_sync(kFullMask, psum, 2);
      l = fmaf(l, alpha, psum);
#pragma unroll
      for (int ci = 0; ci < kOutVecs; ++ci) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[ci][e] *= alpha;
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const float pk = __shfl_sync(kFullMask, p[i], (lane & ~3) | kk);  // key 4i + kk's weight
#pragma unroll
          for (int ci = 0; ci < kOutVecs; ++ci) {
            float vf[8];
            widen8<T>(*reinterpret_cast<const uint4*>(&s_v[4 * i + kk][8 * (sub + 4 * ci)]), vf);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[ci][e] = fmaf(pk, vf[e], acc[ci][e]);
          }
        }
      }
    }

    if (active) {
      const float inv = l == 0.0f ? 0.0f : 1.0f / l;
      float* o = a.out + (static_cast<std::size_t>(t0 + my_tok) * a.num_heads + hbase + row % hg) * D;
#pragma unroll
      for (int ci = 0; ci < kOutVecs; ++ci) {
        float4* dst = reinterpret_cast<float4*>(o + 8 * (sub + 4 * ci));
        dst[0] = make_float4(acc[ci][0] * inv, acc[ci][1] * inv, acc[ci][2] * inv, acc[ci][3] * inv);
        dst[1] = make_float4(acc[ci][4] * inv, acc[ci][5] * inv, acc[ci][6] * inv, acc[ci][7] * inv);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The dispatch table: every supported (KV dtype, head_dim) with its kernels; block_size is a
// runtime shift over kBlockSizes. Anything else is refused by validate_*.

using AppendFn = void (*)(AppendArgs);
using DecodeFn = void (*)(DecodeArgs);
using PrefillFn = void (*)(PrefillArgs);

constexpr int kDecodeHeadsPerCta[] = {1, 2, 4, 8};  // decode[i] shares loads across this many heads

struct KernelSet {
  DType dtype;
  std::size_t head_dim;
  AppendFn append;
  DecodeFn decode[4];
  PrefillFn prefill;
};

template <class T, int D>
KernelSet kernel_set(DType dtype) {
  return {dtype, D, kv_append_kernel<T>,
          {decode_kernel<T, D, 1>, decode_kernel<T, D, 2>, decode_kernel<T, D, 4>, decode_kernel<T, D, 8>},
          prefill_kernel<T, D>};
}

const KernelSet kKernels[] = {
    kernel_set<__half, 64>(DType::kF16),
    kernel_set<__half, 128>(DType::kF16),
    kernel_set<__nv_bfloat16, 64>(DType::kBF16),
    kernel_set<__nv_bfloat16, 128>(DType::kBF16),
};
constexpr std::size_t kBlockSizes[] = {16, 32};
constexpr int kMaxGrid = 65535;  // grid y and z

const KernelSet* find_kernels(DType dtype, std::size_t head_dim) {
  for (const KernelSet& k : kKernels) {
    if (k.dtype == dtype && k.head_dim == head_dim) return &k;
  }
  return nullptr;
}

std::string dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ4_0: return "Q4_0";
    case DType::kQ4_1: return "Q4_1";
    case DType::kQ8_0: return "Q8_0";
  }
  return "dtype " + std::to_string(static_cast<unsigned>(t));
}

int log2_exact(std::size_t x) {
  int s = 0;
  while ((std::size_t{1} << s) < x) ++s;
  return s;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Query heads a decode CTA serves: the largest entry of kDecodeHeadsPerCta dividing the group.
int decode_heads_index(std::size_t group) {
  int best = 0;
  for (int i = 0; i < 4; ++i) {
    if (group % static_cast<std::size_t>(kDecodeHeadsPerCta[i]) == 0) best = i;
  }
  return best;
}

// Query heads a prefill CTA serves: the largest divisor of the group that fits its 32 rows.
std::size_t prefill_heads(std::size_t group) {
  std::size_t best = 1;
  for (std::size_t h = 1; h <= std::min<std::size_t>(group, kPrefillRows); ++h) {
    if (group % h == 0) best = h;
  }
  return best;
}

Status validate_cache_shape(const PagedKv& kv, const TokenLayout& layout) {
  if (kv.dtype != DType::kF16 && kv.dtype != DType::kBF16)
    return Status::failure("KV cache dtype " + dtype_name(kv.dtype) + " unsupported on the GPU (supported: F16, BF16)");
  if (!find_kernels(kv.dtype, kv.head_dim))
    return Status::failure("head_dim " + std::to_string(kv.head_dim) + " unsupported (supported: 64, 128)");
  if (std::find(std::begin(kBlockSizes), std::end(kBlockSizes), kv.block_size) == std::end(kBlockSizes))
    return Status::failure("block_size " + std::to_string(kv.block_size) + " unsupported (supported: 16, 32)");
  if (kv.num_kv_heads == 0 || kv.num_kv_heads > static_cast<std::size_t>(kMaxGrid))
    return Status::failure("num_kv_heads " + std::to_string(kv.num_kv_heads) + " out of range (1..65535)");
  if (kv.num_blocks == 0 || kv.num_blocks > static_cast<std::size_t>(INT_MAX))
    return Status::failure("num_blocks " + std::to_string(kv.num_blocks) + " out of range (1..INT_MAX)");
  if (layout.max_blocks_per_seq == 0 || layout.max_blocks_per_seq > (std::size_t{1} << 30) / kv.block_size)
    return Status::failure("max_blocks_per_seq " + std::to_string(layout.max_blocks_per_seq) +
                           " out of range (1..2^30 / block_size)");
  if (layout.num_tokens > static_cast<std::size_t>(INT_MAX))
    return Status::failure("num_tokens " + std::to_string(layout.num_tokens) + " out of range (0..INT_MAX)");
  return Status::success();
}

Status validate_cache_pointers(const PagedKv& kv, const TokenLayout& layout) {
  if (layout.num_tokens == 0) return Status::success();
  if (!kv.k || !kv.v || !layout.block_tables || !layout.token_seq || !layout.token_pos)
    return Status::failure("null pointer among kv.k, kv.v, block_tables, token_seq, token_pos");
  if (!aligned16(kv.k) || !aligned16(kv.v)) return Status::failure("kv.k and kv.v must be 16-byte aligned");
  return Status::success();
}

// Upper bound of token_pos + 1 over the step: the caller's, clamped to what the table can hold.
std::size_t context_bound(const PagedAttentionParams& p, const AttentionBatchShape& shape) {
  const std::size_t table_limit = p.layout.max_blocks_per_seq * p.kv.block_size;
  return shape.max_context_len == 0 ? table_limit : std::min(shape.max_context_len, table_limit);
}

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

int current_sm_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return sms;
}

Status launch_status(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::success();
  return Status::failure(std::string(what) + " launch failed: " + cudaGetErrorString(e));
}

}  // namespace

Status validate_kv_append(const KvAppendParams& p) {
  if (Status s = validate_cache_shape(p.kv, p.layout); !s.ok()) return s;
  if (Status s = validate_cache_pointers(p.kv, p.layout); !s.ok()) return s;
  if (p.layout.num_tokens > 0 && (!p.k_new || !p.v_new)) return Status::failure("null k_new or v_new");
  return Status::success();
}

Status validate_paged_attention_shape(const PagedAttentionParams& p, const AttentionBatchShape& shape) {
  if (Status s = validate_cache_shape(p.kv, p.layout); !s.ok()) return s;
  if (p.num_heads == 0 || p.num_heads % p.kv.num_kv_heads != 0)
    return Status::failure("num_heads " + std::to_string(p.num_heads) + " is not a positive multiple of num_kv_heads " +
                           std::to_string(p.kv.num_kv_heads));
  if (p.num_heads > static_cast<std::size_t>(kMaxGrid))
    return Status::failure("num_heads " + std::to_string(p.num_heads) + " out of range (1..65535)");
  const std::size_t group = p.num_heads / p.kv.num_kv_heads;
  const std::size_t decode_ctas = p.kv.num_kv_heads * (group / kDecodeHeadsPerCta[decode_heads_index(group)]);
  const std::size_t prefill_ctas = p.kv.num_kv_heads * (group / prefill_heads(group));
  if (std::max(decode_ctas, prefill_ctas) > static_cast<std::size_t>(kMaxGrid))
    return Status::failure("num_heads " + std::to_string(p.num_heads) + " with num_kv_heads " +
                           std::to_string(p.kv.num_kv_heads) + " needs more than 65535 CTAs per token");
  if (shape.max_query_len == 0) return Status::failure("max_query_len 0 (at least 1)");
  return Status::success();
}

Status validate_paged_attention(const PagedAttentionParams& p, const AttentionBatchShape& shape) {
  if (Status s = validate_paged_attention_shape(p, shape); !s.ok()) return s;
  if (Status s = validate_cache_pointers(p.kv, p.layout); !s.ok()) return s;
  if (p.layout.num_tokens == 0) return Status::success();
  if (!p.q || !p.out) return Status::failure("null q or out");
  if (!aligned16(p.q) || !aligned16(p.out)) return Status::failure("q and out must be 16-byte aligned");
  return Status::success();
}

Status kv_append(const KvAppendParams& p, void* stream) {
  if (Status s = validate_kv_append(p); !s.ok()) return s;
  if (p.layout.num_tokens == 0) return Status::success();
  const KernelSet* ks = find_kernels(p.kv.dtype, p.kv.head_dim);
  const AppendArgs args{p.kv.k,
                        p.kv.v,
                        p.k_new,
                        p.v_new,
                        p.layout.block_tables,
                        p.layout.token_seq,
                        p.layout.token_pos,
                        p.layout.num_tokens,
                        p.kv.num_kv_heads * p.kv.head_dim,
                        static_cast<int>(p.layout.max_blocks_per_seq),
                        log2_exact(p.kv.block_size),
                        static_cast<int>(p.kv.num_blocks)};
  const std::size_t n = p.layout.num_tokens * args.row;
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>(ceil_div(n, 256), 16384));
  ks->append<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(args);
  return launch_status("kv_append");
}

SplitPlan plan_decode_splits(const PagedAttentionParams& p, const AttentionBatchShape& shape, int sm_count) {
  const std::size_t bound = std::max<std::size_t>(context_bound(p, shape), 1);
  const std::size_t chunks = std::min<std::size_t>(ceil_div(bound, kSplitAlign), kMaxGrid);
  std::size_t splits = 1;
  if (shape.num_splits != 0) {
    splits = std::min(shape.num_splits, chunks);
  } else {
    // Aim for about eight CTAs per SM (two waves of the three to seven a decode CTA fits), so that
    // small batches still fill the GPU and large ones balance; never split below kSplitAlign keys.
    const std::size_t kv_heads = std::max<std::size_t>(p.kv.num_kv_heads, 1);
    const std::size_t group = std::max<std::size_t>(p.num_heads / kv_heads, 1);
    const std::size_t units = std::max<std::size_t>(
        p.layout.num_tokens * kv_heads * (group / kDecodeHeadsPerCta[decode_heads_index(group)]), 1);
    const std::size_t target = 8 * static_cast<std::size_t>(std::max(sm_count, 1));
    splits = std::min(chunks, ceil_div(target, units));
  }
  splits = std::max<std::size_t>(splits, 1);
  const std::size_t split_len = ceil_div(ceil_div(bound, splits), kSplitAlign) * kSplitAlign;
  return {ceil_div(bound, split_len), split_len};
}

namespace {
std::size_t workspace_for(const PagedAttentionParams& p, const SplitPlan& plan) {
  if (plan.num_splits <= 1) return 0;
  return p.layout.num_tokens * p.num_heads * plan.num_splits * (p.kv.head_dim + 2) * sizeof(float);
}
}  // namespace

std::size_t paged_attention_workspace_bytes(const PagedAttentionParams& p, const AttentionBatchShape& shape,
                                            int sm_count) {
  if (!validate_paged_attention_shape(p, shape).ok() || shape.max_query_len > 1) return 0;
  return workspace_for(p, plan_decode_splits(p, shape, sm_count));
}

std::size_t paged_attention_workspace_bytes(const PagedAttentionParams& p, const AttentionBatchShape& shape) {
  return paged_attention_workspace_bytes(p, shape, current_sm_count());
}

Status paged_attention(const PagedAttentionParams& p, const AttentionBatchShape& shape, Workspace workspace,
                       void* stream) {
  if (Status s = validate_paged_attention(p, shape); !s.ok()) return s;
  if (p.layout.num_tokens == 0) return Status::success();
  const KernelSet* ks = find_kernels(p.kv.dtype, p.kv.head_dim);
  const auto st = static_cast<cudaStream_t>(stream);
  const std::size_t group = p.num_heads / p.kv.num_kv_heads;
  const int block_shift = log2_exact(p.kv.block_size);
  const float q_scale = p.scale * kLog2e;

  if (shape.max_query_len > 1) {
    const std::size_t hg = prefill_heads(group);
    const std::size_t tq = kPrefillRows / hg;
    const PrefillArgs args{p.kv.k,
                           p.kv.v,
                           p.layout.block_tables,
                           p.layout.token_seq,
                           p.layout.token_pos,
                           p.q,
                           p.out,
                           static_cast<int>(p.layout.num_tokens),
                           static_cast<int>(p.layout.max_blocks_per_seq),
                           block_shift,
                           static_cast<int>(p.kv.num_blocks),
                           static_cast<int>(p.num_heads),
                           static_cast<int>(p.kv.num_kv_heads),
                           static_cast<int>(group),
                           static_cast<int>(group / hg),
                           static_cast<int>(hg),
                           static_cast<int>(tq),
                           q_scale};
    const dim3 grid(static_cast<unsigned>(ceil_div(p.layout.num_tokens, tq)),
                    static_cast<unsigned>(p.kv.num_kv_heads * (group / hg)));
    ks->prefill<<<grid, kPrefillThreads, 0, st>>>(args);
    return launch_status("paged_attention (prefill)");
  }

  const int sms = current_sm_count();
  if (sms <= 0) return Status::failure("paged_attention: no usable CUDA device");
  const SplitPlan plan = plan_decode_splits(p, shape, sms);
  const std::size_t need = workspace_for(p, plan);
  if (need > 0 && (workspace.data == nullptr || workspace.bytes < need || reinterpret_cast<std::uintptr_t>(workspace.data) % 16 != 0))
    return Status::failure("paged_attention workspace of " + std::to_string(workspace.bytes) + " bytes too small or unaligned: needs " +
                           std::to_string(need) + " (16-byte aligned)");
  const int hi = decode_heads_index(group);
  const std::size_t head_chunks = group / kDecodeHeadsPerCta[hi];
  float* part_o = static_cast<float*>(workspace.data);
  float* part_ml = need > 0 ? part_o + p.layout.num_tokens * p.num_heads * plan.num_splits * p.kv.head_dim : nullptr;
  const DecodeArgs args{p.kv.k,
                        p.kv.v,
                        p.layout.block_tables,
                        p.layout.token_seq,
                        p.layout.token_pos,
                        p.q,
                        p.out,
                        need > 0 ? part_o : nullptr,
                        part_ml,
                        static_cast<int>(p.layout.max_blocks_per_seq),
                        block_shift,
                        static_cast<int>(p.kv.num_blocks),
                        static_cast<int>(p.num_heads),
                        static_cast<int>(p.kv.num_kv_heads),
                        static_cast<int>(group),
                        static_cast<int>(head_chunks),
                        static_cast<int>(plan.split_len),
                        static_cast<int>(plan.num_splits),
                        q_scale};
  const dim3 grid(static_cast<unsigned>(p.layout.num_tokens), static_cast<unsigned>(p.kv.num_kv_heads * head_chunks),
                  static_cast<unsigned>(plan.num_splits));
  ks->decode[hi]<<<grid, kDecodeThreads, 0, st>>>(args);
  if (Status s = launch_status("paged_attention (decode)"); !s.ok() || plan.num_splits == 1) return s;
  const MergeArgs merge{part_o, part_ml, p.layout.token_pos, p.out, static_cast<int>(p.num_heads),
                        static_cast<int>(plan.num_splits), static_cast<int>(plan.split_len)};
  merge_splits_kernel<<<dim3(static_cast<unsigned>(p.layout.num_tokens), static_cast<unsigned>(p.num_heads)),
                        static_cast<unsigned>(p.kv.head_dim), 0, st>>>(merge);
  return launch_status("paged_attention (merge)");
}

}  // namespace tiergate::kernels::cuda
