#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define TG_ATTN_AVX512 1
#endif

namespace tiergate::kernels::cpu {
namespace {

std::size_t slot_offset(const PagedKv& kv, const TokenLayout& layout, std::size_t seq, std::size_t pos,
                        std::size_t kv_head) {
  const std::int32_t block = layout.block_tables[seq * layout.max_blocks_per_seq + pos / kv.block_size];
  TG_CHECK(block >= 0 && static_cast<std::size_t>(block) < kv.num_blocks);
  return ((static_cast<std::size_t>(block) * kv.block_size + pos % kv.block_size) * kv.num_kv_heads + kv_head) *
         kv.head_dim;
}

// One key or value row as floats: F32 rows are used in place, F16 and BF16 rows are widened
// (exactly) into `buffer`.
const float* row_as_float(const PagedKv& kv, const void* base, std::size_t offset, float* buffer) {
  if (kv.dtype == DType::kF32) return static_cast<const float*>(base) + offset;
  const std::uint16_t* h = static_cast<const std::uint16_t*>(base) + offset;
  if (kv.dtype == DType::kBF16) {
    for (std::size_t d = 0; d < kv.head_dim; ++d) buffer[d] = bf16_to_float(h[d]);
  } else {
    for (std::size_t d = 0; d < kv.head_dim; ++d) buffer[d] = half_to_float(h[d]);
  }
  return buffer;
}

// q·k summed the way ggml's 512-bit vec_dot_f32 sums: per 64-element step four accumulators of 16
// lanes (fused multiply-add), folded 0+2, 1+3, 0+1, then the 16 lanes by halves; any tail in
// double. Matching the order makes the CPU engine agree with llama.cpp to the last bit.
float dot_ggml_order(const float* x, const float* y, std::size_t n) {
  float acc[4][16] = {};
  const std::size_t np = n & ~std::size_t{63};
  for (std::size_t i = 0; i < np; i += 64) {
    for (std::size_t j = 0; j < 4; ++j) {
      for (std::size_t l = 0; l < 16; ++l) acc[j][l] = std::fma(x[i + j * 16 + l], y[i + j * 16 + l], acc[j][l]);
    }
  }
  float v[16];
  for (std::size_t l = 0; l < 16; ++l) v[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float h8[8], h4[4];
  for (std::size_t l = 0; l < 8; ++l) h8[l] = v[l + 8] + v[l];
  for (std::size_t l = 0; l < 4; ++l) h4[l] = h8[l + 4] + h8[l];
  double sum = static_cast<double>((h4[0] + h4[2]) + (h4[1] + h4[3]));
  for (std::size_t i = np; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
  return static_cast<float>(sum);
}

#ifdef TG_ATTN_AVX512
// The fp16 flash-attention recurrence below with 512-bit vectors, for head_dim == 64: per lane the
// same operations as the scalar form (and as ggml), four vectors of 16 lanes per row.
void attend_f16_d64(const PagedKv& kv, const TokenLayout& layout, std::size_t seq, std::size_t pos,
                    std::size_t kvh, const float* q, float scale, float* out) {
  __m512 qf[4];
  for (int k = 0; k < 4; ++k) qf[k] = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(q + 16 * k), _MM_FROUND_TO_NEAREST_INT));
  __m256i acc[4];
  for (int k = 0; k < 4; ++k) acc[k] = _mm256_setzero_si256();
  float max = -INFINITY, sum = 0;
  const auto* kbase = static_cast<const std::uint16_t*>(kv.k);
  const auto* vbase = static_cast<const std::uint16_t*>(kv.v);
  for (std::size_t j = 0; j <= pos; ++j) {
    const std::size_t off = slot_offset(kv, layout, seq, j, kvh);
    __m512 prod[4];
    for (int k = 0; k < 4; ++k) {
      const __m512 kf = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(kbase + off + 16 * k)));
      prod[k] = _mm512_fmadd_ps(kf, qf[k], _mm512_setzero_ps());
    }
    const __m512 folded = _mm512_add_ps(_mm512_add_ps(prod[0], prod[2]), _mm512_add_ps(prod[1], prod[3]));
    const float s = _mm512_reduce_add_ps(folded) * scale;
    float ms = 1.0f, vs = 1.0f;
    if (s > max) {
      const float old = max;
      max = s;
      ms = std::exp(old - max);
      const __m512 msv = _mm512_set1_ps(ms);
      for (int k = 0; k < 4; ++k) {
        acc[k] = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_cvtph_ps(acc[k]), msv), _MM_FROUND_TO_NEAREST_INT);
      }
    } else {
      vs = std::exp(s - max);
    }
    const __m512 vsv = _mm512_set1_ps(vs);
    for (int k = 0; k < 4; ++k) {
      const __m512 vf = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vbase + off + 16 * k)));
      acc[k] = _mm512_cvtps_ph(_mm512_fmadd_ps(vf, vsv, _mm512_cvtph_ps(acc[k])), _MM_FROUND_TO_NEAREST_INT);
    }
    sum = std::fma(sum, ms, vs);
  }
  const __m512 inv = _mm512_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int k = 0; k < 4; ++k) _mm512_storeu_ps(out + 16 * k, _mm512_mul_ps(_mm512_cvtph_ps(acc[k]), inv));
}
#endif

}  // namespace

