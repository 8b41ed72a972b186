// kernels/cuda/paged_attention against kernels/cpu/paged_attention: decode (split-K) and chunked
// prefill over shuffled block tables, kv_append bit for bit, and the dispatch table's refusals
// (those need no GPU: validation runs before any CUDA call).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/paged_attention.h"
#include "tests/kernels/gpu_test_support.h"

namespace tiergate::kernels::cuda {
namespace {

using testing::to_device;

// Both sides see bit-identical K/V values (the reference reads the same fp16/bf16 cache, widened
// exactly to float) and both accumulate in fp32; they differ only in summation order and in exp
// (exp2 of log2-domain scores on the GPU, libm exp on the CPU). With scores of magnitude <= ~15 and
// 128-term dot products that is ~1e-5 relative at worst. 1e-3 keeps a 100x margin while a single
// misplaced key holding >= 0.2% of the softmax weight (values are O(1)) still shows.
constexpr float kAtol = 1e-3f;
constexpr float kRtol = 1e-3f;
// Queries in [-6, 6] against keys in [-1, 1] give scores of standard deviation ~2 at any head_dim
// (scale 1/sqrt(D)): a peaked softmax, so that indexing mistakes move outputs well past kAtol.
constexpr float kQueryRange = 6.0f;

cpu::ThreadPool& pool() {
  static cpu::ThreadPool p(0);
  return p;
}

// splitmix64: fast enough to fill pools of millions of elements per case.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {  // [lo, hi)
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

 private:
  std::uint64_t state_;
};

std::uint16_t to_bits(DType dtype, float x) { return dtype == DType::kBF16 ? float_to_bf16(x) : float_to_half(x); }
float from_bits(DType dtype, std::uint16_t b) { return dtype == DType::kBF16 ? bf16_to_float(b) : half_to_float(b); }
const char* dtype_label(DType dtype) { return dtype == DType::kBF16 ? "BF16" : "F16"; }

struct Heads {
  std::size_t q, kv;
};

// Sequence s holds contexts[s] keys after this step; its last queries[s] positions are the step's
// query tokens (1 = decode; more = a prefill chunk over a cached prefix of contexts - queries).
struct ProblemSpec {
  DType dtype = DType::kF16;
  Heads heads{4, 4};
  std::size_t head_dim = 64;
  std::size_t block_size = 16;
  std::vector<std::size_t> contexts;
  std::vector<std::size_t> queries;
  std::uint64_t seed = 1;
};

// One attention step in host memory: a pool whose blocks are handed to sequences in shuffled order
// (unused blocks and slots past a context hold NaN, so a stray read poisons the output), the
// block tables (-1 past each sequence), the step's tokens and queries.
struct Problem {
  ProblemSpec spec;
  std::size_t num_blocks = 0, max_blocks = 0, max_context = 0, max_query = 0;
  std::vector<std::uint16_t> k, v;
  std::vector<std::int32_t> tables, token_seq, token_pos;
  std::vector<float> q;
  std::string label;

  std::size_t row_elems() const { return spec.heads.q * spec.head_dim; }
  std::size_t num_tokens() const { return token_seq.size(); }
};

std::string describe(const ProblemSpec& s) {
  std::ostringstream o;
  o << dtype_label(s.dtype) << " heads " << s.heads.q << "/" << s.heads.kv << " head_dim " << s.head_dim << " block "
    << s.block_size << " (context, queries):";
  for (std::size_t i = 0; i < s.contexts.size(); ++i) o << " (" << s.contexts[i] << "," << s.queries[i] << ")";
  return o.str();
}

Problem make_problem(const ProblemSpec& spec) {
  Problem p;
  p.spec = spec;
  p.label = describe(spec);
  Rng rng(spec.seed);
  const std::size_t B = spec.block_size, D = spec.head_dim, KH = spec.heads.kv;
  std::size_t used = 0;
  for (std::size_t c : spec.contexts) {
    p.max_blocks = std::max(p.max_blocks, (c + B - 1) / B);
    used += (c + B - 1) / B;
    p.max_context = std::max(p.max_context, c);
  }
  p.max_blocks += 1;  // a spare column of -1 past the longest sequence
  p.num_blocks = used + 3;
  std::vector<std::int32_t> ids(p.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(static_cast<std::uint32_t>(spec.seed)));
  const std::uint16_t nan_bits = spec.dtype == DType::kBF16 ? 0x7FC0 : 0x7E00;
  const std::size_t slot = KH * D;
  p.k.assign(p.num_blocks * B * slot, nan_bits);
  p.v.assign(p.k.size(), nan_bits);
  p.tables.assign(spec.contexts.size() * p.max_blocks, -1);
  std::size_t next_id = 0;
  for (std::size_t s = 0; s < spec.contexts.size(); ++s) {
    const std::size_t ctx = spec.contexts[s];
    for (std::size_t b = 0; b < (ctx + B - 1) / B; ++b) p.tables[s * p.max_blocks + b] = ids[next_id++];
    for (std::size_t pos = 0; pos < ctx; ++pos) {
      const auto block = static_cast<std::size_t>(p.tables[s * p.max_blocks + pos / B]);
      const std::size_t base = (block * B + pos % B) * slot;
      for (std::size_t i = 0; i < slot; ++i) {
        p.k[base + i] = to_bits(spec.dtype, rng.uniform(-1.0f, 1.0f));
        p.v[base + i] = to_bits(spec.dtype, rng.uniform(-1.0f, 1.0f));
      }
    }
    const std::size_t nq = spec.queries[s];
    p.max_query = std::max(p.max_query, nq);
    for (std::size_t pos = ctx - nq; pos < ctx; ++pos) {
      p.token_seq.push_back(static_cast<std::int32_t>(s));
      p.token_pos.push_back(static_cast<std::int32_t>(pos));
    }
  }
  p.q.resize(p.num_tokens() * p.row_elems());
  for (float& x : p.q) x = rng.uniform(-kQueryRange, kQueryRange);
  return p;
}

// Reorders the step's tokens (and their queries) by `order`: tiles of the prefill kernel then mix
// sequences.
Problem permute_tokens(const Problem& p, const std::vector<std::size_t>& order) {
  Problem r = p;
  const std::size_t row = p.row_elems();
  for (std::size_t i = 0; i < order.size(); ++i) {
    r.token_seq[i] = p.token_seq[order[i]];
    r.token_pos[i] = p.token_pos[order[i]];
    std::copy_n(p.q.begin() + static_cast<long>(order[i] * row), row, r.q.begin() + static_cast<long>(i * row));
  }
  r.label += " tokens shuffled";
  return r;
}

float scale_of(const Problem& p) { return 1.0f / std::sqrt(static_cast<float>(p.spec.head_dim)); }

// cpu::paged_attention on the same cache: BF16 through the CPU's BF16 path; F16 widened to an F32
// cache, because the CPU's F16 path reproduces ggml's fp16 accumulator (for bit-exactness with
// llama.cpp), which is further from the exact result than the GPU's fp32 accumulation.
// `widen` sends BF16 through the F32 path too.
std::vector<float> reference(const Problem& p, bool widen = false) {
  std::vector<float> kf, vf;
  PagedKv kv{nullptr, nullptr, p.spec.dtype, p.num_blocks, p.spec.block_size, p.spec.heads.kv, p.spec.head_dim};
  if (p.spec.dtype == DType::kF16 || widen) {
    kf.resize(p.k.size());
    vf.resize(p.v.size());
    for (std::size_t i = 0; i < p.k.size(); ++i) {
      kf[i] = from_bits(p.spec.dtype, p.k[i]);
      vf[i] = from_bits(p.spec.dtype, p.v[i]);
    }
    kv.k = kf.data();
    kv.v = vf.data();
    kv.dtype = DType::kF32;
  } else {
    kv.k = const_cast<std::uint16_t*>(p.k.data());
    kv.v = const_cast<std::uint16_t*>(p.v.data());
  }
  const TokenLayout layout{p.tables.data(), p.max_blocks, p.token_seq.data(), p.token_pos.data(), p.num_tokens()};
  std::vector<float> out(p.num_tokens() * p.row_elems());
  cpu::paged_attention({kv, layout, p.q.data(), out.data(), p.spec.heads.q, scale_of(p)}, pool());
  return out;
}

// The problem on the device, with `out` prefilled with NaN so that an unwritten row shows.
struct DeviceProblem {
  DeviceProblem(const Problem& p, const Stream& stream)
      : k(to_device(p.k, stream)),
        v(to_device(p.v, stream)),
        tables(to_device(p.tables, stream)),
        token_seq(to_device(p.token_seq, stream)),
        token_pos(to_device(p.token_pos, stream)),
        q(to_device(p.q, stream)),
        out(to_device(std::vector<float>(p.q.size(), std::numeric_limits<float>::quiet_NaN()), stream)) {
    params.kv = {k.get(), v.get(), p.spec.dtype, p.num_blocks, p.spec.block_size, p.spec.heads.kv, p.spec.head_dim};
    params.layout = {tables.as<std::int32_t>(), p.max_blocks, token_seq.as<std::int32_t>(), token_pos.as<std::int32_t>(),
                     p.num_tokens()};
    params.q = q.as<float>();
    params.out = out.as<float>();
    params.num_heads = p.spec.heads.q;
    params.scale = scale_of(p);
  }
  DeviceBuffer k, v, tables, token_seq, token_pos, q, out;
  PagedAttentionParams params;
};

// Runs the launcher with a workspace of the size it asks for; returns the output rows.
std::vector<float> run_gpu(const Problem& p, const AttentionBatchShape& shape) {
  Stream stream;
  DeviceProblem d(p, stream);
  const std::size_t ws_bytes = paged_attention_workspace_bytes(d.params, shape);
  DeviceBuffer ws(ws_bytes);
  const Status st = paged_attention(d.params, shape, {ws.get(), ws.bytes()}, stream.handle());
  EXPECT_TRUE(st.ok()) << st.error << " | " << p.label;
  std::vector<float> out(p.q.size());
  d.out.download(out.data(), out.size() * sizeof(float), stream.handle());
  return out;
}

std::string shape_label(const AttentionBatchShape& s) {
  std::ostringstream o;
  o << "shape{max_context_len " << s.max_context_len << ", max_query_len " << s.max_query_len << ", num_splits "
    << s.num_splits << "}";
  return o.str();
}

// Every output finite and within kAtol + kRtol * |want|; on failure the count and the worst
// element with its token, sequence, position, head and dim.
::testing::AssertionResult outputs_match(const std::vector<float>& got, const std::vector<float>& want, const Problem& p,
                                         const std::string& what) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": size mismatch | " << p.label;
  const std::size_t D = p.spec.head_dim, H = p.spec.heads.q;
  std::size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = kAtol + kRtol * std::fabs(static_cast<double>(want[i]));
    const bool finite = std::isfinite(got[i]);
    if (!finite || !(diff <= tol)) {
      ++bad;
      const double excess = finite ? diff / tol : std::numeric_limits<double>::infinity();
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  const std::size_t t = worst / (H * D), h = worst / D % H, d = worst % D;
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " outputs non-finite or off (atol " << kAtol << ", rtol " << kRtol
                                       << "); worst at token " << t << " (seq " << p.token_seq[t] << ", pos "
                                       << p.token_pos[t] << ") head " << h << " dim " << d << ": got " << got[worst]
                                       << ", want " << want[worst] << " | " << p.label;
}

ProblemSpec spec_of(DType dtype, Heads heads, std::size_t head_dim, std::size_t block_size,
                    std::vector<std::size_t> contexts, std::vector<std::size_t> queries, std::uint64_t seed) {
  ProblemSpec s;
  s.dtype = dtype;
  s.heads = heads;
  s.head_dim = head_dim;
  s.block_size = block_size;
  s.contexts = std::move(contexts);
  s.queries = std::move(queries);
  s.seed = seed;
  return s;
}

constexpr Heads kHeadConfigs[] = {{4, 4}, {8, 2}, {32, 8}};
constexpr std::size_t kBlockSizes[] = {16, 32};

// ---------------------------------------------------------------------------------------------
// No GPU needed

PagedAttentionParams valid_params() {
  // Never dereferenced: validation only looks at values and alignment.
  static std::int32_t dummy_ints[4] = {};
  PagedAttentionParams p;
  p.kv = {reinterpret_cast<void*>(std::uintptr_t{0x10000}), reinterpret_cast<void*>(std::uintptr_t{0x20000}),
          DType::kF16, 64, 16, 8, 128};
  p.layout = {dummy_ints, 4, dummy_ints, dummy_ints, 1};
  p.q = reinterpret_cast<const float*>(std::uintptr_t{0x30000});
  p.out = reinterpret_cast<float*>(std::uintptr_t{0x40000});
  p.num_heads = 32;
  p.scale = 1.0f;
  return p;
}

void expect_refused(const PagedAttentionParams& p, const std::string& needle, const AttentionBatchShape& shape = {}) {
  const Status v = validate_paged_attention(p, shape);
  EXPECT_FALSE(v.ok()) << "expected a refusal mentioning '" << needle << "'";
  EXPECT_NE(v.error.find(needle), std::string::npos) << v.error;
  // The launcher refuses the same way before touching the device (this runs without a GPU).
  const Status l = paged_attention(p, shape, {}, nullptr);
  EXPECT_EQ(l.error, v.error);
}

TEST(CudaPagedAttentionValidation, RefusesShapesOutsideTheDispatchTable) {
  PagedAttentionParams p = valid_params();
  ASSERT_TRUE(validate_paged_attention(p, {}).ok()) << validate_paged_attention(p, {}).error;

  p = valid_params(), p.kv.head_dim = 96;
  expect_refused(p, "head_dim 96 unsupported (supported: 64, 128)");
  p = valid_params(), p.kv.head_dim = 256;
  expect_refused(p, "head_dim 256");
  p = valid_params(), p.kv.block_size = 8;
  expect_refused(p, "block_size 8 unsupported (supported: 16, 32)");
  p = valid_params(), p.kv.block_size = 64;
  expect_refused(p, "block_size 64");
  p = valid_params(), p.kv.dtype = DType::kF32;
  expect_refused(p, "dtype F32 unsupported on the GPU (supported: F16, BF16)");
  p = valid_params(), p.kv.dtype = DType::kQ8_0;
  expect_refused(p, "Q8_0");
  p = valid_params(), p.num_heads = 12, p.kv.num_kv_heads = 8;
  expect_refused(p, "num_heads 12 is not a positive multiple of num_kv_heads 8");
  p = valid_params(), p.num_heads = 0;
  expect_refused(p, "num_heads 0");
  p = valid_params(), p.kv.num_kv_heads = 0;
  expect_refused(p, "num_kv_heads 0");
  p = valid_params(), p.layout.max_blocks_per_seq = 0;
  expect_refused(p, "max_blocks_per_seq 0");
  p = valid_params(), p.q = nullptr;
  expect_refused(p, "null q");
  p = valid_params(), p.out = reinterpret_cast<float*>(std::uintptr_t{0x40004});
  expect_refused(p, "16-byte aligned");
  p = valid_params(), p.kv.k = reinterpret_cast<void*>(std::uintptr_t{0x10002});
  expect_refused(p, "16-byte aligned");
  p = valid_params();
  expect_refused(p, "max_query_len 0", AttentionBatchShape{0, 0, 0});
}

TEST(CudaPagedAttentionValidation, AcceptsEveryShapeOfTheTable) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (std::size_t head_dim : {64, 128}) {
      for (std::size_t block_size : {16, 32}) {
        for (Heads heads : {Heads{1, 1}, Heads{4, 4}, Heads{8, 2}, Heads{12, 2}, Heads{32, 8}, Heads{64, 1}}) {
          PagedAttentionParams p = valid_params();
          p.kv.dtype = dtype, p.kv.head_dim = head_dim, p.kv.block_size = block_size;
          p.num_heads = heads.q, p.kv.num_kv_heads = heads.kv;
          const Status s = validate_paged_attention(p, {});
          EXPECT_TRUE(s.ok()) << s.error;
          KvAppendParams a{p.kv, p.layout, p.q, p.q};
          EXPECT_TRUE(validate_kv_append(a).ok()) << validate_kv_append(a).error;
        }
      }
    }
  }
}

TEST(CudaPagedAttentionValidation, KvAppendRefusesTheSameShapes) {
  PagedAttentionParams base = valid_params();
  KvAppendParams a{base.kv, base.layout, base.q, base.q};
  a.kv.head_dim = 80;
  Status s = kv_append(a, nullptr);  // no device needed: refused before any CUDA call
  EXPECT_NE(s.error.find("head_dim 80 unsupported"), std::string::npos) << s.error;
  a = {base.kv, base.layout, base.q, nullptr};
  s = kv_append(a, nullptr);
  EXPECT_NE(s.error.find("null k_new or v_new"), std::string::npos) << s.error;
  a = {base.kv, base.layout, base.q, base.q};
  a.kv.dtype = DType::kF32;
  EXPECT_NE(validate_kv_append(a).error.find("F32"), std::string::npos);
}

TEST(CudaPagedAttentionValidation, EmptyStepIsANoOp) {
  PagedAttentionParams p = valid_params();
  p.layout.num_tokens = 0;
  p.q = nullptr, p.out = nullptr;
  EXPECT_TRUE(paged_attention(p, {}, {}, nullptr).ok());
  EXPECT_TRUE(kv_append({p.kv, p.layout, nullptr, nullptr}, nullptr).ok());
}

RC_GTEST_PROP(CudaPagedAttentionPlan, SplitsCoverEveryContextWithoutEmptySplits, ()) {
  PagedAttentionParams p = valid_params();
  p.kv.block_size = *rc::gen::element<std::size_t>(16, 32);
  p.kv.num_kv_heads = *rc::gen::element<std::size_t>(1, 2, 8, 32);
  p.num_heads = p.kv.num_kv_heads * *rc::gen::element<std::size_t>(1, 2, 4, 6, 8, 16);
  p.layout.num_tokens = *rc::gen::inRange<std::size_t>(1, 300);
  p.layout.max_blocks_per_seq = *rc::gen::inRange<std::size_t>(1, 20000);
  AttentionBatchShape shape;
  shape.max_context_len = *rc::gen::inRange<std::size_t>(0, p.layout.max_blocks_per_seq * p.kv.block_size + 1);
  shape.num_splits = *rc::gen::element<std::size_t>(0, 0, 1, 2, 7, 1000);
  const int sms = *rc::gen::element(1, 108, 132);
  const SplitPlan plan = plan_decode_splits(p, shape, sms);
  const std::size_t table_limit = p.layout.max_blocks_per_seq * p.kv.block_size;
  const std::size_t bound = std::max<std::size_t>(shape.max_context_len == 0 ? table_limit : shape.max_context_len, 1);
  RC_ASSERT(plan.num_splits >= 1);
  RC_ASSERT(plan.split_len % kSplitAlign == 0);
  RC_ASSERT(plan.num_splits * plan.split_len >= bound);
  RC_ASSERT((plan.num_splits - 1) * plan.split_len < bound);  // the longest token uses every split
  if (shape.num_splits != 0) RC_ASSERT(plan.num_splits <= shape.num_splits);
}

TEST(CudaPagedAttentionPlan, SplitsSmallBatchesAndLeavesFullOnesWhole) {
  PagedAttentionParams p = valid_params();
  p.num_heads = 32, p.kv.num_kv_heads = 32, p.layout.num_tokens = 64, p.layout.max_blocks_per_seq = 512;
  EXPECT_EQ(plan_decode_splits(p, {8192, 1, 0}, 132).num_splits, 1u);  // 2048 CTAs already
  p.kv.num_kv_heads = 8;
  EXPECT_GT(plan_decode_splits(p, {8192, 1, 0}, 132).num_splits, 1u);   // 512 CTAs: split
  p.layout.num_tokens = 1;
  const SplitPlan one = plan_decode_splits(p, {8192, 1, 0}, 132);
  EXPECT_EQ(one.num_splits, 8192 / kSplitAlign);                          // as fine as allowed
  EXPECT_EQ(plan_decode_splits(p, {100, 1, 0}, 132).num_splits, 1u);      // too short to split
}

// The CPU reference's BF16 path (widen rows, fp32 recurrence) is the F32 path on the widened cache.
TEST(CpuPagedAttentionBf16, MatchesTheF32PathOnTheWidenedCache) {
  const Problem p = make_problem(spec_of(DType::kBF16, {8, 2}, 64, 16, {1, 17, 100}, {1, 5, 30}, 7));
  const std::vector<float> bf16 = reference(p), f32 = reference(p, /*widen=*/true);
  ASSERT_EQ(bf16.size(), f32.size());
  EXPECT_EQ(0, std::memcmp(bf16.data(), f32.data(), bf16.size() * sizeof(float)));
}

// ---------------------------------------------------------------------------------------------
// GPU against the CPU reference

struct KernelShape {
  DType dtype;
  std::size_t head_dim;
};

void PrintTo(const KernelShape& k, std::ostream* os) { *os << dtype_label(k.dtype) << " head_dim " << k.head_dim; }

class CudaPagedAttention : public ::testing::TestWithParam<KernelShape> {};

std::string kernel_shape_name(const ::testing::TestParamInfo<KernelShape>& info) {
  return std::string(dtype_label(info.param.dtype)) + "_D" + std::to_string(info.param.head_dim);
}

INSTANTIATE_TEST_SUITE_P(Table, CudaPagedAttention,
                         ::testing::Values(KernelShape{DType::kF16, 64}, KernelShape{DType::kF16, 128},
                                           KernelShape{DType::kBF16, 64}, KernelShape{DType::kBF16, 128}),
                         kernel_shape_name);

// Decode: one token per sequence, contexts on both sides of block and split boundaries, split-K by
// the heuristic, not at all, forced fine, under an underestimated bound, and with no bound.
TEST_P(CudaPagedAttention, DecodeMatchesCpuReference) {
  TG_REQUIRE_GPU();
  const KernelShape ks = GetParam();
  std::uint64_t seed = 100;
  for (const Heads heads : kHeadConfigs) {
    for (const std::size_t block : kBlockSizes) {
      const Problem p = make_problem(
          spec_of(ks.dtype, heads, ks.head_dim, block, {1, 15, 16, 17, 100, 1000, 5000}, {1, 1, 1, 1, 1, 1, 1}, ++seed));
      const std::vector<float> want = reference(p);
      for (const AttentionBatchShape shape : {AttentionBatchShape{p.max_context, 1, 0}, AttentionBatchShape{p.max_context, 1, 1},
                                              AttentionBatchShape{p.max_context, 1, 7}, AttentionBatchShape{300, 1, 0},
                                              AttentionBatchShape{0, 1, 0}}) {
        EXPECT_TRUE(outputs_match(run_gpu(p, shape), want, p, "decode " + shape_label(shape)));
      }
    }
  }
}

// Chunked prefill: a chunk of new tokens over a cached prefix per sequence. The same step through
// the prefill kernel, through it with the token order shuffled (tiles mix sequences), and through
// the decode kernel (correct for any layout).
TEST_P(CudaPagedAttention, ChunkedPrefillMatchesCpuReference) {
  TG_REQUIRE_GPU();
  const KernelShape ks = GetParam();
  std::uint64_t seed = 200;
  for (const Heads heads : kHeadConfigs) {
    for (const std::size_t block : kBlockSizes) {
      // (context, chunk): prefixes 0, 1, 15, 16, 100, 100, 1000, 5000; short chunks on the long
      // prefixes keep the CPU reference (tokens x context x heads) to a few seconds.
      const Problem p = make_problem(spec_of(ks.dtype, heads, ks.head_dim, block,
                                             {16, 16, 17, 33, 117, 133, 1024, 5008}, {16, 15, 2, 17, 17, 33, 24, 8}, ++seed));
      const std::vector<float> want = reference(p);
      const AttentionBatchShape prefill{p.max_context, p.max_query, 0};
      EXPECT_TRUE(outputs_match(run_gpu(p, prefill), want, p, "prefill " + shape_label(prefill)));

      std::vector<std::size_t> order(p.num_tokens());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<std::uint32_t>(seed)));
      const Problem shuffled = permute_tokens(p, order);
      std::vector<float> want_shuffled(want.size());
      const std::size_t row = p.row_elems();
      for (std::size_t i = 0; i < order.size(); ++i) {
        std::copy_n(want.begin() + static_cast<long>(order[i] * row), row, want_shuffled.begin() + static_cast<long>(i * row));
      }
      EXPECT_TRUE(outputs_match(run_gpu(shuffled, prefill), want_shuffled, shuffled, "prefill " + shape_label(prefill)));

      const AttentionBatchShape as_decode{p.max_context, 1, 0};
      EXPECT_TRUE(outputs_match(run_gpu(p, as_decode), want, p, "decode kernel on a prefill step " + shape_label(as_decode)));
    }
  }
}

// Group sizes whose head mapping is uneven: 6 (decode 3 CTAs of 2 heads; prefill 5 tokens x 6
// heads, 2 idle rows), 16 (decode 2 CTAs of 8; prefill 2 tokens x 16), 3 (decode 3 x 1; prefill
// 10 x 3, 2 idle rows).
TEST_P(CudaPagedAttention, UnevenGroupSizesMatchCpuReference) {
  TG_REQUIRE_GPU();
  const KernelShape ks = GetParam();
  std::uint64_t seed = 300;
  for (const Heads heads : {Heads{12, 2}, Heads{16, 1}, Heads{3, 1}}) {
    const Problem decode =
        make_problem(spec_of(ks.dtype, heads, ks.head_dim, 16, {1, 17, 300, 2000}, {1, 1, 1, 1}, ++seed));
    const std::vector<float> want_decode = reference(decode);
    const AttentionBatchShape d{decode.max_context, 1, 0};
    EXPECT_TRUE(outputs_match(run_gpu(decode, d), want_decode, decode, "decode " + shape_label(d)));
    const Problem prefill =
        make_problem(spec_of(ks.dtype, heads, ks.head_dim, 32, {7, 40, 333}, {7, 23, 50}, ++seed));
    const std::vector<float> want_prefill = reference(prefill);
    const AttentionBatchShape pf{prefill.max_context, prefill.max_query, 0};
    EXPECT_TRUE(outputs_match(run_gpu(prefill, pf), want_prefill, prefill, "prefill " + shape_label(pf)));
  }
}

// The benchmark's shapes at a smaller scale: batch 64 with mixed contexts, MHA (2048 CTAs, no
// split; contexts up to 1000 to bound the host pool) and GQA 32/8 (512 CTAs, split by the heuristic).
TEST(CudaPagedAttentionLargeBatch, DecodeMatchesCpuReference) {
  TG_REQUIRE_GPU();
  for (const DType dtype : {DType::kF16, DType::kBF16}) {
    for (const Heads heads : {Heads{32, 32}, Heads{32, 8}}) {
      Rng rng(400 + heads.kv);
      std::vector<std::size_t> contexts(64);
      for (std::size_t& c : contexts) c = 1 + rng.below(heads.kv == 32 ? 1000 : 3000);
      const Problem p = make_problem(spec_of(dtype, heads, 128, 16, contexts, std::vector<std::size_t>(64, 1), 401));
      const AttentionBatchShape shape{p.max_context, 1, 0};
      EXPECT_TRUE(outputs_match(run_gpu(p, shape), reference(p), p, "decode batch 64 " + shape_label(shape)));
    }
  }
}

TEST(CudaPagedAttentionLargeBatch, RefusesASmallWorkspace) {
  TG_REQUIRE_GPU();
  const Problem p = make_problem(spec_of(DType::kF16, {8, 2}, 64, 16, {5000}, {1}, 9));
  Stream stream;
  DeviceProblem d(p, stream);
  const AttentionBatchShape shape{p.max_context, 1, 4};
  const std::size_t need = paged_attention_workspace_bytes(d.params, shape);
  ASSERT_GT(need, 0u);
  DeviceBuffer ws(need);
  const Status s = paged_attention(d.params, shape, {ws.get(), need - 4}, stream.handle());
  EXPECT_NE(s.error.find("workspace"), std::string::npos) << s.error;
}

