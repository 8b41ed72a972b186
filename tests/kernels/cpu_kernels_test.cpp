// kernels/cpu/*: SIMD dot products against the portable reference, quantisation error bounds, fp16
// conversions, and paged attention against a plain contiguous implementation over random shapes.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/quant.h"
#include "tests/kernels/random_data.h"

namespace tiergate::kernels::cpu {
namespace {

using testing::random_floats;

// Quantises a float row into `type` by way of a reference rounding (weights are made here the
// simple way: these tests are about the dot products, not about weight quantisation).
std::vector<std::byte> make_weight_row(DType type, const std::vector<float>& x) {
  std::vector<std::byte> out(row_bytes(type, x.size()));
  const std::size_t nb = x.size() / kQuantBlock;
  switch (type) {
    case DType::kQ8_0: quantize_row_q8_0(x.data(), reinterpret_cast<BlockQ8_0*>(out.data()), x.size()); break;
    case DType::kQ4_0: {
      auto* b = reinterpret_cast<BlockQ4_0*>(out.data());
      for (std::size_t i = 0; i < nb; ++i) {
        float amax = 0;
        for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[i * 32 + j]));
        const float d = amax / 8;
        b[i].d = float_to_half(d);
        for (std::size_t j = 0; j < 16; ++j) {
          auto q = [&](float v) { return static_cast<std::uint8_t>(std::clamp(std::lround(v / d) + 8, 0L, 15L)); };
          b[i].qs[j] = static_cast<std::uint8_t>(q(x[i * 32 + j]) | (q(x[i * 32 + j + 16]) << 4));
        }
      }
      break;
    }
    case DType::kQ4_1: {
      auto* b = reinterpret_cast<BlockQ4_1*>(out.data());
      for (std::size_t i = 0; i < nb; ++i) {
        float lo = x[i * 32], hi = x[i * 32];
        for (std::size_t j = 0; j < 32; ++j) lo = std::min(lo, x[i * 32 + j]), hi = std::max(hi, x[i * 32 + j]);
        const float d = (hi - lo) / 15;
        b[i].d = float_to_half(d);
        b[i].m = float_to_half(lo);
        for (std::size_t j = 0; j < 16; ++j) {
          auto q = [&](float v) { return static_cast<std::uint8_t>(std::clamp(std::lround((v - lo) / d), 0L, 15L)); };
          b[i].qs[j] = static_cast<std::uint8_t>(q(x[i * 32 + j]) | (q(x[i * 32 + j + 16]) << 4));
        }
      }
      break;
    }
    case DType::kF16: {
      auto* h = reinterpret_cast<std::uint16_t*>(out.data());
      for (std::size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
      break;
    }
    default: std::memcpy(out.data(), x.data(), out.size()); break;
  }
  return out;
}

TEST(CpuKernels, MatmulMatchesTheReferenceDotForAnyTokenCount) {
  // 1 token (two-row path), even counts (token pairs), odd counts (pairs plus a single tail), and
  // more than one pass of 8 tokens.
  ThreadPool pool(2);
  std::vector<std::byte> scratch;
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kF16, DType::kF32}) {
    for (std::size_t tokens : {1u, 2u, 3u, 8u, 9u, 17u}) {
      const std::size_t rows = 37, cols = 576;
      std::vector<std::byte> w;
      for (std::size_t r = 0; r < rows; ++r) {
        const auto row = make_weight_row(type, random_floats(cols, static_cast<std::uint32_t>(r), 0.5f));
        w.insert(w.end(), row.begin(), row.end());
      }
      const auto x = random_floats(tokens * cols, 99, 2.0f);
      std::vector<float> y(tokens * rows);
      matmul({w.data(), type, rows, cols, x.data(), y.data(), tokens}, pool, scratch);
      std::vector<std::byte> act(activation_row_bytes(type, cols));
      for (std::size_t t = 0; t < tokens; ++t) {
        quantize_activation_row(type, x.data() + t * cols, act.data(), cols);
        for (std::size_t r = 0; r < rows; ++r) {
          const float ref = dot_reference(type, w.data() + r * row_bytes(type, cols), act.data(), cols);
          ASSERT_NEAR(y[t * rows + r], ref, 1e-4f * (1.0f + std::fabs(ref)))
              << "type " << static_cast<int>(type) << " tokens " << tokens << " t " << t << " r " << r;
        }
      }
    }
  }
}