void kv_append(const KvAppendParams& p) {
  const PagedKv& kv = p.kv;
  TG_CHECK(kv.dtype == DType::kF32 || kv.dtype == DType::kF16 || kv.dtype == DType::kBF16);
  for (std::size_t t = 0; t < p.layout.num_tokens; ++t) {
    const auto seq = static_cast<std::size_t>(p.layout.token_seq[t]);
    const auto pos = static_cast<std::size_t>(p.layout.token_pos[t]);
    TG_CHECK(pos / kv.block_size < p.layout.max_blocks_per_seq);
    for (std::size_t h = 0; h < kv.num_kv_heads; ++h) {
      const std::size_t dst = slot_offset(kv, p.layout, seq, pos, h);
      const float* k = p.k_new + (t * kv.num_kv_heads + h) * kv.head_dim;
      const float* v = p.v_new + (t * kv.num_kv_heads + h) * kv.head_dim;
      if (kv.dtype == DType::kF32) {
        std::copy_n(k, kv.head_dim, static_cast<float*>(kv.k) + dst);
        std::copy_n(v, kv.head_dim, static_cast<float*>(kv.v) + dst);
      } else if (kv.dtype == DType::kBF16) {
        for (std::size_t d = 0; d < kv.head_dim; ++d) {
          static_cast<std::uint16_t*>(kv.k)[dst + d] = float_to_bf16(k[d]);
          static_cast<std::uint16_t*>(kv.v)[dst + d] = float_to_bf16(v[d]);
        }
      } else {
        for (std::size_t d = 0; d < kv.head_dim; ++d) {
          static_cast<std::uint16_t*>(kv.k)[dst + d] = float_to_half(k[d]);
          static_cast<std::uint16_t*>(kv.v)[dst + d] = float_to_half(v[d]);
        }
      }
    }
  }
}

void paged_attention(const PagedAttentionParams& p, ThreadPool& pool) {
  const PagedKv& kv = p.kv;
  TG_CHECK(kv.num_kv_heads > 0 && p.num_heads % kv.num_kv_heads == 0);
  TG_CHECK(kv.dtype == DType::kF32 || kv.dtype == DType::kF16 || kv.dtype == DType::kBF16);
  const std::size_t group = p.num_heads / kv.num_kv_heads;
  const std::size_t D = kv.head_dim;
  pool.parallel_for(p.layout.num_tokens * p.num_heads, [&](std::size_t begin, std::size_t end) {
    std::vector<float> acc(D), kbuf(D), vbuf(D), qbuf(D);
    std::vector<std::uint16_t> acc16(D);
    for (std::size_t job = begin; job < end; ++job) {
      const std::size_t t = job / p.num_heads, h = job % p.num_heads, kvh = h / group;
      const auto seq = static_cast<std::size_t>(p.layout.token_seq[t]);
      const auto pos = static_cast<std::size_t>(p.layout.token_pos[t]);
      const float* q = p.q + (t * p.num_heads + h) * D;
      float* out = p.out + (t * p.num_heads + h) * D;
#ifdef TG_ATTN_AVX512
      if (kv.dtype == DType::kF16 && D == 64) {
        attend_f16_d64(kv, p.layout, seq, pos, kvh, q, p.scale, out);
        continue;
      }
#endif
      if (kv.dtype == DType::kF16) {
        // fp16 cache: ggml's flash-attention arithmetic step for step, so that the CPU engine
        // agrees with llama.cpp to the bit: the query rounded to fp16, fp16·fp16 products summed
        // in ggml's order, an online softmax with libm's expf, and the value accumulator itself
        // kept in fp16 (rounded after every multiply-add).
        for (std::size_t d = 0; d < D; ++d) qbuf[d] = half_to_float(float_to_half(q[d]));
        float max = -INFINITY, sum = 0;
        std::fill(acc16.begin(), acc16.end(), std::uint16_t{0});
        for (std::size_t j = 0; j <= pos; ++j) {
          const std::size_t off = slot_offset(kv, p.layout, seq, j, kvh);
          const float s = dot_ggml_order(row_as_float(kv, kv.k, off, kbuf.data()), qbuf.data(), D) * p.scale;
          float ms = 1.0f, vs = 1.0f;
          if (s > max) {
            const float old = max;
            max = s;
            ms = std::exp(old - max);
            for (std::uint16_t& a : acc16) a = float_to_half(half_to_float(a) * ms);
          } else {
            vs = std::exp(s - max);
          }
          const float* v = row_as_float(kv, kv.v, off, vbuf.data());
          for (std::size_t d = 0; d < D; ++d) acc16[d] = float_to_half(std::fma(v[d], vs, half_to_float(acc16[d])));
          sum = std::fma(sum, ms, vs);  // ggml's build contracts S*ms + vs into one fused multiply-add
        }
        const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
        for (std::size_t d = 0; d < D; ++d) out[d] = half_to_float(acc16[d]) * inv;
        continue;
      }
      // F32 cache (and BF16, widened exactly to F32 rows): online softmax over the keys in order,
      // one pass, as flash attention does. The reference the CUDA kernels' fp32 accumulation is
      // tested against.
      float max = -INFINITY, sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (std::size_t j = 0; j <= pos; ++j) {
        const std::size_t off = slot_offset(kv, p.layout, seq, j, kvh);
        const float s = dot_ggml_order(row_as_float(kv, kv.k, off, kbuf.data()), q, D) * p.scale;
        float ms = 1.0f, vs = 1.0f;
        if (s > max) {
          const float old = max;
          max = s;
          ms = std::exp(old - max);
          for (float& a : acc) a *= ms;
        } else {
          vs = std::exp(s - max);
        }
        const float* v = row_as_float(kv, kv.v, off, vbuf.data());
        for (std::size_t d = 0; d < D; ++d) acc[d] = std::fma(v[d], vs, acc[d]);
        sum = sum * ms + vs;
      }
      const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
      for (std::size_t d = 0; d < D; ++d) out[d] = acc[d] * inv;
    }
  });
}

}  // namespace tiergate::kernels::cpu