// kv_append against cpu::kv_append, bit for bit: random values plus zeros, subnormals, ties,
// overflow, infinities and NaNs with payloads, into shuffled blocks of a pool of random bits.
TEST(CudaKvAppend, MatchesCpuBitExact) {
  TG_REQUIRE_GPU();
  const float specials[] = {0.0f, -0.0f, 1e-8f, -3e-7f, 6.1e-5f, 65504.0f, 65520.0f, 70000.0f, -1e30f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::denorm_min(), 1.0009765625f /* fp16 tie */,
                            1.00390625f /* bf16 tie */, 3.0e38f};
  for (const DType dtype : {DType::kF16, DType::kBF16}) {
    for (const std::size_t head_dim : {64, 128}) {
      for (const std::size_t block : kBlockSizes) {
        ProblemSpec spec = spec_of(dtype, {8, 2}, head_dim, block, {1, 40, 300}, {1, 17, 64}, 500 + head_dim + block);
        Problem p = make_problem(spec);
        Rng rng(spec.seed);
        for (std::uint16_t& x : p.k) x = static_cast<std::uint16_t>(rng.next());
        for (std::uint16_t& x : p.v) x = static_cast<std::uint16_t>(rng.next());
        const std::size_t row = spec.heads.kv * head_dim;
        std::vector<float> k_new(p.num_tokens() * row), v_new(k_new.size());
        for (std::size_t i = 0; i < k_new.size(); ++i) {
          k_new[i] = i % 5 == 0 ? specials[rng.below(std::size(specials))] : rng.uniform(-4.0f, 4.0f);
          v_new[i] = i % 7 == 0 ? specials[rng.below(std::size(specials))] : rng.uniform(-4.0f, 4.0f);
        }
        std::uint32_t nan_bits = 0x7FA12345u;  // a NaN with a payload
        std::memcpy(&k_new[1], &nan_bits, sizeof(float));

        Stream stream;
        DeviceProblem d(p, stream);
        const DeviceBuffer dk_new = to_device(k_new, stream), dv_new = to_device(v_new, stream);
        const KvAppendParams gpu{d.params.kv, d.params.layout, dk_new.as<float>(), dv_new.as<float>()};
        const Status st = kv_append(gpu, stream.handle());
        ASSERT_TRUE(st.ok()) << st.error;
        stream.synchronize();

        std::vector<std::uint16_t> k_cpu = p.k, v_cpu = p.v;
        PagedKv kv{k_cpu.data(), v_cpu.data(), dtype, p.num_blocks, block, spec.heads.kv, head_dim};
        const TokenLayout layout{p.tables.data(), p.max_blocks, p.token_seq.data(), p.token_pos.data(), p.num_tokens()};
        cpu::kv_append({kv, layout, k_new.data(), v_new.data()});

        std::vector<std::uint16_t> k_gpu(p.k.size()), v_gpu(p.v.size());
        d.k.download(k_gpu.data(), k_gpu.size() * 2, stream.handle());
        d.v.download(v_gpu.data(), v_gpu.size() * 2, stream.handle());
        const auto first_diff = [](const std::vector<std::uint16_t>& a, const std::vector<std::uint16_t>& b) {
          return static_cast<std::size_t>(std::mismatch(a.begin(), a.end(), b.begin()).first - a.begin());
        };
        const std::size_t dk = first_diff(k_gpu, k_cpu), dv = first_diff(v_gpu, v_cpu);
        EXPECT_EQ(dk, k_gpu.size()) << "K differs at element " << dk << " (gpu " << (dk < k_gpu.size() ? k_gpu[dk] : 0)
                                    << ", cpu " << (dk < k_cpu.size() ? k_cpu[dk] : 0) << ") | " << p.label;
        EXPECT_EQ(dv, v_gpu.size()) << "V differs at element " << dv << " | " << p.label;
      }
    }
  }
}

}  // namespace
}  // namespace tiergate::kernels::cuda