TEST(CpuKernels, MatmulResultsDoNotDependOnTheBatch) {
  // A token's outputs are bit-identical whether it is alone or one of many (batch invariance).
  ThreadPool pool(2);
  std::vector<std::byte> scratch;
  const std::size_t rows = 64, cols = 576;
  for (DType type : {DType::kQ4_1, DType::kQ8_0}) {
    std::vector<std::byte> w;
    for (std::size_t r = 0; r < rows; ++r) {
      const auto row = make_weight_row(type, random_floats(cols, static_cast<std::uint32_t>(r + 7), 0.5f));
      w.insert(w.end(), row.begin(), row.end());
    }
    const auto x = random_floats(11 * cols, 5);
    std::vector<float> all(11 * rows), one(rows);
    matmul({w.data(), type, rows, cols, x.data(), all.data(), 11}, pool, scratch);
    for (std::size_t t = 0; t < 11; ++t) {
      matmul({w.data(), type, rows, cols, x.data() + t * cols, one.data(), 1}, pool, scratch);
      for (std::size_t r = 0; r < rows; ++r) ASSERT_EQ(one[r], all[t * rows + r]) << "token " << t << " row " << r;
    }
  }
}

TEST(CpuKernels, QuantisedDotApproximatesTheFloatDot) {
  const std::size_t n = 576;
  const auto wf = random_floats(n, 3, 0.5f), x = random_floats(n, 4);
  float exact = 0;
  for (std::size_t i = 0; i < n; ++i) exact += wf[i] * x[i];
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    const auto w = make_weight_row(type, wf);
    std::vector<std::byte> act(activation_row_bytes(type, n));
    quantize_activation_row(type, x.data(), act.data(), n);
    // Four-bit weights carry ~1/16 relative error per element; the sum's error grows like sqrt(n).
    EXPECT_NEAR(dot(type, w.data(), act.data(), n), exact, type == DType::kQ8_0 ? 0.1f : 1.5f);
  }
}

TEST(CpuKernels, Fp16Conversions) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(1e6f), 0x7C00);
  EXPECT_EQ(float_to_half(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  for (std::uint32_t h = 0; h < 0x7C00; ++h) {
    ASSERT_EQ(float_to_half(half_to_float(static_cast<std::uint16_t>(h))), h);  // exact round trip
  }
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_float(0x4049), 3.140625f);
}

// Plain attention over contiguous keys, in double.
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<std::vector<float>>& keys,
                                    const std::vector<std::vector<float>>& values, float scale) {
  std::vector<double> scores;
  double max = -1e300;
  for (const auto& k : keys) {
    double s = 0;
    for (std::size_t d = 0; d < q.size(); ++d) s += static_cast<double>(q[d]) * k[d];
    scores.push_back(s * scale);
    max = std::max(max, scores.back());
  }
  double sum = 0;
  for (double& s : scores) sum += (s = std::exp(s - max));
  std::vector<double> out(q.size(), 0.0);
  for (std::size_t j = 0; j < keys.size(); ++j) {
    for (std::size_t d = 0; d < q.size(); ++d) out[d] += scores[j] / sum * values[j][d];
  }
  return out;
}

RC_GTEST_PROP(CpuKernelsProperty, PagedAttentionMatchesContiguousAttention, ()) {
  const auto block_size = *rc::gen::element<std::size_t>(1, 4, 16, 32);
  const auto kv_heads = *rc::gen::inRange<std::size_t>(1, 4);
  const auto group = *rc::gen::element<std::size_t>(1, 3, 4);
  const auto head_dim = *rc::gen::element<std::size_t>(64, 128);
  const auto dtype = *rc::gen::element(DType::kF32, DType::kF16);
  const auto seqs = *rc::gen::inRange<std::size_t>(1, 4);
  const std::size_t heads = kv_heads * group;
  const std::size_t max_len = 70, max_blocks = (max_len + block_size - 1) / block_size;
  const std::size_t num_blocks = seqs * max_blocks;
  const std::size_t elem = dtype == DType::kF32 ? 4 : 2;
  std::vector<std::byte> kpool(num_blocks * block_size * kv_heads * head_dim * elem);
  std::vector<std::byte> vpool(kpool.size());
  PagedKv kv{kpool.data(), vpool.data(), dtype, num_blocks, block_size, kv_heads, head_dim};
  // Scatter each sequence's blocks through the pool in a shuffled order.
  std::vector<std::int32_t> ids(num_blocks);
  for (std::size_t i = 0; i < num_blocks; ++i) ids[i] = static_cast<std::int32_t>(i);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(*rc::gen::arbitrary<std::uint32_t>()));
  std::vector<std::int32_t> tables(ids.begin(), ids.end());
  std::vector<std::size_t> lens;
  std::vector<std::int32_t> token_seq, token_pos;
  for (std::size_t s = 0; s < seqs; ++s) {
    lens.push_back(*rc::gen::inRange<std::size_t>(1, max_len + 1));
    for (std::size_t p = 0; p < lens.back(); ++p) {
      token_seq.push_back(static_cast<std::int32_t>(s));
      token_pos.push_back(static_cast<std::int32_t>(p));
    }
  }
  const std::size_t T = token_seq.size();
  TokenLayout layout{tables.data(), max_blocks, token_seq.data(), token_pos.data(), T};
  const auto k_new = random_floats(T * kv_heads * head_dim, 11), v_new = random_floats(T * kv_heads * head_dim, 12);
  const auto q = random_floats(T * heads * head_dim, 13);
  kv_append({kv, layout, k_new.data(), v_new.data()});
  std::vector<float> out(T * heads * head_dim);
  ThreadPool pool(2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  paged_attention({kv, layout, q.data(), out.data(), heads, scale}, pool);

  auto stored = [&](const std::vector<float>& src, std::size_t t, std::size_t h) {
    std::vector<float> row(src.begin() + static_cast<long>((t * kv_heads + h) * head_dim),
                           src.begin() + static_cast<long>((t * kv_heads + h + 1) * head_dim));
    if (dtype == DType::kF16) for (float& x : row) x = half_to_float(float_to_half(x));
    return row;
  };
  for (std::size_t t = 0; t < T; ++t) {
    const std::size_t first = t - static_cast<std::size_t>(token_pos[t]);  // this sequence's first token
    for (std::size_t h = 0; h < heads; ++h) {
      std::vector<std::vector<float>> keys, values;
      for (std::size_t j = first; j <= t; ++j) {
        keys.push_back(stored(k_new, j, h / group));
        values.push_back(stored(v_new, j, h / group));
      }
      std::vector<float> qh(q.begin() + static_cast<long>((t * heads + h) * head_dim),
                            q.begin() + static_cast<long>((t * heads + h + 1) * head_dim));
      const auto expected = naive_attention(qh, keys, values, scale);
      for (std::size_t d = 0; d < head_dim; ++d) {
        const float got = out[(t * heads + h) * head_dim + d];
        RC_ASSERT(!std::isnan(got));
        // fp16 mode rounds queries and probabilities to fp16 (as ggml does).
        RC_ASSERT(std::fabs(got - expected[d]) <= (dtype == DType::kF32 ? 1e-4 : 1e-2) * (1 + std::fabs(expected[d])));
      }
    }
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu
