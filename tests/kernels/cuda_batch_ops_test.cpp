// kernels/cuda/batch_ops against its contract: gather_rows copies rows exactly, argmax_rows picks
// the lowest index of the largest non-NaN value, fill_uniform writes its documented formula to
// the bit (the host replays it). Every test needs a GPU (TG_REQUIRE_GPU).
#include "kernels/cuda/batch_ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cuda/device.h"
#include "tests/kernels/gpu_test_support.h"
#include "tests/kernels/random_data.h"

namespace tiergate::kernels::cuda {
namespace {

using testing::expect_bits_equal;
using testing::float_bits;
using testing::random_floats;
using testing::to_device;
using testing::to_host;

TEST(CudaOps, GatherRowsCopiesTheNamedRowsExactly) {
  TG_REQUIRE_GPU();
  Stream stream;
  for (std::size_t n : {49152u, 576u, 5u, 1u}) {
    const std::size_t source_rows = 50;
    const auto x = random_floats(source_rows * n, static_cast<std::uint32_t>(n), 3.0f);
    const std::vector<std::int32_t> rows = {49, 0, 7, 7, 3, 48, 0, 25};  // any order, repeats allowed
    std::vector<float> want;
    for (std::int32_t r : rows) want.insert(want.end(), x.begin() + r * static_cast<long>(n), x.begin() + (r + 1) * static_cast<long>(n));
    DeviceBuffer dx = to_device(x, stream), drows = to_device(rows, stream), dout(want.size() * sizeof(float));
    ASSERT_TRUE(gather_rows(dx.as<float>(), drows.as<std::int32_t>(), rows.size(), n, dout.as<float>(), stream.handle()).ok());
    expect_bits_equal(float_bits(to_host<float>(dout, want.size(), stream)), float_bits(want),
                      "gather_rows n " + std::to_string(n));
  }
}

// The contract of argmax_rows: the lowest index of the largest non-NaN value; -inf is a value;
// a row with no number answers 0.
std::int32_t reference_argmax(const float* row, std::size_t n) {
  std::int32_t best = -1;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(row[i])) continue;
    if (best < 0 || row[i] > row[best]) best = static_cast<std::int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

TEST(CudaOps, ArgmaxRowsBreaksTiesByLowestIndexAndSkipsNaN) {
  TG_REQUIRE_GPU();
  Stream stream;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = INFINITY;
  for (std::size_t n : {128256u, 49152u, 300u, 7u, 1u}) {
    std::vector<std::vector<float>> rows;
    rows.push_back(random_floats(n, static_cast<std::uint32_t>(n), 5.0f));  // plain
    std::vector<float> ties = random_floats(n, static_cast<std::uint32_t>(n + 1), 1.0f);
    for (std::size_t i : {n - 1, n / 2, n / 3 + 1, std::min<std::size_t>(n - 1, 300), std::min<std::size_t>(n - 1, 17)})
      ties[i] = 9.0f;  // equal maxima in different threads and warps of the CTA
    rows.push_back(ties);
    std::vector<float> nans = random_floats(n, static_cast<std::uint32_t>(n + 2), 1.0f);
    for (std::size_t i = 0; i < n; i += 3) nans[i] = nan;  // NaN at 0 and every third index
    rows.push_back(nans);
    rows.push_back(std::vector<float>(n, nan));   // nothing but NaN: 0
    rows.push_back(std::vector<float>(n, -inf));  // every value -inf: the first
    std::vector<float> neg(n, -inf);
    neg[0] = nan;
    neg[n - 1] = -FLT_MAX;
    rows.push_back(neg);  // NaN at 0, then -inf, the largest (-FLT_MAX) last
    std::vector<float> masked(n, nan);
    masked[n - 1] = -inf;
    rows.push_back(masked);  // NaN everywhere but a -inf at the end: the -inf
    std::vector<float> plus_inf = random_floats(n, static_cast<std::uint32_t>(n + 3), 1.0f);
    plus_inf[n / 2] = inf;
    plus_inf[0] = nan;
    rows.push_back(plus_inf);
    std::vector<float> flat;
    std::vector<std::int32_t> want;
    for (const auto& r : rows) {
      flat.insert(flat.end(), r.begin(), r.end());
      want.push_back(reference_argmax(r.data(), n));
    }
    DeviceBuffer dl = to_device(flat, stream), dout(rows.size() * sizeof(std::int32_t));
    ASSERT_TRUE(argmax_rows(dl.as<float>(), rows.size(), n, dout.as<std::int32_t>(), stream.handle()).ok());
    const auto got = to_host<std::int32_t>(dout, rows.size(), stream);
    for (std::size_t r = 0; r < rows.size(); ++r) EXPECT_EQ(got[r], want[r]) << "row kind " << r << ", n " << n;
  }
}

TEST(CudaOps, FillUniformWritesItsDocumentedValues) {
  TG_REQUIRE_GPU();
  Stream stream;
  // Past 65536 CTAs x 256 threads the kernel strides; 17M elements cover that.
  for (std::size_t n : {1u, 1000u, 300001u, 17000000u}) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      const float lo = -0.044f, hi = 0.044f;
      const std::uint64_t seed = 42 + n;
      const std::size_t bytes = n * (type == DType::kF32 ? 4 : 2);
      DeviceBuffer out(bytes), again(bytes), other(bytes);
      ASSERT_TRUE(fill_uniform(type, out.get(), n, lo, hi, seed, stream.handle()).ok());
      ASSERT_TRUE(fill_uniform(type, again.get(), n, lo, hi, seed, stream.handle()).ok());
      ASSERT_TRUE(fill_uniform(type, other.get(), n, lo, hi, seed + 1, stream.handle()).ok());
      const std::string what = "fill_uniform type " + std::to_string(static_cast<int>(type)) + " n " + std::to_string(n);
      std::vector<float> values(n);
      for (std::size_t i = 0; i < n; ++i) values[i] = testing::uniform_fill_value(seed, i, lo, hi);
      for (float v : values) ASSERT_TRUE(v >= lo && v < hi) << what << ": " << v;
      if (type == DType::kF32) {
        const auto got = to_host<std::uint32_t>(out, n, stream);
        expect_bits_equal(got, float_bits(values), what);
        EXPECT_EQ(to_host<std::uint32_t>(again, n, stream), got) << what << ": not deterministic";
        if (n > 1) {
          EXPECT_NE(to_host<std::uint32_t>(other, n, stream), got) << what << ": the seed changes nothing";
        }
      } else {
        std::vector<std::uint16_t> want(n);
        for (std::size_t i = 0; i < n; ++i) want[i] = type == DType::kF16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
        const auto got = to_host<std::uint16_t>(out, n, stream);
        expect_bits_equal(got, want, what);
        EXPECT_EQ(to_host<std::uint16_t>(again, n, stream), got) << what << ": not deterministic";
        if (n > 1) {
          EXPECT_NE(to_host<std::uint16_t>(other, n, stream), got) << what << ": the seed changes nothing";
        }
      }
      if (n >= 300001) {  // uniform: mean and spread of U(lo, hi)
        double sum = 0, sq = 0;
        for (float v : values) {
          sum += v;
          sq += static_cast<double>(v) * v;
        }
        const double mean = sum / static_cast<double>(n), var = sq / static_cast<double>(n) - mean * mean;
        EXPECT_NEAR(mean, 0.0, 0.044 * 0.01) << what;
        EXPECT_NEAR(var, 0.088 * 0.088 / 12, 0.088 * 0.088 / 12 * 0.02) << what;
      }
    }
  }
  EXPECT_FALSE(fill_uniform(DType::kQ8_0, nullptr, 10, 0, 1, 1, stream.handle()).ok());
}

}  // namespace
}  // namespace tiergate::kernels::cuda
