// kernels/cuda/{elementwise,dequant,gemm,sampling}: every GPU kernel against its CPU reference over
// the shapes of the models tiergate serves (SmolLM2-135M: hidden 576, 9/3 heads of 64, ffn 1536,
// vocab 49152; a Llama-1B-like: hidden 2048, 32/8 heads of 64, ffn 8192, vocab 128256), with
// atol/rtol or bit-exact checks and NaN checks. Argument validation is pure host code and runs
// everywhere; everything else skips without a GPU (TG_REQUIRE_GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/dequant.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/sampling.h"
#include "kernels/sampling.h"
#include "kernels/tensor_type.h"
#include "tests/kernels/gpu_test_support.h"
#include "tests/kernels/random_data.h"

namespace tiergate::kernels::cuda {
namespace {

// ---- helpers ----

using testing::expect_bits_equal;
using testing::float_bits;
using testing::random_floats;
using testing::to_device;
using testing::to_host;

// Compares element by element: |got - want| <= atol + rtol·|want|, NaN only where want is NaN.
// Reports the count of bad elements and the first few with their index, so a failure names the
// row/column that went wrong.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0;
  double worst = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
    } else if (std::isinf(w) || std::isinf(g)) {
      ok = g == w;
    } else {
      const double err = std::fabs(g - w);
      worst = std::max(worst, err / (atol + rtol * std::fabs(w)));
      ok = err <= atol + rtol * std::fabs(w);
    }
    if (!ok && bad++ < 5) first << "\n  [" << i << "] got " << g << " want " << w;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off (atol " << atol << ", rtol "
                     << rtol << ")" << first.str();
  ::testing::Test::RecordProperty("worst_error_over_tolerance", std::to_string(worst));
}

// ---- argument validation (no GPU needed) ----

TEST(CudaOpsValidation, RopeShapes) {
  EXPECT_EQ(rope_error(7, 9, 64, 64, 10000.0f), "");
  EXPECT_EQ(rope_error(7, 9, 64, 32, 10000.0f), "");
  EXPECT_NE(rope_error(7, 9, 64, 0, 10000.0f), "");
  EXPECT_NE(rope_error(7, 9, 64, 33, 10000.0f), "");    // odd
  EXPECT_NE(rope_error(7, 9, 64, 66, 10000.0f), "");    // > head_dim
  EXPECT_NE(rope_error(7, 9, 63, 62, 10000.0f), "");    // odd head_dim breaks pair alignment
  EXPECT_NE(rope_error(7, 0, 64, 64, 10000.0f), "");
  EXPECT_NE(rope_error(7, 9, 64, 64, 0.0f), "");
  EXPECT_NE(rope_error(7, 9, 64, 64, NAN), "");
  EXPECT_NE(rope_error(7, 9, 2048, 2048, 10000.0f), "");  // beyond the CPU reference's cache
}

TEST(CudaOpsValidation, RmsNormEmbeddingConvertDequant) {
  EXPECT_EQ(rms_norm_error(7, 576, 1e-5f), "");
  EXPECT_EQ(rms_norm_error(0, 0, 1e-5f), "");
  EXPECT_NE(rms_norm_error(7, 0, 1e-5f), "");
  EXPECT_NE(rms_norm_error(7, 576, -1.0f), "");
  EXPECT_NE(rms_norm_error(7, 576, NAN), "");
  EXPECT_EQ(embedding_lookup_error(DType::kF16, 49152, 576), "");
  EXPECT_EQ(embedding_lookup_error(DType::kBF16, 49152, 576), "");
  EXPECT_EQ(embedding_lookup_error(DType::kF32, 49152, 576), "");
  EXPECT_NE(embedding_lookup_error(DType::kQ8_0, 49152, 576), "");
  EXPECT_NE(embedding_lookup_error(DType::kF16, 0, 576), "");
  EXPECT_EQ(convert_activations_error(DType::kF16), "");
  EXPECT_EQ(convert_activations_error(DType::kBF16), "");
  EXPECT_NE(convert_activations_error(DType::kF32), "");
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    EXPECT_EQ(dequantize_rows_error(t, 576, DType::kF16), "");
    EXPECT_NE(dequantize_rows_error(t, 577, DType::kF16), "");
    EXPECT_NE(dequantize_rows_error(t, 576, DType::kF32), "");
  }
  EXPECT_EQ(dequantize_rows_error(DType::kF32, 5, DType::kBF16), "");
}

TEST(CudaOpsValidation, GemmParams) {
  int dummy = 0;
  GemmParams p;
  p.x = p.w = p.y = &dummy;
  p.tokens = 7;
  p.in = 576;
  p.out = 1536;
  EXPECT_EQ(gemm_error(p), "");
  GemmParams q = p;
  q.w_type = DType::kBF16;
  EXPECT_NE(gemm_error(q), "");  // mixed fp16 / bf16
  q = p;
  q.y_type = DType::kBF16;
  EXPECT_NE(gemm_error(q), "");  // output neither F32 nor the input type
  q = p;
  q.x_type = q.w_type = DType::kQ4_0;
  EXPECT_NE(gemm_error(q), "");
  q = p;
  q.tokens = 0;
  EXPECT_NE(gemm_error(q), "");
  q = p;
  q.in = std::size_t{1} << 31;
  EXPECT_NE(gemm_error(q), "");
  q = p;
  q.y = nullptr;
  EXPECT_NE(gemm_error(q), "");
}

// A batch of `rows` × `vocab` over single host objects: for checks that read only the shape.
struct ShapeOnlySamplingBatch {
  float logits = 0;
  SamplingRowParams params;
  std::int32_t token = 0;
  SamplingBatch batch(std::int32_t rows, std::int32_t vocab) {
    SamplingBatch b;
    b.logits = &logits;
    b.params = &params;
    b.tokens = &token;
    b.rows = rows;
    b.vocab = vocab;
    return b;
  }
};

TEST(CudaOpsValidation, SamplingBatch) {
  ShapeOnlySamplingBatch shape;
  const SamplingBatch b = shape.batch(1, 128256);
  EXPECT_EQ(sampling_error(b), "");
  EXPECT_EQ(sampling_workspace_bytes(3, 128256), 3u * 128256u * 4u);
  EXPECT_EQ(sampling_workspace_bytes(0, 128256), 0u);
  SamplingBatch c = b;
  c.vocab = 0;
  EXPECT_NE(sampling_error(c), "");
  c.vocab = kMaxSamplingVocab + 1;
  EXPECT_NE(sampling_error(c), "");
  c = b;
  c.tokens = nullptr;
  EXPECT_NE(sampling_error(c), "");
  c.rows = 0;
  EXPECT_EQ(sampling_error(c), "");  // nothing to do, nothing to check
}

// ---- elementwise ----

TEST(CudaOps, RmsNormMatchesCpu) {
  TG_REQUIRE_GPU();
  Stream stream;
  for (std::size_t rows : {1u, 7u, 64u}) {
    for (std::size_t n : {576u, 2048u, 8192u, 100u, 3u, 1u}) {
      for (float eps : {1e-5f, 1e-6f}) {
        const auto x = random_floats(rows * n, static_cast<std::uint32_t>(rows * 131 + n), 2.0f);
        const auto w = random_floats(n, static_cast<std::uint32_t>(n + 7), 0.5f);
        std::vector<float> want(rows * n);
        cpu::rms_norm(x.data(), w.data(), want.data(), rows, n, eps);
        DeviceBuffer dx = to_device(x, stream), dw = to_device(w, stream), dout(rows * n * sizeof(float));
        const std::string what = "rms_norm rows " + std::to_string(rows) + " n " + std::to_string(n) + " eps " + std::to_string(eps);
        ASSERT_TRUE(rms_norm(dx.as<float>(), dw.as<float>(), dout.as<float>(), rows, n, eps, stream.handle()).ok()) << what;
        // In place too (out aliases x), as the decoder does for the final norm.
        ASSERT_TRUE(rms_norm(dx.as<float>(), dw.as<float>(), dx.as<float>(), rows, n, eps, stream.handle()).ok()) << what;
        stream.synchronize();
        expect_close(to_host<float>(dout, rows * n, stream), want, 1e-6, 1e-5, what);
        expect_close(to_host<float>(dx, rows * n, stream), want, 1e-6, 1e-5, what + " in place");
      }
    }
  }
}

TEST(CudaOps, RmsNormUnalignedRowsTakeTheScalarPath) {
  TG_REQUIRE_GPU();
  Stream stream;
  const std::size_t rows = 5, n = 576;
  const auto x = random_floats(rows * n + 1, 11, 1.0f);
  const auto w = random_floats(n + 1, 12, 1.0f);
  std::vector<float> want(rows * n);
  cpu::rms_norm(x.data() + 1, w.data() + 1, want.data(), rows, n, 1e-5f);
  DeviceBuffer dx = to_device(x, stream), dw = to_device(w, stream), dout((rows * n + 1) * sizeof(float));
  ASSERT_TRUE(rms_norm(dx.as<float>() + 1, dw.as<float>() + 1, dout.as<float>() + 1, rows, n, 1e-5f, stream.handle()).ok());
  stream.synchronize();
  auto got = to_host<float>(dout, rows * n + 1, stream);
  got.erase(got.begin());
  expect_close(got, want, 1e-6, 1e-5, "rms_norm with 4-byte-aligned rows");
}

TEST(CudaOps, RopeMatchesCpu) {
  TG_REQUIRE_GPU();
  Stream stream;
  struct Case {
    std::size_t heads, head_dim, rope_dims;
    float base;
  };
  const Case cases[] = {
      {9, 64, 64, 100000.0f},   // SmolLM2 q
      {3, 64, 64, 100000.0f},   // SmolLM2 k
      {32, 64, 64, 500000.0f},  // Llama-1B-like q
      {8, 64, 64, 500000.0f},   // Llama-1B-like k
      {4, 128, 128, 10000.0f},  // head_dim 128
      {5, 64, 32, 10000.0f},    // partial rotation: the upper half of each head stays put
      {2, 80, 2, 10000.0f},     // a single pair
  };
  for (const Case& c : cases) {
    for (std::size_t tokens : {1u, 7u, 300u}) {
      const std::size_t n = tokens * c.heads * c.head_dim;
      const auto x = random_floats(n, static_cast<std::uint32_t>(n + c.rope_dims), 1.0f);
      std::vector<int> positions(tokens);
      std::mt19937 rng(static_cast<std::uint32_t>(tokens));
      for (std::size_t t = 0; t < tokens; ++t) positions[t] = t == 0 ? 0 : static_cast<int>(rng() % 131072);
      if (tokens == 300) std::iota(positions.begin(), positions.begin() + 100, 4000);  // a prefill run
      std::vector<float> want = x;
      cpu::rope(want.data(), positions.data(), tokens, c.heads, c.head_dim, c.rope_dims, c.base);
      DeviceBuffer dx = to_device(x, stream), dpos = to_device(positions, stream);
      const std::string what = "rope tokens " + std::to_string(tokens) + " heads " + std::to_string(c.heads) + " head_dim " +
                               std::to_string(c.head_dim) + " rope_dims " + std::to_string(c.rope_dims);
      ASSERT_TRUE(rope(dx.as<float>(), dpos.as<int>(), tokens, c.heads, c.head_dim, c.rope_dims, c.base, stream.handle()).ok())
          << what;
      stream.synchronize();
      const auto got = to_host<float>(dx, n, stream);
      // |x| ~ 1: cos/sin within an ulp or two of glibc's give errors of a few 1e-7.
      expect_close(got, want, 2e-6, 1e-5, what);
      // The unrotated tail of every head is untouched, bit for bit.
      std::vector<float> got_tail, want_tail;
      for (std::size_t h = 0; h < tokens * c.heads; ++h) {
        for (std::size_t d = c.rope_dims; d < c.head_dim; ++d) {
          got_tail.push_back(got[h * c.head_dim + d]);
          want_tail.push_back(x[h * c.head_dim + d]);
        }
      }
      expect_bits_equal(float_bits(got_tail), float_bits(want_tail), what + " (unrotated dims)");
    }
  }
}

TEST(CudaOps, SiluMulMatchesCpu) {
  TG_REQUIRE_GPU();
  Stream stream;
  for (std::size_t n : {1536u * 7u, 8192u * 3u, 1536u * 300u, 17u, 1u}) {
    auto gate = random_floats(n, static_cast<std::uint32_t>(n), 3.0f);
    const auto up = random_floats(n, static_cast<std::uint32_t>(n + 1), 1.0f);
    const float extremes[] = {-100.0f, 100.0f, 0.0f, -0.0f, -87.0f, 88.0f, 1e-30f};
    for (std::size_t i = 0; i < std::min<std::size_t>(n, 7); ++i) gate[i] = extremes[i];
    std::vector<float> want(n);
    cpu::silu_mul(gate.data(), up.data(), want.data(), n);
    DeviceBuffer dg = to_device(gate, stream), du = to_device(up, stream), dout(n * sizeof(float));
    ASSERT_TRUE(silu_mul(dg.as<float>(), du.as<float>(), dout.as<float>(), n, stream.handle()).ok());
    stream.synchronize();
    expect_close(to_host<float>(dout, n, stream), want, 1e-30, 4e-6, "silu_mul n " + std::to_string(n));
  }
}

TEST(CudaOps, AddInplaceIsExact) {
  TG_REQUIRE_GPU();
  Stream stream;
  for (std::size_t n : {576u * 7u, 2048u * 300u, 1u, 1000003u}) {
    const auto x = random_floats(n, 1, 1.0f), y = random_floats(n, 2, 1.0f);
    std::vector<float> want = x;
    cpu::add_inplace(want.data(), y.data(), n);
    DeviceBuffer dx = to_device(x, stream), dy = to_device(y, stream);
    ASSERT_TRUE(add_inplace(dx.as<float>(), dy.as<float>(), n, stream.handle()).ok());
    stream.synchronize();
    expect_bits_equal(float_bits(to_host<float>(dx, n, stream)), float_bits(want), "add_inplace n " + std::to_string(n));
  }
}

TEST(CudaOps, EmbeddingLookupMatchesDequantizeRow) {
  TG_REQUIRE_GPU();
  Stream stream;
  struct Case {
    std::size_t vocab, dim;
  };
  for (const Case c : {Case{49152, 576}, Case{1000, 2048}, Case{3, 5}}) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      const auto values = random_floats(c.vocab * c.dim, static_cast<std::uint32_t>(c.dim), 0.05f);
      std::vector<std::byte> table(row_bytes(type, c.dim) * c.vocab);
      for (std::size_t i = 0; i < values.size(); ++i) {
        if (type == DType::kF32) std::memcpy(table.data() + 4 * i, &values[i], 4);
        const std::uint16_t h = type == DType::kF16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
        if (type != DType::kF32) std::memcpy(table.data() + 2 * i, &h, 2);
      }
      const std::vector<std::int32_t> ids = {0, static_cast<std::int32_t>(c.vocab - 1), static_cast<std::int32_t>(c.vocab / 2),
                                             0, static_cast<std::int32_t>(c.vocab), -1};  // the last two are out of range
      std::vector<float> want(ids.size() * c.dim, std::numeric_limits<float>::quiet_NaN());
      for (std::size_t t = 0; t < ids.size(); ++t) {
        if (ids[t] < 0 || static_cast<std::size_t>(ids[t]) >= c.vocab) continue;
        cpu::dequantize_row(type, table.data() + row_bytes(type, c.dim) * static_cast<std::size_t>(ids[t]),
                            want.data() + t * c.dim, c.dim);
      }
      DeviceBuffer dtable = to_device(table, stream), dids = to_device(ids, stream), dout(want.size() * sizeof(float));
      const std::string what = "embedding type " + std::to_string(static_cast<int>(type)) + " vocab " + std::to_string(c.vocab) +
                               " dim " + std::to_string(c.dim);
      ASSERT_TRUE(embedding_lookup(type, dtable.get(), c.vocab, c.dim, dids.as<std::int32_t>(), ids.size(),
                                   dout.as<float>(), stream.handle()).ok())
          << what;
      stream.synchronize();
      const auto got = to_host<float>(dout, want.size(), stream);
      // In-range rows bit-exact; out-of-range rows all NaN.
      expect_close(got, want, 0, 0, what);
    }
  }
}

TEST(CudaOps, ConvertActivationsIsBitExact) {
  TG_REQUIRE_GPU();
  Stream stream;
  auto x = random_floats(2048 * 7, 5, 4.0f);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, std::numeric_limits<float>::quiet_NaN(),
                            65504.0f, 65519.99f, 65520.0f, 1e-8f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
                            6.1035156e-5f, 1.0009765625f /* a half halfway case */, 3.4e38f, -1.17549435e-38f,
                            1.00390625f /* a bf16 halfway case */, 1.01171875f};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  DeviceBuffer dx = to_device(x, stream), dout(x.size() * 2);
  for (DType type : {DType::kF16, DType::kBF16}) {
    std::vector<std::uint16_t> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = type == DType::kF16 ? float_to_half(x[i]) : float_to_bf16(x[i]);
    ASSERT_TRUE(convert_activations(dx.as<float>(), type, dout.get(), x.size(), stream.handle()).ok());
    stream.synchronize();
    expect_bits_equal(to_host<std::uint16_t>(dout, x.size(), stream), want, "convert to type " + std::to_string(static_cast<int>(type)));
  }
}

// ---- dequantisation ----

// Random rows of `type`: random quant bytes and scales drawn as real checkpoints have them (small
// normal fp16 values, a few subnormal ones, and one block at the fp16 maximum to overflow).
std::vector<std::byte> random_quant_rows(DType type, std::size_t rows, std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> data(row_bytes(type, n) * rows);
  for (auto& b : data) b = static_cast<std::byte>(rng() & 0xFF);
  std::normal_distribution<float> scale(0.0f, 0.02f);
  const std::size_t blocks = rows * n / kQuantBlock;
  auto put_half = [&](std::byte* at, float v) {
    const std::uint16_t h = float_to_half(v);
    std::memcpy(at, &h, 2);
  };
  for (std::size_t b = 0; b < blocks; ++b) {
    std::byte* blk = data.data() + b * block_bytes(type);
    const float d = b % 17 == 3 ? 3e-6f : scale(rng);  // every 17th block: a subnormal scale
    put_half(blk, b == 5 ? 65504.0f : d);
    if (type == DType::kQ4_1) put_half(blk + 2, b % 13 == 1 ? -6e-7f : scale(rng) * 8);
  }
  return data;
}

TEST(CudaOps, DequantizeRowsIsBitExactWithTheCpu) {
  TG_REQUIRE_GPU();
  Stream stream;
  struct Shape {
    std::size_t rows, n;
  };
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kF32, DType::kF16, DType::kBF16}) {
    for (const Shape s : {Shape{3, 576}, Shape{17, 2048}, Shape{1, 32}, Shape{1536, 576}}) {
      std::vector<std::byte> src;
      if (type == DType::kQ4_0 || type == DType::kQ4_1 || type == DType::kQ8_0) {
        src = random_quant_rows(type, s.rows, s.n, static_cast<std::uint32_t>(s.rows * s.n));
      } else {
        const auto v = random_floats(s.rows * s.n, 9, 0.1f);
        src.resize(row_bytes(type, s.n) * s.rows);
        for (std::size_t i = 0; i < v.size(); ++i) {
          if (type == DType::kF32) std::memcpy(src.data() + 4 * i, &v[i], 4);
          const std::uint16_t h = type == DType::kF16 ? float_to_half(v[i]) : float_to_bf16(v[i]);
          if (type != DType::kF32) std::memcpy(src.data() + 2 * i, &h, 2);
        }
      }
      std::vector<float> f(s.rows * s.n);
      for (std::size_t r = 0; r < s.rows; ++r)
        cpu::dequantize_row(type, src.data() + r * row_bytes(type, s.n), f.data() + r * s.n, s.n);
      DeviceBuffer dsrc = to_device(src, stream), dout(s.rows * s.n * 2);
      for (DType out_type : {DType::kF16, DType::kBF16}) {
        std::vector<std::uint16_t> want(f.size());
        for (std::size_t i = 0; i < f.size(); ++i) want[i] = out_type == DType::kF16 ? float_to_half(f[i]) : float_to_bf16(f[i]);
        const std::string what = "dequantize type " + std::to_string(static_cast<int>(type)) + " → " +
                                 std::to_string(static_cast<int>(out_type)) + " rows " + std::to_string(s.rows) + " n " +
                                 std::to_string(s.n);
        ASSERT_TRUE(dequantize_rows(type, dsrc.get(), s.rows, s.n, out_type, dout.get(), stream.handle()).ok()) << what;
        stream.synchronize();
        expect_bits_equal(to_host<std::uint16_t>(dout, f.size(), stream), want, what);
      }
    }
  }
}

// ---- GEMM ----

struct GemmCase {
  std::size_t tokens, in, out;
};

// y = x·W^T in double from the 16-bit values themselves, and Σ|x·w| per element (the scale of
// fp32 accumulation error).
void reference_gemm(const std::vector<float>& x, const std::vector<float>& w, const GemmCase& c, std::vector<double>& y,
                    std::vector<double>& magnitude) {
  y.assign(c.tokens * c.out, 0);
  magnitude.assign(c.tokens * c.out, 0);
  for (std::size_t t = 0; t < c.tokens; ++t) {
    const float* xr = x.data() + t * c.in;
    for (std::size_t o = 0; o < c.out; ++o) {
      const float* wr = w.data() + o * c.in;
      double acc = 0, mag = 0;
      for (std::size_t i = 0; i < c.in; ++i) {
        const double p = static_cast<double>(xr[i]) * static_cast<double>(wr[i]);
        acc += p;
        mag += std::fabs(p);
      }
      y[t * c.out + o] = acc;
      magnitude[t * c.out + o] = mag;
    }
  }
}

TEST(CudaOps, GemmMatchesADoubleReference) {
  TG_REQUIRE_GPU();
  Stream stream;
  Gemm gemm(stream.handle());
  std::vector<GemmCase> cases;
  for (std::size_t tokens : {1u, 7u, 64u, 300u}) {
    cases.push_back({tokens, 576, 576});   // SmolLM2 q / o
    cases.push_back({tokens, 576, 192});   // SmolLM2 k / v
    cases.push_back({tokens, 576, 1536});  // SmolLM2 gate / up
    cases.push_back({tokens, 1536, 576});  // SmolLM2 down
    cases.push_back({tokens, 72, 40});     // odd multiples of 8
    cases.push_back({tokens, 8, 1000});
    cases.push_back({tokens, 200, 8});
  }
  cases.push_back({7, 2048, 8192});   // Llama-1B-like up
  cases.push_back({64, 8192, 2048});  // Llama-1B-like down
  cases.push_back({1, 2048, 2048});
  for (const GemmCase& c : cases) {
    for (DType type : {DType::kF16, DType::kBF16}) {
      auto to16 = [&](float v) { return type == DType::kF16 ? float_to_half(v) : float_to_bf16(v); };
      auto from16 = [&](std::uint16_t h) { return type == DType::kF16 ? half_to_float(h) : bf16_to_float(h); };
      const auto xf = random_floats(c.tokens * c.in, static_cast<std::uint32_t>(c.tokens + c.in), 1.0f);
      const auto wf = random_floats(c.out * c.in, static_cast<std::uint32_t>(c.out * 3 + c.in), 1.0f / std::sqrt(static_cast<float>(c.in)));
      std::vector<std::uint16_t> x16(xf.size()), w16(wf.size());
      std::vector<float> xr(xf.size()), wr(wf.size());
      for (std::size_t i = 0; i < xf.size(); ++i) xr[i] = from16(x16[i] = to16(xf[i]));
      for (std::size_t i = 0; i < wf.size(); ++i) wr[i] = from16(w16[i] = to16(wf[i]));
      std::vector<double> ref, mag;
      reference_gemm(xr, wr, c, ref, mag);
      DeviceBuffer dx = to_device(x16, stream), dw = to_device(w16, stream);
      const std::string what = "gemm type " + std::to_string(static_cast<int>(type)) + " tokens " + std::to_string(c.tokens) +
                               " in " + std::to_string(c.in) + " out " + std::to_string(c.out);

      // fp32 output, then accumulate into it (y += x·W^T).
      const auto y0 = random_floats(c.tokens * c.out, 77, 1.0f);
      DeviceBuffer dy = to_device(y0, stream);
      GemmParams p;
      p.x = dx.get();
      p.w = dw.get();
      p.y = dy.get();
      p.x_type = p.w_type = type;
      p.y_type = DType::kF32;
      p.tokens = c.tokens;
      p.in = c.in;
      p.out = c.out;
      ASSERT_TRUE(gemm.run(p).ok()) << what;
      stream.synchronize();
      auto check = [&](const std::vector<float>& got, const std::vector<double>& want, double rel_out, const std::string& label) {
        std::size_t bad = 0;
        std::ostringstream first;
        for (std::size_t i = 0; i < got.size(); ++i) {
          // fp32 accumulation over `in` terms (tensor-core rounding included): 1e-4·Σ|x·w|; plus
          // the output's own rounding for 16-bit outputs.
          const double tol = 1e-4 * mag[i] + rel_out * std::fabs(want[i]) + 1e-6;
          if (!(std::fabs(got[i] - want[i]) <= tol) && bad++ < 5)
            first << "\n  [token " << i / c.out << ", out " << i % c.out << "] got " << got[i] << " want " << want[i];
        }
        EXPECT_EQ(bad, 0u) << label << ": " << bad << " of " << got.size() << " off" << first.str();
      };
      check(to_host<float>(dy, ref.size(), stream), ref, 0, what + " → f32");
      p.accumulate = true;
      dy.upload(y0.data(), y0.size() * sizeof(float), stream.handle());
      ASSERT_TRUE(gemm.run(p).ok()) << what;
      stream.synchronize();
      std::vector<double> ref_acc(ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) ref_acc[i] = ref[i] + y0[i];
      check(to_host<float>(dy, ref.size(), stream), ref_acc, 1e-7, what + " accumulate");

      // 16-bit output of the input type.
      DeviceBuffer dy16(c.tokens * c.out * 2);
      p.y = dy16.get();
      p.y_type = type;
      p.accumulate = false;
      ASSERT_TRUE(gemm.run(p).ok()) << what;
      stream.synchronize();
      const auto y16 = to_host<std::uint16_t>(dy16, ref.size(), stream);
      std::vector<float> got16(y16.size());
      for (std::size_t i = 0; i < y16.size(); ++i) got16[i] = from16(y16[i]);
      check(got16, ref, type == DType::kF16 ? 1.0 / 1024 : 1.0 / 128, what + " → 16-bit");
    }
  }
}

TEST(CudaOps, GemmRejectsBadParamsWithoutLaunching) {
  TG_REQUIRE_GPU();
  Stream stream;
  Gemm gemm(stream.handle());
  GemmParams p;  // null pointers
  p.tokens = p.in = p.out = 8;
  const Status s = gemm.run(p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error.find("null"), std::string::npos) << s.error;
}

// ---- sampling ----

// A batch on the host, its device copy, and both backends' answers.
struct SamplingCase {
  std::string name;
  std::int32_t vocab = 0;
  std::vector<float> logits;  // [rows, vocab]
  std::vector<SamplingRowParams> params;
  std::vector<std::int32_t> offsets = {0}, hist_tokens, hist_counts;
  std::int32_t rows() const { return static_cast<std::int32_t>(params.size()); }
};

// Adds a row: logits of one of several shapes, `history` distinct penalised tokens.
void add_row(SamplingCase& c, const SamplingRowParams& p, int shape, std::size_t history, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const auto v = static_cast<std::size_t>(c.vocab);
  std::vector<float> row(v);
  switch (shape) {
    case 0: {  // broad: every token within reach (stresses the radix passes over the whole row)
      std::normal_distribution<float> d(0.0f, 1.0f);
      for (float& x : row) x = d(rng);
      break;
    }
    case 1: {  // peaked like a trained model: a few strong candidates over a low floor
      std::normal_distribution<float> d(-8.0f, 2.0f);
      for (float& x : row) x = d(rng);
      for (int i = 0; i < 20; ++i) row[rng() % v] = static_cast<float>(5 + static_cast<int>(rng() % 8));
      break;
    }
    case 2: {  // small integers: long runs of exact ties (order by id decides top-k and the draw)
      for (float& x : row) x = static_cast<float>(static_cast<int>(rng() % 5));
      break;
    }
    default: {  // masked: most tokens -inf, the rest broad, and a -0/+0 tie at the top
      std::normal_distribution<float> d(-1.0f, 1.0f);
      for (float& x : row) x = rng() % 4 == 0 ? std::min(d(rng), -0.5f) : -INFINITY;
      row[v / 3] = 0.0f;
      row[v / 5] = -0.0f;
      break;
    }
  }
  c.logits.insert(c.logits.end(), row.begin(), row.end());
  c.params.push_back(p);
  std::vector<std::int32_t> ids(v);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  // Penalise the strongest tokens too, so that penalties change the outcome.
  std::vector<std::int32_t> strongest(ids);
  std::partial_sort(strongest.begin(), strongest.begin() + std::min<std::ptrdiff_t>(3, c.vocab), strongest.end(),
                    [&](std::int32_t a, std::int32_t b) { return row[static_cast<std::size_t>(a)] > row[static_cast<std::size_t>(b)]; });
  std::vector<char> taken(v, 0);
  std::size_t added = 0;
  for (std::size_t i = 0; i < v && added < history; ++i) {
    const std::int32_t t = i < 3 ? strongest[i] : ids[i];
    if (taken[static_cast<std::size_t>(t)]) continue;
    taken[static_cast<std::size_t>(t)] = 1;
    c.hist_tokens.push_back(t);
    c.hist_counts.push_back(static_cast<std::int32_t>(rng() % 4));
    ++added;
  }
  c.offsets.push_back(static_cast<std::int32_t>(c.hist_tokens.size()));
}

// Compares the GPU's tokens with the CPU's row by row (and logprobs where both are given). A
// disagreement is accepted only where the CPU's trace shows top_p, or the draw, within 1e-6 of a
// cumulative-mass boundary (the two backends sum mass differently: double in sorted order vs
// exact fixed point), the draw at most once per batch.
void expect_rows_agree(const std::string& name, std::int32_t vocab, const std::vector<SamplingRowParams>& params,
                       const std::vector<cpu::SampleTrace>& traces, const std::vector<std::int32_t>& gpu_tokens,
                       const std::vector<std::int32_t>& cpu_tokens, const std::vector<float>* gpu_logprobs,
                       const std::vector<float>* cpu_logprobs) {
  ASSERT_EQ(gpu_tokens.size(), params.size());
  ASSERT_EQ(cpu_tokens.size(), params.size());
  int boundary_cases = 0;
  for (std::size_t r = 0; r < params.size(); ++r) {
    const SamplingRowParams& p = params[r];
    const cpu::SampleTrace& t = traces[r];
    std::ostringstream row;
    row << name << " row " << r << " (vocab " << vocab << ", T " << p.temperature << ", top_k " << p.top_k << ", top_p "
        << p.top_p << ", min_p " << p.min_p << ", rep " << p.repetition_penalty << ", pres " << p.presence_penalty
        << ", freq " << p.frequency_penalty << ", seed " << p.seed << ", step " << p.step << "; cpu kept " << t.kept
        << ", draw " << t.draw << " of " << t.kept_mass << ", draw margin " << t.draw_margin << ", top_p margin "
        << t.top_p_margin << ")";
    ASSERT_GE(gpu_tokens[r], 0) << row.str();
    ASSERT_LT(gpu_tokens[r], vocab) << row.str();
    if (gpu_tokens[r] != cpu_tokens[r]) {
      // top_p landing on a cumulative mass (exact ties, e.g. 5000 equal candidates and top_p 0.5)
      // is decided by the rounding of the CPU's double sums, for every row sharing those logits;
      // a draw on a boundary is a one-off.
      const bool top_p_tie = !t.greedy && t.top_p_margin < 1e-6;
      const bool draw_tie = !t.greedy && t.draw_margin < 1e-6 * t.kept_mass;
      EXPECT_TRUE(top_p_tie || draw_tie) << row.str() << ": gpu " << gpu_tokens[r] << " cpu " << cpu_tokens[r];
      if (!top_p_tie) ++boundary_cases;
      continue;
    }
    if (!gpu_logprobs || !cpu_logprobs) continue;
    EXPECT_FALSE(std::isnan((*gpu_logprobs)[r])) << row.str();
    EXPECT_NEAR((*gpu_logprobs)[r], (*cpu_logprobs)[r], 2e-5 + 1e-6 * std::fabs((*cpu_logprobs)[r])) << row.str() << " logprob";
  }
  EXPECT_LE(boundary_cases, 1) << name << ": too many draws on a boundary to be rounding";
}

// Runs both backends on `c` and compares token by token (expect_rows_agree).
void expect_gpu_matches_cpu(const SamplingCase& c, Stream& stream) {
  const std::int32_t rows = c.rows();
  std::vector<std::int32_t> cpu_tokens(static_cast<std::size_t>(rows));
  std::vector<float> cpu_logprobs(static_cast<std::size_t>(rows));
  std::vector<cpu::SampleTrace> traces(static_cast<std::size_t>(rows));
  SamplingBatch hb;
  hb.logits = c.logits.data();
  hb.rows = rows;
  hb.vocab = c.vocab;
  hb.params = c.params.data();
  hb.history_offsets = c.offsets.data();
  hb.history_tokens = c.hist_tokens.data();
  hb.history_counts = c.hist_counts.data();
  hb.tokens = cpu_tokens.data();
  hb.logprobs = cpu_logprobs.data();
  cpu::sample(hb, traces.data());

  DeviceBuffer dl = to_device(c.logits, stream), dp = to_device(c.params, stream), doff = to_device(c.offsets, stream),
               dht = to_device(c.hist_tokens, stream), dhc = to_device(c.hist_counts, stream),
               dtok(static_cast<std::size_t>(rows) * 4), dlp(static_cast<std::size_t>(rows) * 4),
               ws(sampling_workspace_bytes(rows, c.vocab));
  SamplingBatch db;
  db.logits = dl.as<float>();
  db.rows = rows;
  db.vocab = c.vocab;
  db.params = dp.as<SamplingRowParams>();
  db.history_offsets = doff.as<std::int32_t>();
  db.history_tokens = dht.as<std::int32_t>();
  db.history_counts = dhc.as<std::int32_t>();
  db.tokens = dtok.as<std::int32_t>();
  db.logprobs = dlp.as<float>();
  const Status s = sample(db, ws.get(), ws.bytes(), stream.handle());
  ASSERT_TRUE(s.ok()) << c.name << ": " << s.error;
  stream.synchronize();
  const auto gpu_tokens = to_host<std::int32_t>(dtok, static_cast<std::size_t>(rows), stream);
  const auto gpu_logprobs = to_host<float>(dlp, static_cast<std::size_t>(rows), stream);

  expect_rows_agree(c.name, c.vocab, c.params, traces, gpu_tokens, cpu_tokens, &gpu_logprobs, &cpu_logprobs);
}

// Parameter sets covering every path: greedy, the fast path, each filter alone, all together,
// penalties on and off.
std::vector<SamplingRowParams> parameter_grid() {
  std::vector<SamplingRowParams> grid;
  auto make = [](float t, int k, float top_p, float min_p, float rep, float pres, float freq) {
    SamplingRowParams p;
    p.temperature = t;
    p.top_k = k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    return p;
  };
  grid.push_back(make(0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f));    // greedy
  grid.push_back(make(0.0f, 0, 1.0f, 0.0f, 1.3f, 0.5f, 0.3f));    // greedy with penalties
  grid.push_back(make(1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f));    // pure sampling (fast path)
  grid.push_back(make(0.7f, 40, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f));   // top-k
  grid.push_back(make(0.7f, 1, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f));    // top-k 1
  grid.push_back(make(1.0f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f));    // top-p
  grid.push_back(make(1.0f, 0, 0.3f, 0.0f, 1.0f, 0.0f, 0.0f));
  grid.push_back(make(1.0f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f));   // min-p
  grid.push_back(make(0.8f, 50, 0.95f, 0.02f, 1.1f, 0.2f, 0.1f)); // everything
  grid.push_back(make(1.3f, 1000, 0.99f, 0.0f, 1.0f, -0.5f, 0.0f));
  grid.push_back(make(2.0f, 5000, 0.5f, 0.1f, 0.9f, 0.0f, 0.4f));
  grid.push_back(make(1e-3f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f));   // nearly greedy
  return grid;
}

TEST(CudaOps, SamplingMatchesCpuOnTheParameterGrid) {
  TG_REQUIRE_GPU();
  Stream stream;
  const auto grid = parameter_grid();
  for (std::int32_t vocab : {49152, 128256, 1000, 7, 1}) {
    for (int shape = 0; shape < 4; ++shape) {
      if (vocab == 1 && shape == 3) continue;  // a lone -inf row has no distribution
      SamplingCase c;
      c.vocab = vocab;
      c.name = "vocab " + std::to_string(vocab) + " shape " + std::to_string(shape);
      std::uint32_t seed = static_cast<std::uint32_t>(vocab * 4 + shape);
      for (std::size_t g = 0; g < grid.size(); ++g) {
        SamplingRowParams p = grid[g];
        p.seed = 1000 + g;
        p.step = g * 7;
        const std::size_t history = g % 3 == 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(vocab), g * 9);
        add_row(c, p, shape, history, ++seed);
      }
      expect_gpu_matches_cpu(c, stream);
      if (HasFatalFailure()) return;
    }
  }
}

// Many draws of one row: every step is a fresh draw, so this compares hundreds of sampled tokens,
// across the rows of one batch (rows differ only in their step).
TEST(CudaOps, SamplingMatchesCpuOverManySteps) {
  TG_REQUIRE_GPU();
  Stream stream;
  for (int shape : {0, 1, 2}) {
    for (const SamplingRowParams& base : parameter_grid()) {
      SamplingCase c;
      c.vocab = 49152;
      c.name = "steps shape " + std::to_string(shape) + " T " + std::to_string(base.temperature);
      for (int step = 0; step < 48; ++step) {
        SamplingRowParams p = base;
        p.seed = 42;
        p.step = static_cast<std::uint64_t>(step);
        add_row(c, p, shape, 16, 99);  // the same logits and history in every row
      }
      expect_gpu_matches_cpu(c, stream);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(CudaOps, SamplingIsDeterministicAndNeedsNoHistory) {
  TG_REQUIRE_GPU();
  Stream stream;
  const std::int32_t rows = 64, vocab = 128256;
  const auto logits = random_floats(static_cast<std::size_t>(rows) * vocab, 3, 2.0f);
  std::vector<SamplingRowParams> params(rows);
  for (std::int32_t r = 0; r < rows; ++r) {
    params[static_cast<std::size_t>(r)].temperature = 0.9f;
    params[static_cast<std::size_t>(r)].top_p = 0.95f;
    params[static_cast<std::size_t>(r)].seed = static_cast<std::uint64_t>(r);
  }
  DeviceBuffer dl = to_device(logits, stream), dp = to_device(params, stream), dtok(rows * 4), ws(sampling_workspace_bytes(rows, vocab));
  SamplingBatch b;
  b.logits = dl.as<float>();
  b.rows = rows;
  b.vocab = vocab;
  b.params = dp.as<SamplingRowParams>();
  b.tokens = dtok.as<std::int32_t>();
  ASSERT_TRUE(sample(b, ws.get(), ws.bytes(), stream.handle()).ok());
  stream.synchronize();
  const auto first = to_host<std::int32_t>(dtok, rows, stream);
  ASSERT_TRUE(sample(b, ws.get(), ws.bytes(), stream.handle()).ok());
  stream.synchronize();
  EXPECT_EQ(to_host<std::int32_t>(dtok, rows, stream), first);
  // And it agrees with the CPU without history or logprobs, a disagreement only on an interval edge.
  std::vector<std::int32_t> cpu_tokens(rows);
  std::vector<cpu::SampleTrace> traces(rows);
  SamplingBatch hb = b;
  hb.logits = logits.data();
  hb.params = params.data();
  hb.tokens = cpu_tokens.data();
  cpu::sample(hb, traces.data());
  expect_rows_agree("no history", vocab, params, traces, first, cpu_tokens, nullptr, nullptr);
}

TEST(CudaOps, SamplingRejectsAShortWorkspace) {
  TG_REQUIRE_GPU();
  Stream stream;
  ShapeOnlySamplingBatch shape;
  const SamplingBatch b = shape.batch(2, 1000);
  DeviceBuffer ws(100);
  EXPECT_FALSE(sample(b, ws.get(), ws.bytes(), stream.handle()).ok());
}

}  // namespace
}  // namespace tiergate::kernels::cuda
