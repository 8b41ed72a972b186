// kernels/cpu/*: every ISA level this binary has (isa_kernels.h) against the scalar level, bit for
// bit, on the same params structs; the quantised matmul against its arithmetic written out from
// the formats; the scalar level against independent references (dot products
// of the dequantised rows in double, plain contiguous attention in double, expf); activation
// quantisation's per-element error; fp16 conversions; the run-time choice of level. Levels the
// CPU lacks are skipped with a message naming the level and the CPU.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/isa_kernels.h"
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
    case DType::kF16: case DType::kBF16: {
      auto* h = reinterpret_cast<std::uint16_t*>(out.data());
      for (std::size_t i = 0; i < x.size(); ++i) h[i] = type == DType::kF16 ? float_to_half(x[i]) : float_to_bf16(x[i]);
      break;
    }
    default: std::memcpy(out.data(), x.data(), out.size()); break;
  }
  return out;
}

std::vector<std::byte> make_weights(DType type, std::size_t rows, std::size_t cols, std::uint32_t seed) {
  std::vector<std::byte> w;
  for (std::size_t r = 0; r < rows; ++r) {
    const auto row = make_weight_row(type, random_floats(cols, seed * 1000 + static_cast<std::uint32_t>(r), 0.5f));
    w.insert(w.end(), row.begin(), row.end());
  }
  return w;
}

constexpr DType kWeightTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kF16, DType::kBF16, DType::kF32};
constexpr DType kQuantTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0};

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---- per-level tests ----

class CpuIsaLevel : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (!cpu_supports(GetParam())) {
      GTEST_SKIP() << "ISA level " << isa_name(GetParam()) << " skipped: this CPU (" << cpu_model_name()
                   << ") lacks it";
    }
  }
  const IsaKernels& level() const { return isa_kernels(GetParam()); }
  static const IsaKernels& scalar() { return isa_kernels(CpuIsa::kScalar); }
  ThreadPool pool_{2};
  std::vector<std::byte> scratch_;
};

TEST_P(CpuIsaLevel, MatmulEqualsTheScalarLevelBitForBit) {
  // 1 token, token counts around the stored-layout pass of 8; an odd number of rows (a partial
  // pool tile).
  const std::size_t rows = 37, cols = 576;
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    for (DType type : kWeightTypes) {
      const auto w = make_weights(type, rows, cols, seed);
      for (std::size_t tokens : {1u, 2u, 3u, 8u, 9u, 17u}) {
        const auto x = random_floats(tokens * cols, 99 + seed, 2.0f);
        std::vector<float> got(tokens * rows), want(tokens * rows);
        matmul({w.data(), type, rows, cols, x.data(), got.data(), tokens}, pool_, scratch_, level());
        matmul({w.data(), type, rows, cols, x.data(), want.data(), tokens}, pool_, scratch_, scalar());
        for (std::size_t i = 0; i < got.size(); ++i) {
          ASSERT_TRUE(same_bits(got[i], want[i])) << "type " << static_cast<int>(type) << " tokens " << tokens
                                                  << " token " << i / rows << " row " << i % rows << ": " << got[i]
                                                  << " vs scalar " << want[i];
        }
      }
    }
  }
}

TEST_P(CpuIsaLevel, MatmulOnTheLevelsPackedWeightsEqualsTheScalarLevelBitForBit) {
  // The level's re-layout of the weight (pack_weight), where it has one: whole groups of rows from
  // it and the rest from the stored rows, at token counts that take every path of the levels'
  // group kernels; row counts around the group size and past several pool tiles, cols of one block
  // and more.
  for (DType type : kWeightTypes) {
    for (std::size_t rows : {5u, 8u, 16u, 37u, 64u, 100u}) {
      for (std::size_t cols : {32u, 576u}) {
        const auto w = make_weights(type, rows, cols, static_cast<std::uint32_t>(rows * cols));
        const std::vector<std::byte> packed = pack_weight(level(), type, w.data(), rows, cols);
        for (std::size_t tokens : {1u, 3u, 6u, 9u}) {  // the group kernels take 1 to 4 tokens at a time
          const auto x = random_floats(tokens * cols, static_cast<std::uint32_t>(7 + rows + tokens), 2.0f);
          std::vector<float> got(tokens * rows), want(tokens * rows);
          matmul({w.data(), type, rows, cols, x.data(), got.data(), tokens, packed.empty() ? nullptr : packed.data()}, pool_,
                 scratch_, level());
          matmul({w.data(), type, rows, cols, x.data(), want.data(), tokens}, pool_, scratch_, scalar());
          for (std::size_t i = 0; i < got.size(); ++i) {
            ASSERT_TRUE(same_bits(got[i], want[i])) << "type " << static_cast<int>(type) << " rows " << rows << " cols "
                                                    << cols << " tokens " << tokens << " row " << i % rows << ": "
                                                    << got[i] << " vs scalar " << want[i];
          }
        }
      }
    }
  }
}

TEST_P(CpuIsaLevel, ActivationQuantisationEqualsTheScalarLevelBitForBit) {
  // Every activation format, with the block scales as floats; blocks of zeros, of one value, of
  // values far apart in magnitude, and ties of the rounding (x · 127 / max|x| at k + 0.5).
  const std::size_t n = 256;
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    std::vector<float> x = random_floats(n, seed, seed % 2 ? 3.0f : 1e-3f);
    std::fill(x.begin(), x.begin() + 32, 0.0f);
    std::fill(x.begin() + 32, x.begin() + 64, -1.5f);
    for (std::size_t j = 64; j < 96; ++j) x[j] = static_cast<float>(j % 7) * (j % 2 ? 1e4f : 1e-4f);
    x[96] = 127.0f;  // its block's scale is exactly 1: the others land on k + 0.5
    for (std::size_t j = 97; j < 128; ++j) x[j] = static_cast<float>(j) - 96.5f;
    for (DType type : kQuantTypes) {
      const std::size_t bytes = activation_row_bytes(type, n);
      std::vector<std::byte> got(bytes), want(bytes);
      std::vector<float> got_d(n / 32), got_s(n / 32), want_d(n / 32), want_s(n / 32);
      level().quantize_activations(type, x.data(), n, got.data(), got_d.data(), got_s.data());
      scalar().quantize_activations(type, x.data(), n, want.data(), want_d.data(), want_s.data());
      ASSERT_EQ(got, want) << "type " << static_cast<int>(type) << " seed " << seed;
      for (std::size_t i = 0; i < n / 32; ++i) {
        ASSERT_TRUE(same_bits(got_d[i], want_d[i]) && same_bits(got_s[i], want_s[i])) << "block " << i;
      }
    }
  }
}

TEST_P(CpuIsaLevel, SeveralWeightsInOneCallEqualEachAlone) {
  // q/k/v and gate/up as the executor runs them: one call, rows of different counts (tiles that
  // straddle two weights), packed and not; every output as the weight's own call gives it.
  const std::size_t cols = 96;
  for (DType type : kWeightTypes) {
    const std::size_t rows[] = {40, 13, 8};
    std::vector<std::vector<std::byte>> w, packed;
    for (std::size_t k = 0; k < 3; ++k) {
      w.push_back(make_weights(type, rows[k], cols, static_cast<std::uint32_t>(k + 1)));
      packed.push_back(pack_weight(level(), type, w[k].data(), rows[k], cols));
    }
    for (std::size_t tokens : {1u, 5u}) {
      const auto x = random_floats(tokens * cols, static_cast<std::uint32_t>(tokens), 2.0f);
      std::vector<std::vector<float>> together(3), alone(3);
      std::vector<MatmulParams> ps;
      for (std::size_t k = 0; k < 3; ++k) {
        together[k].resize(tokens * rows[k]);
        alone[k].resize(tokens * rows[k]);
        ps.push_back({w[k].data(), type, rows[k], cols, x.data(), together[k].data(), tokens,
                      packed[k].empty() ? nullptr : packed[k].data()});
      }
      matmul(std::span<const MatmulParams>(ps), pool_, scratch_, level());
      for (std::size_t k = 0; k < 3; ++k) {
        MatmulParams p = ps[k];
        p.y = alone[k].data();
        matmul(p, pool_, scratch_, level());
        for (std::size_t i = 0; i < alone[k].size(); ++i) {
          ASSERT_TRUE(same_bits(together[k][i], alone[k][i])) << "type " << static_cast<int>(type) << " weight " << k
                                                              << " tokens " << tokens << " element " << i;
        }
      }
    }
  }
}

TEST(CpuIsa, TheX86LevelsPackQ4_1AndQ8_0WeightsAndNothingElse) {
  // The packed path must be reachable where it exists, or the test above proves nothing there.
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (!cpu_supports(isa)) continue;
    const IsaKernels& k = isa_kernels(isa);
    EXPECT_GT(k.weight_pack_bytes(DType::kQ4_1, 16, 64), 0u) << isa_name(isa);
    EXPECT_GT(k.weight_pack_bytes(DType::kQ8_0, 16, 64), 0u) << isa_name(isa);
    EXPECT_EQ(k.weight_pack_bytes(DType::kQ4_0, 16, 64), 0u) << isa_name(isa);
    EXPECT_EQ(k.weight_pack_bytes(DType::kQ4_1, 7, 64), 0u) << isa_name(isa) << ": fewer rows than a group";
  }
  EXPECT_EQ(isa_kernels(CpuIsa::kScalar).weight_pack_bytes(DType::kQ4_1, 16, 64), 0u);
}

// The activation rows a quantised matmul sees, dequantised: q · d per element (and, for Q8_1, the
// block's stored s = fp16(d · Σq), which the Q4_1 dot uses for the minimum's share).
struct DequantisedActivation {
  std::vector<double> a;  // [n]
  std::vector<double> s_error;  // [n / 32] stored s minus d · Σq
};

DequantisedActivation dequantised_activation(DType weight, const float* x, std::size_t n) {
  std::vector<std::byte> act(activation_row_bytes(weight, n));
  quantize_activation_row(weight, x, act.data(), n);
  DequantisedActivation out{std::vector<double>(n), std::vector<double>(n / kQuantBlock, 0.0)};
  for (std::size_t i = 0; i < n / kQuantBlock; ++i) {
    const std::int8_t* qs;
    double d;
    if (weight == DType::kQ4_1) {
      const auto& b = reinterpret_cast<const BlockQ8_1*>(act.data())[i];
      qs = b.qs;
      d = half_to_float(b.d);
      long sum = 0;
      for (std::size_t j = 0; j < kQuantBlock; ++j) sum += qs[j];
      out.s_error[i] = half_to_float(b.s) - d * static_cast<double>(sum);
    } else {
      const auto& b = reinterpret_cast<const BlockQ8_0*>(act.data())[i];
      qs = b.qs;
      d = half_to_float(b.d);
    }
    for (std::size_t j = 0; j < kQuantBlock; ++j) out.a[i * kQuantBlock + j] = qs[j] * d;
  }
  return out;
}

// isa_kernels.h's matmul arithmetic written out from the formats alone: per block the exact
// integer Σ w·y, acc = fma(d_w·d_y, Σ, acc) block after block; Q4_1 also mins = fma(m_w, s_y, mins)
// and y = acc + mins.
float block_sum_reference(DType type, const std::byte* w, const std::byte* act, std::size_t cols) {
  float acc = 0.0f, mins = 0.0f;
  for (std::size_t i = 0; i < cols / kQuantBlock; ++i) {
    long sum = 0;
    float dw, dy;
    if (type == DType::kQ4_1) {
      const auto& b = reinterpret_cast<const BlockQ4_1*>(w)[i];
      const auto& y = reinterpret_cast<const BlockQ8_1*>(act)[i];
      for (std::size_t j = 0; j < 16; ++j) sum += (b.qs[j] & 0x0F) * y.qs[j] + (b.qs[j] >> 4) * y.qs[j + 16];
      dw = half_to_float(b.d), dy = half_to_float(y.d);
      mins = std::fma(half_to_float(b.m), half_to_float(y.s), mins);
    } else {
      const auto& y = reinterpret_cast<const BlockQ8_0*>(act)[i];
      if (type == DType::kQ8_0) {
        const auto& b = reinterpret_cast<const BlockQ8_0*>(w)[i];
        for (std::size_t j = 0; j < 32; ++j) sum += b.qs[j] * y.qs[j];
        dw = half_to_float(b.d);
      } else {
        const auto& b = reinterpret_cast<const BlockQ4_0*>(w)[i];
        for (std::size_t j = 0; j < 16; ++j) sum += ((b.qs[j] & 0x0F) - 8) * y.qs[j] + ((b.qs[j] >> 4) - 8) * y.qs[j + 16];
        dw = half_to_float(b.d);
      }
      dy = half_to_float(y.d);
    }
    acc = std::fma(dw * dy, static_cast<float>(sum), acc);
  }
  return acc + mins;
}

TEST_P(CpuIsaLevel, QuantisedMatmulIsExactBlockSumsFusedBlockByBlock) {
  // Bit for bit, on the stored and (where the level has one) the packed layout, at row counts
  // around both x86 group sizes (8 and 16) and token counts that take every path.
  for (DType type : kQuantTypes) {
    for (std::size_t rows : {3u, 16u, 24u, 40u}) {
      const std::size_t cols = 96;
      const auto w = make_weights(type, rows, cols, static_cast<std::uint32_t>(31 + rows));
      const std::vector<std::byte> packed = pack_weight(level(), type, w.data(), rows, cols);
      for (std::size_t tokens : {1u, 5u}) {
        const auto x = random_floats(tokens * cols, static_cast<std::uint32_t>(rows + tokens), 3.0f);
        std::vector<std::byte> act(activation_row_bytes(type, cols) * tokens);
        for (std::size_t t = 0; t < tokens; ++t) {
          quantize_activation_row(type, x.data() + t * cols, act.data() + t * activation_row_bytes(type, cols), cols);
        }
        for (const void* pw : {static_cast<const void*>(nullptr), static_cast<const void*>(packed.data())}) {
          if (pw != nullptr && packed.empty()) continue;
          std::vector<float> got(tokens * rows);
          matmul({w.data(), type, rows, cols, x.data(), got.data(), tokens, pw}, pool_, scratch_, level());
          for (std::size_t t = 0; t < tokens; ++t) {
            for (std::size_t r = 0; r < rows; ++r) {
              const float want = block_sum_reference(type, w.data() + r * row_bytes(type, cols),
                                                     act.data() + t * activation_row_bytes(type, cols), cols);
              ASSERT_TRUE(same_bits(got[t * rows + r], want))
                  << "type " << static_cast<int>(type) << " rows " << rows << " token " << t << " row " << r
                  << (pw ? " (packed)" : "") << ": " << got[t * rows + r] << " vs " << want;
            }
          }
        }
      }
    }
  }
}

TEST_P(CpuIsaLevel, QuantisedMatmulEqualsTheDotOfTheDequantisedRows) {
  // The reference shares nothing with the kernels but the formats: dequantize_row for the weights,
  // q · d for the activations, a sum in double. The kernels' float rounding stays far below
  // 1e-5 of Σ|w·a| (about 20 roundings of 2^-24); a wrong lane, block, nibble or scale is not.
  const std::size_t rows = 13, cols = 576;
  for (std::uint32_t seed = 1; seed <= 50; ++seed) {
    for (DType type : kQuantTypes) {
      const auto w = make_weights(type, rows, cols, seed);
      const std::size_t tokens = 1 + seed % 11;
      const auto x = random_floats(tokens * cols, 7 * seed, 2.0f);
      std::vector<float> y(tokens * rows);
      matmul({w.data(), type, rows, cols, x.data(), y.data(), tokens}, pool_, scratch_, level());
      std::vector<float> wf(cols);
      for (std::size_t t = 0; t < tokens; ++t) {
        const DequantisedActivation a = dequantised_activation(type, x.data() + t * cols, cols);
        for (std::size_t r = 0; r < rows; ++r) {
          const auto* row = w.data() + r * row_bytes(type, cols);
          dequantize_row(type, row, wf.data(), cols);
          double ref = 0, magnitude = 0;
          for (std::size_t j = 0; j < cols; ++j) {
            ref += wf[j] * a.a[j];
            magnitude += std::fabs(wf[j] * a.a[j]);
          }
          if (type == DType::kQ4_1) {
            for (std::size_t i = 0; i < cols / kQuantBlock; ++i) {
              ref += half_to_float(reinterpret_cast<const BlockQ4_1*>(row)[i].m) * a.s_error[i];
            }
          }
          ASSERT_NEAR(y[t * rows + r], ref, 1e-5 * magnitude)
              << "seed " << seed << " type " << static_cast<int>(type) << " tokens " << tokens << " t " << t << " r " << r;
        }
      }
    }
  }
}

TEST_P(CpuIsaLevel, FloatMatmulEqualsTheDoubleDot) {
  // Float weights (F32, F16, BF16; head-like lengths with and without a tail past 64) against a
  // double sum of the widened weights: a summation in another order stays within 1e-6 of Σ|w·x|.
  for (std::size_t cols : {64u, 200u, 576u}) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (std::uint32_t seed = 1; seed <= 10; ++seed) {
        const std::size_t rows = 5, tokens = 3;
        const auto w = make_weights(type, rows, cols, seed);
        const auto x = random_floats(tokens * cols, seed + 50);
        std::vector<float> y(tokens * rows), wf(cols);
        matmul({w.data(), type, rows, cols, x.data(), y.data(), tokens}, pool_, scratch_, level());
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t r = 0; r < rows; ++r) {
            dequantize_row(type, w.data() + r * row_bytes(type, cols), wf.data(), cols);
            double ref = 0, magnitude = 0;
            for (std::size_t j = 0; j < cols; ++j) {
              ref += static_cast<double>(wf[j]) * x[t * cols + j];
              magnitude += std::fabs(static_cast<double>(wf[j]) * x[t * cols + j]);
            }
            ASSERT_NEAR(y[t * rows + r], ref, 1e-6 * magnitude) << "cols " << cols << " type " << static_cast<int>(type);
          }
        }
      }
    }
  }
}

TEST_P(CpuIsaLevel, MatmulResultsDoNotDependOnTheBatch) {
  // A token's outputs are bit-identical whether it is alone or one of many (batch invariance).
  const std::size_t rows = 64, cols = 576;
  for (DType type : kQuantTypes) {
    const auto w = make_weights(type, rows, cols, 7);
    const auto x = random_floats(11 * cols, 5);
    std::vector<float> all(11 * rows), one(rows);
    matmul({w.data(), type, rows, cols, x.data(), all.data(), 11}, pool_, scratch_, level());
    for (std::size_t t = 0; t < 11; ++t) {
      matmul({w.data(), type, rows, cols, x.data() + t * cols, one.data(), 1}, pool_, scratch_, level());
      for (std::size_t r = 0; r < rows; ++r) ASSERT_TRUE(same_bits(one[r], all[t * rows + r])) << "token " << t << " row " << r;
    }
  }
}

TEST_P(CpuIsaLevel, SiluMulEqualsTheScalarLevelAndExpf) {
  // Lengths with and without a tail past the 16-lane vectors; inputs wide enough that e^-x leaves
  // the range where 2^n is applied in one multiplication (|n| > 126) and saturates (|n| > 192).
  for (std::size_t n : {7u, 16u, 40u, 1536u}) {
    for (std::uint32_t seed = 1; seed <= 10; ++seed) {
      auto gate = random_floats(n, seed, seed % 2 ? 4.0f : 60.0f);
      if (n > 3) gate[0] = 100.0f, gate[1] = -100.0f, gate[2] = -95.0f, gate[3] = 140.0f;
      const auto up = random_floats(n, seed + 100);
      std::vector<float> got(n), want(n);
      level().silu_mul(gate.data(), up.data(), got.data(), n);
      scalar().silu_mul(gate.data(), up.data(), want.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same_bits(got[i], want[i])) << "n " << n << " i " << i << " gate " << gate[i];
        const double exact = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
        ASSERT_NEAR(got[i], exact, 4e-7 * std::fabs(exact) + 1e-30) << "gate " << gate[i];
      }
    }
  }
}

// A random paged layout: sequences of random lengths whose blocks are scattered through the pool.
struct RandomPagedBatch {
  std::size_t kv_heads, group, heads, head_dim, block_size;
  DType dtype;
  std::vector<std::byte> kpool, vpool;
  PagedKv kv;
  std::vector<std::int32_t> tables, token_seq, token_pos;
  std::size_t max_blocks;
  std::vector<float> k_new, v_new, q;
  TokenLayout layout() const { return {tables.data(), max_blocks, token_seq.data(), token_pos.data(), token_seq.size()}; }
};

RandomPagedBatch random_paged_batch(std::vector<DType> dtypes, std::vector<std::size_t> head_dims) {
  RandomPagedBatch b;
  b.block_size = *rc::gen::element<std::size_t>(1, 4, 16, 32);
  b.kv_heads = *rc::gen::inRange<std::size_t>(1, 4);
  b.group = *rc::gen::element<std::size_t>(1, 3, 4);
  b.head_dim = *rc::gen::elementOf(head_dims);
  b.dtype = *rc::gen::elementOf(dtypes);
  b.heads = b.kv_heads * b.group;
  const auto seqs = *rc::gen::inRange<std::size_t>(1, 4);
  const std::size_t max_len = 70;
  b.max_blocks = (max_len + b.block_size - 1) / b.block_size;
  const std::size_t num_blocks = seqs * b.max_blocks;
  const std::size_t elem = b.dtype == DType::kF32 ? 4 : 2;
  b.kpool.resize(num_blocks * b.block_size * b.kv_heads * b.head_dim * elem);
  b.vpool.resize(b.kpool.size());
  b.kv = {b.kpool.data(), b.vpool.data(), b.dtype, num_blocks, b.block_size, b.kv_heads, b.head_dim};
  b.tables.resize(num_blocks);
  for (std::size_t i = 0; i < num_blocks; ++i) b.tables[i] = static_cast<std::int32_t>(i);
  std::shuffle(b.tables.begin(), b.tables.end(), std::mt19937(*rc::gen::arbitrary<std::uint32_t>()));
  for (std::size_t s = 0; s < seqs; ++s) {
    const auto len = *rc::gen::inRange<std::size_t>(1, max_len + 1);
    for (std::size_t p = 0; p < len; ++p) {
      b.token_seq.push_back(static_cast<std::int32_t>(s));
      b.token_pos.push_back(static_cast<std::int32_t>(p));
    }
  }
  const std::size_t T = b.token_seq.size();
  const auto seed = *rc::gen::arbitrary<std::uint32_t>();
  b.k_new = random_floats(T * b.kv_heads * b.head_dim, seed);
  b.v_new = random_floats(T * b.kv_heads * b.head_dim, seed + 1);
  b.q = random_floats(T * b.heads * b.head_dim, seed + 2, 2.0f);
  kv_append({b.kv, b.layout(), b.k_new.data(), b.v_new.data()});
  return b;
}

TEST_P(CpuIsaLevel, PagedAttentionEqualsTheScalarLevelBitForBit) {
  const IsaKernels& isa = level();
  ThreadPool& pool = pool_;
  EXPECT_TRUE(rc::check("paged attention equals the scalar level", [&] {
    const RandomPagedBatch b = random_paged_batch({DType::kF16, DType::kF32, DType::kBF16}, {8, 64, 80, 128});
    const float scale = 1.0f / std::sqrt(static_cast<float>(b.head_dim));
    std::vector<float> got(b.q.size()), want(b.q.size());
    paged_attention({b.kv, b.layout(), b.q.data(), got.data(), b.heads, scale}, pool, isa);
    paged_attention({b.kv, b.layout(), b.q.data(), want.data(), b.heads, scale}, pool, isa_kernels(CpuIsa::kScalar));
    for (std::size_t i = 0; i < got.size(); ++i) {
      RC_ASSERT(!std::isnan(got[i]));
      RC_ASSERT(same_bits(got[i], want[i]));
    }
  }));
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

TEST_P(CpuIsaLevel, PagedAttentionMatchesContiguousAttention) {
  const IsaKernels& isa = level();
  ThreadPool& pool = pool_;
  EXPECT_TRUE(rc::check("paged attention matches contiguous attention in double", [&] {
    const RandomPagedBatch b = random_paged_batch({DType::kF32, DType::kF16}, {64, 128});
    const std::size_t T = b.token_seq.size(), D = b.head_dim;
    std::vector<float> out(b.q.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    paged_attention({b.kv, b.layout(), b.q.data(), out.data(), b.heads, scale}, pool, isa);
    auto stored = [&](const std::vector<float>& src, std::size_t t, std::size_t h) {
      std::vector<float> row(src.begin() + static_cast<long>((t * b.kv_heads + h) * D),
                             src.begin() + static_cast<long>((t * b.kv_heads + h + 1) * D));
      if (b.dtype == DType::kF16) for (float& x : row) x = half_to_float(float_to_half(x));
      return row;
    };
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t first = t - static_cast<std::size_t>(b.token_pos[t]);  // this sequence's first token
      for (std::size_t h = 0; h < b.heads; ++h) {
        std::vector<std::vector<float>> keys, values;
        for (std::size_t j = first; j <= t; ++j) {
          keys.push_back(stored(b.k_new, j, h / b.group));
          values.push_back(stored(b.v_new, j, h / b.group));
        }
        std::vector<float> qh(b.q.begin() + static_cast<long>((t * b.heads + h) * D),
                              b.q.begin() + static_cast<long>((t * b.heads + h + 1) * D));
        const auto expected = naive_attention(qh, keys, values, scale);
        for (std::size_t d = 0; d < D; ++d) {
          const float got = out[(t * b.heads + h) * D + d];
          RC_ASSERT(!std::isnan(got));
          // fp16 mode rounds queries and the value accumulator to fp16 (as ggml does).
          RC_ASSERT(std::fabs(got - expected[d]) <= (b.dtype == DType::kF32 ? 1e-4 : 2e-2) * (1 + std::fabs(expected[d])));
        }
      }
    }
  }));
}

std::string level_name(const ::testing::TestParamInfo<CpuIsa>& info) {
  std::string name = isa_name(info.param);
  for (char& c : name) c = c == '-' ? '_' : c;
  return name;
}

INSTANTIATE_TEST_SUITE_P(EveryCompiledLevel, CpuIsaLevel, ::testing::ValuesIn(compiled_isas()), level_name);

// ---- level-independent ----

TEST(CpuKernels, ActivationQuantisationRoundsEachElementToTheNearestStep) {
  // Q8_0 / Q8_1: d = max|x| / 127 (as fp16), every element within half a step of q · d, |q| <= 127,
  // the block's extreme at ±127, and Q8_1's s = fp16(d · Σq).
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    const auto x = random_floats(64, seed, seed % 3 ? 1.0f : 1e-3f);
    std::vector<BlockQ8_1> q1(2);
    std::vector<BlockQ8_0> q0(2);
    quantize_row_q8_1(x.data(), q1.data(), 64);
    quantize_row_q8_0(x.data(), q0.data(), 64);
    for (std::size_t i = 0; i < 2; ++i) {
      float amax = 0;
      for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[i * 32 + j]));
      const float d = amax / 127.0f;
      ASSERT_EQ(q0[i].d, float_to_half(d));
      ASSERT_EQ(q1[i].d, float_to_half(d));
      int sum = 0, extreme = 0;
      for (std::size_t j = 0; j < 32; ++j) {
        ASSERT_EQ(q0[i].qs[j], q1[i].qs[j]);
        ASSERT_LE(std::abs(q0[i].qs[j]), 127);
        ASSERT_LE(std::fabs(x[i * 32 + j] - q0[i].qs[j] * d), 0.5f * d * (1 + 1e-5f)) << "seed " << seed << " j " << j;
        sum += q0[i].qs[j];
        extreme = std::max(extreme, std::abs(static_cast<int>(q0[i].qs[j])));
      }
      ASSERT_EQ(extreme, 127);
      ASSERT_EQ(q1[i].s, float_to_half(d * static_cast<float>(sum)));
    }
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

TEST(CpuIsaChoice, TheForcedOrBestSupportedLevelIsActive) {
  const char* forced = std::getenv("TIERGATE_CPU_ISA");
  if (forced != nullptr && *forced != '\0') {
    EXPECT_STREQ(isa_name(active_isa()), forced);
  } else {
    CpuIsa best = CpuIsa::kScalar;
    for (CpuIsa isa : compiled_isas()) best = cpu_supports(isa) ? isa : best;
    EXPECT_EQ(active_isa(), best);
  }
  EXPECT_TRUE(cpu_supports(active_isa()));
  EXPECT_NE(describe_cpu().find(isa_name(active_isa())), std::string::npos);
}

TEST(CpuIsaChoice, AnUnknownLevelNameIsRefusedWithTheAcceptedNames) {
  EXPECT_EQ(parse_isa("scalar"), CpuIsa::kScalar);
  try {
    parse_isa("avx3");
    FAIL() << "avx3 accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("scalar|"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu
