#include "engine/cuda_executor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <stdexcept>

#include "engine/engine.h"
#include "kernels/check.h"
#include "kernels/cuda/batch_ops.h"
#include "kernels/cuda/dequant.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/sampling.h"

namespace tiergate::engine {

namespace kc = kernels::cuda;
using kernels::DType;

namespace {

// A launch of a shape validated at construction cannot fail unless something is broken.
void must(const kc::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "tiergate: CUDA executor: %s\n", s.error.c_str());
  std::abort();
}

std::size_t dtype_bytes(DType t) { return kernels::block_bytes(t); }

// Grows `buffer` to at least `bytes` (geometrically, so a step allocates only while the batch
// shapes are still growing).
void ensure(kc::DeviceBuffer& buffer, std::size_t bytes) {
  if (buffer.bytes() >= bytes) return;
  buffer = kc::DeviceBuffer(std::max(bytes, buffer.bytes() * 3 / 2));
}

// Batch buckets of graph-replayed decode steps (see run_graph).
constexpr std::size_t kGraphBatches[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// Attention params of `tokens` decode tokens over tables `max_blocks` wide: sizes only, no pointer.
kernels::PagedAttentionParams decode_shape(const ModelConfig& c, const CudaExecutorOptions& o, std::size_t tokens,
                                           std::size_t max_blocks) {
  kernels::PagedAttentionParams p;
  p.kv = {nullptr, nullptr, o.kv_dtype, 1, o.block_size, c.kv_heads, c.head_dim};
  p.layout.max_blocks_per_seq = max_blocks;
  p.layout.num_tokens = tokens;
  p.num_heads = c.heads;
  return p;
}

struct GpuWeight {
  kc::DeviceBuffer data;  // [rows, cols] in the weight dtype (norms: F32)
  std::size_t rows = 0, cols = 0;
};

struct GpuLayer {
  GpuWeight attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

}  // namespace

CudaExecutorOptions cuda_executor_options(const EngineConfig& config) {
  CudaExecutorOptions options;
  options.block_size = config.block_size;
  options.num_blocks = config.num_blocks;
  options.kv_cache_memory_fraction = config.kv_cache_memory_fraction;
  options.kv_dtype = config.kv_dtype;
  options.cuda_graphs = config.cuda_graphs;
  // A step holds every running sequence's decode token plus prefill chunks up to the budget.
  options.max_batch_tokens = config.token_budget + config.max_running;
  options.max_sequences = config.max_running;
  return options;
}

CudaStepLimits cuda_step_limits(const ModelConfig& config, const CudaExecutorOptions& options) {
  CudaStepLimits limits;
  limits.tokens = options.max_batch_tokens;
  limits.sequences = options.max_sequences > 0 ? std::min(options.max_sequences, limits.tokens) : limits.tokens;
  if (options.cuda_graphs) {
    // Decode steps of up to 256 sequences replay a graph padded to the next batch bucket.
    const std::size_t most = kGraphBatches[std::size(kGraphBatches) - 1];
    const std::size_t graphed = options.max_sequences > 0 ? std::min(options.max_sequences, most) : most;
    const std::size_t bucket = *std::lower_bound(std::begin(kGraphBatches), std::end(kGraphBatches), graphed);
    limits.tokens = std::max(limits.tokens, bucket);
    limits.sequences = std::max(limits.sequences, bucket);
  }
  if (config.context_length > 0) {
    limits.max_blocks = ceil_div(config.context_length, options.block_size);
  } else if (options.num_blocks > 0) {
    limits.max_blocks = options.num_blocks;
  }
  return limits;
}

std::size_t CudaStepBytes::total() const {
  return x + h + q + attn + k + v + gate + up + h_half + selected + logits + tokens + positions + token_seq +
         logit_rows + block_tables + draw_logits + sampling_workspace;
}

CudaStepBytes cuda_step_bytes(const ModelConfig& c, DType weight_dtype, const CudaStepLimits& limits) {
  const std::size_t T = limits.tokens, S = std::max<std::size_t>(limits.sequences, 1);
  const std::size_t dim = c.dim, q_width = c.heads * c.head_dim, kv_width = c.kv_heads * c.head_dim;
  const std::size_t f32 = sizeof(float), i32 = sizeof(std::int32_t);
  CudaStepBytes b;
  b.x = b.h = T * dim * f32;
  b.q = b.attn = T * q_width * f32;
  b.k = b.v = T * kv_width * f32;
  b.gate = b.up = T * c.ffn_dim * f32;
  b.h_half = T * std::max({dim, q_width, c.ffn_dim}) * kernels::block_bytes(weight_dtype);
  b.selected = S * dim * f32;
  b.logits = S * c.vocab_size * f32;
  b.tokens = b.positions = b.token_seq = std::max<std::size_t>(T, 1) * i32;
  b.logit_rows = S * i32;
  b.block_tables = S * std::max<std::size_t>(limits.max_blocks, 1) * i32;
  b.draw_logits = S * c.vocab_size * f32;
  b.sampling_workspace = kc::sampling_workspace_bytes(static_cast<std::int32_t>(S), static_cast<std::int32_t>(c.vocab_size));
  return b;
}

namespace {

// The context of at most `longest` keys at which a decode launch of `p`'s token count runs the
// most splits. The planner asks for one split per 256-key chunk up to what fills the SMs, then
// rounds each split up to whole chunks, which can run fewer than it asked: a context one key past
// a whole number of chunks may split less than that whole number (2064 keys asked for 8 splits run
// 5 of 512 keys; 2048 run 8 of 256). So the most is either at `longest` (where it asks for every
// chunk, which the rounding keeps) or at the widest whole-chunk context that runs one split per
// chunk: those form a prefix (1, 2, ... up to the count that fills the SMs), found by bisection.
std::size_t context_with_most_splits(const kernels::PagedAttentionParams& p, std::size_t longest, int sm_count) {
  const auto splits_at = [&](std::size_t chunks) {
    return kc::plan_decode_splits(p, {chunks * kc::kSplitAlign, 1, 0}, sm_count).num_splits;
  };
  std::size_t lo = 1, hi = longest / kc::kSplitAlign;  // splits_at(lo) == lo; find the last such
  if (hi == 0) return longest;
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo + 1) / 2;
    if (splits_at(mid) == mid) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const std::size_t whole = lo * kc::kSplitAlign;
  return splits_at(lo) > kc::plan_decode_splits(p, {longest, 1, 0}, sm_count).num_splits ? whole : longest;
}

}  // namespace

std::size_t cuda_decode_workspace_bytes(const ModelConfig& config, const CudaExecutorOptions& options,
                                        const CudaStepLimits& limits, int sm_count) {
  if (limits.max_blocks == 0) return 0;
  // The token count moves the split both ways (more tokens fill the SMs with fewer splits): try
  // each, at the context that splits it most.
  const std::size_t longest = limits.max_blocks * options.block_size;
  std::size_t most = 0;
  for (std::size_t n = 1; n <= limits.tokens; ++n) {
    const kernels::PagedAttentionParams p = decode_shape(config, options, n, limits.max_blocks);
    const kc::AttentionBatchShape shape{context_with_most_splits(p, longest, sm_count), 1, 0};
    most = std::max(most, kc::paged_attention_workspace_bytes(p, shape, sm_count));
  }
  return most;
}

std::size_t cuda_kv_blocks(std::size_t free_bytes, double fraction, std::size_t block_bytes) {
  if (block_bytes == 0 || !(fraction > 0)) return 0;
  const double budget = std::min(fraction, 1.0) * static_cast<double>(free_bytes);
  const auto fit = static_cast<std::size_t>(budget / static_cast<double>(block_bytes));
  return fit > 0 ? fit - 1 : 0;  // one block is the scratch block
}

struct CudaExecutor::Impl {
  ModelConfig config;
  CudaExecutorOptions options;
  kc::Stream stream;
  kc::Gemm gemm;
  std::vector<GpuLayer> layers;
  GpuWeight embedding, output_norm, output;
  bool tied_output = false;  // the output projection is the embedding table
  std::size_t weight_bytes = 0;
  std::size_t num_blocks = 0;
  std::size_t layer_kv_bytes = 0;  // one layer's K (or V) pool
  kc::DeviceBuffer k_cache, v_cache;  // [layers, num_blocks, block_size, kv_heads, head_dim]
  // Per-step device buffers, grown on demand.
  kc::DeviceBuffer tokens, positions, token_seq, block_tables, logit_rows, next_tokens;
  kc::DeviceBuffer x, h, h_half, q, k, v, attn, gate, up, selected, logits, attn_workspace;
  // Sampling buffers (outside any graph, so they grow without a recapture).
  kc::DeviceBuffer draw_rows, draw_logits, draw_params, history_offsets, history_tokens, history_counts,
      draw_tokens, draw_logprobs, sampling_workspace;
  kc::DeviceBuffer bias_offsets, bias_tokens, bias_values, token_masks, mask_index;  // logit_bias, grammar masks

  explicit Impl(const ModelConfig& c, CudaExecutorOptions o) : config(c), options(o), gemm(stream.handle()) {}

  void validate_shape() const {
    const ModelConfig& c = config;
    if (c.dim == 0 || c.layers == 0 || c.heads == 0 || c.kv_heads == 0 || c.head_dim == 0 || c.ffn_dim == 0 ||
        c.vocab_size == 0)
      throw std::runtime_error("CUDA executor: the model shape has a zero dimension");
    if (c.heads % c.kv_heads != 0)
      throw std::runtime_error("CUDA executor: heads (" + std::to_string(c.heads) + ") must be a multiple of kv_heads (" +
                               std::to_string(c.kv_heads) + ")");
    if (options.weight_dtype != DType::kF16 && options.weight_dtype != DType::kBF16)
      throw std::runtime_error("CUDA executor: weights must be F16 or BF16");
    if (auto s = kc::validate_paged_attention_shape(decode_shape(c, options, 1, 1), {}); !s.ok())
      throw std::runtime_error("CUDA executor: " + s.error);
    if (auto e = kc::rope_error(1, c.heads, c.head_dim, c.rope_dims, c.rope_base); !e.empty())
      throw std::runtime_error("CUDA executor: " + e);
  }

  GpuWeight norm_from(const Weight& w) {
    if (w.type != DType::kF32) throw std::runtime_error("CUDA executor: norm weights must be F32 in the file");
    GpuWeight g{kc::DeviceBuffer(w.rows * w.cols * sizeof(float)), w.rows, w.cols};
    g.data.upload(w.data, g.data.bytes(), stream.handle());
    return g;
  }

  GpuWeight matrix_from(const Weight& w, kc::DeviceBuffer& staging) {
    if (auto e = kc::dequantize_rows_error(w.type, w.cols, options.weight_dtype); !e.empty())
      throw std::runtime_error("CUDA executor: " + e);
    const std::size_t bytes = w.rows * kernels::row_bytes(w.type, w.cols);
    ensure(staging, bytes);
    staging.upload(w.data, bytes, stream.handle());
    GpuWeight g{kc::DeviceBuffer(w.rows * w.cols * dtype_bytes(options.weight_dtype)), w.rows, w.cols};
    must(kc::dequantize_rows(w.type, staging.get(), w.rows, w.cols, options.weight_dtype, g.data.get(),
                             stream.handle()));
    stream.synchronize();  // before the staging buffer is reused
    weight_bytes += g.data.bytes();
    return g;
  }

  GpuWeight random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed) {
    GpuWeight g{kc::DeviceBuffer(rows * cols * dtype_bytes(options.weight_dtype)), rows, cols};
    const float a = 1.0f / std::sqrt(static_cast<float>(cols));
    must(kc::fill_uniform(options.weight_dtype, g.data.get(), rows * cols, -a, a, seed, stream.handle()));
    weight_bytes += g.data.bytes();
    return g;
  }

  GpuWeight ones(std::size_t n) {
    GpuWeight g{kc::DeviceBuffer(n * sizeof(float)), 1, n};
    must(kc::fill_constant(g.data.as<float>(), n, 1.0f, stream.handle()));
    return g;
  }

  // Before the KV pool: the buffers of the largest step the engine sends (options'
  // max_batch_tokens), so that the pool's share of free memory is taken from what they leave.
  void reserve_largest_step() {
    const CudaStepLimits limits = cuda_step_limits(config, options);
    if (limits.tokens == 0) return;
    const CudaStepBytes bytes = cuda_step_bytes(config, options.weight_dtype, limits);
    reserve(bytes);
    // The draws of a step: one per sequence (n > 1 forks and long penalty histories may grow them).
    const std::size_t draws = std::max<std::size_t>(limits.sequences, 1);
    ensure(draw_logits, bytes.draw_logits);
    ensure(sampling_workspace, bytes.sampling_workspace);
    ensure(next_tokens, bytes.logit_rows);
    for (kc::DeviceBuffer* b : {&draw_rows, &draw_tokens, &draw_logprobs}) ensure(*b, bytes.logit_rows);
    ensure(draw_params, draws * sizeof(kernels::SamplingRowParams));
    ensure(history_offsets, (draws + 1) * sizeof(std::int32_t));
    grow(attn_workspace, cuda_decode_workspace_bytes(config, options, limits, kc::device_info().sm_count));
  }

  void allocate_kv() {
    const ModelConfig& c = config;
    const std::size_t per_block = options.block_size * c.kv_heads * c.head_dim * dtype_bytes(options.kv_dtype);
    const std::size_t block_bytes = 2 * c.layers * per_block;  // keys and values of every layer
    stream.synchronize();  // the weights and reserved buffers are in place: free memory is what is left
    const std::size_t free_bytes = kc::device_info().free_memory;
    std::size_t blocks = options.num_blocks;
    if (blocks == 0) {
      blocks = cuda_kv_blocks(free_bytes, options.kv_cache_memory_fraction, block_bytes);
      if (blocks == 0)
        throw std::runtime_error("CUDA executor: no device memory left for the KV cache after the weights (" +
                                 std::to_string(weight_bytes >> 20) + " MiB) and the buffers of a " +
                                 std::to_string(options.max_batch_tokens) + "-token step (" +
                                 std::to_string(step_bytes() >> 20) + " MiB); " + std::to_string(free_bytes >> 20) +
                                 " MiB free: raise --kv-cache-memory-fraction or lower the token budget");
    } else if ((blocks + 1) * block_bytes > free_bytes) {
      throw std::runtime_error("CUDA executor: " + std::to_string(blocks) + " KV blocks need " +
                               std::to_string(((blocks + 1) * block_bytes) >> 20) + " MiB but " +
                               std::to_string(free_bytes >> 20) + " MiB are free; lower --num-blocks");
    }
    // One block past the pool the BlockManager accounts for: the scratch block that padding
    // tokens of graph-replayed decode steps write and read.
    num_blocks = blocks;
    layer_kv_bytes = (blocks + 1) * per_block;
    k_cache = kc::DeviceBuffer(c.layers * layer_kv_bytes);
    v_cache = kc::DeviceBuffer(c.layers * layer_kv_bytes);
    // Zeroed, so that a slot no step has written reads as 0 on every run, as in the CPU's pool.
    k_cache.zero(stream.handle());
    v_cache.zero(stream.handle());
    const std::size_t context_blocks = ceil_div(c.context_length, options.block_size);
    graph_max_blocks = std::min(context_blocks > 0 ? context_blocks : blocks, blocks);
  }

  kernels::PagedKv layer_kv(std::size_t l) const {
    return {static_cast<char*>(k_cache.get()) + l * layer_kv_bytes, static_cast<char*>(v_cache.get()) + l * layer_kv_bytes,
            options.kv_dtype, num_blocks + 1, options.block_size, config.kv_heads, config.head_dim};
  }

  void project(const kc::DeviceBuffer& in, const GpuWeight& w, void* out, std::size_t rows, bool accumulate) {
    kc::GemmParams p;
    p.x = in.get();
    p.w = w.data.get();
    p.y = out;
    p.x_type = p.w_type = options.weight_dtype;
    p.y_type = DType::kF32;
    p.tokens = rows;
    p.in = w.cols;
    p.out = w.rows;
    p.accumulate = accumulate;
    must(gemm.run(p));
  }

  void to_half(const kc::DeviceBuffer& in, std::size_t n) {
    must(kc::convert_activations(in.as<float>(), options.weight_dtype, h_half.get(), n, stream.handle()));
  }

  // A run of the step's tokens [begin, end) that one attention launch covers.
  struct AttentionPart {
    std::size_t begin = 0, end = 0;
    kc::AttentionBatchShape shape;
  };

  // What the launches of one step need besides the device buffers' contents.
  struct StepShape {
    std::size_t tokens = 0;      // T
    std::size_t logit_rows = 0;  // R
    std::size_t max_blocks = 0;  // block table width
    AttentionPart parts[2];      // decode tokens, then prefill chunks
  };

  // Attention over one part: its tokens' rows of q/out and of the token arrays (device buffers).
  kernels::PagedAttentionParams attention_params(const StepShape& st, const kernels::PagedKv& kv,
                                                 const AttentionPart& part, float scale) const {
    const std::size_t q_width = config.heads * config.head_dim;
    const kernels::TokenLayout layout{block_tables.as<std::int32_t>(), st.max_blocks,
                                      token_seq.as<std::int32_t>() + part.begin, positions.as<std::int32_t>() + part.begin,
                                      part.end - part.begin};
    return {kv, layout, q.as<float>() + part.begin * q_width, attn.as<float>() + part.begin * q_width, config.heads,
            scale};
  }

  float attention_scale() const { return 1.0f / std::sqrt(static_cast<float>(config.head_dim)); }

  // Grows a per-step buffer; any growth invalidates captured graphs (they hold the old pointers).
  void grow(kc::DeviceBuffer& buffer, std::size_t bytes) {
    if (buffer.bytes() >= bytes) return;
    ensure(buffer, bytes);
    ++buffers_generation;
  }

  // Grows every per-step buffer to `b` (cuda_step_bytes); the draw buffers, outside any graph,
  // grow in forward_sampled. Called before a step's first launch (and before a capture).
  void reserve(const CudaStepBytes& b) {
    grow(x, b.x);
    grow(h, b.h);
    grow(h_half, b.h_half);
    grow(q, b.q);
    grow(attn, b.attn);
    grow(k, b.k);
    grow(v, b.v);
    grow(gate, b.gate);
    grow(up, b.up);
    grow(selected, b.selected);
    grow(logits, b.logits);
    grow(tokens, b.tokens);
    grow(positions, b.positions);
    grow(token_seq, b.token_seq);
    grow(logit_rows, b.logit_rows);
    grow(block_tables, b.block_tables);
  }

  std::size_t step_bytes() const {
    std::size_t total = 0;
    for (const kc::DeviceBuffer* b : {&tokens, &positions, &token_seq, &block_tables, &logit_rows, &next_tokens, &x, &h,
                                      &h_half, &q, &k, &v, &attn, &gate, &up, &selected, &logits, &attn_workspace,
                                      &draw_rows, &draw_logits, &draw_params, &history_offsets, &history_tokens,
                                      &history_counts, &draw_tokens, &draw_logprobs, &sampling_workspace})
      total += b->bytes();
    return total;
  }

  // The split-K workspace of `st`'s decode part, from its sizes alone (its token arrays and block
  // tables need not be on the device yet).
  void reserve_workspace(const StepShape& st) {
    std::size_t bytes = 16;
    for (const AttentionPart& part : st.parts) {
      if (part.begin == part.end) continue;
      bytes = std::max(bytes, kc::paged_attention_workspace_bytes(
                                  decode_shape(config, options, part.end - part.begin, st.max_blocks), part.shape));
    }
    grow(attn_workspace, bytes);
  }

  template <class T>
  void upload(kc::DeviceBuffer& buffer, const std::vector<T>& host) {
    grow(buffer, std::max<std::size_t>(host.size(), 1) * sizeof(T));
    kc::memcpy_async(buffer.get(), host.data(), host.size() * sizeof(T), stream.handle());
  }

  // Enqueues the whole step: embedding, every layer, the logits of rows logit_rows[0..R). Reads
  // only device buffers and `st`, allocates nothing and never synchronises, so a CUDA graph can
  // capture it.
  void launch(const StepShape& st) {
    const ModelConfig& c = config;
    const std::size_t T = st.tokens, R = st.logit_rows;
    const std::size_t dim = c.dim, q_width = c.heads * c.head_dim;
    const float scale = attention_scale();
    void* s = stream.handle();
    must(kc::embedding_lookup(options.weight_dtype, embedding.data.get(), c.vocab_size, dim, tokens.as<std::int32_t>(),
                              T, x.as<float>(), s));
    for (std::size_t l = 0; l < c.layers; ++l) {
      const GpuLayer& w = layers[l];
      must(kc::rms_norm(x.as<float>(), w.attn_norm.data.as<float>(), h.as<float>(), T, dim, c.rms_eps, s));
      to_half(h, T * dim);
      project(h_half, w.wq, q.get(), T, false);
      project(h_half, w.wk, k.get(), T, false);
      project(h_half, w.wv, v.get(), T, false);
      must(kc::rope(q.as<float>(), positions.as<int>(), T, c.heads, c.head_dim, c.rope_dims, c.rope_base, s));
      must(kc::rope(k.as<float>(), positions.as<int>(), T, c.kv_heads, c.head_dim, c.rope_dims, c.rope_base, s));
      const kernels::PagedKv kv = layer_kv(l);
      must(kc::kv_append({kv, attention_params(st, kv, {0, T, {}}, scale).layout, k.as<float>(), v.as<float>()}, s));
      for (const AttentionPart& part : st.parts) {
        if (part.begin == part.end) continue;
        must(kc::paged_attention(attention_params(st, kv, part, scale), part.shape,
                                 {attn_workspace.get(), attn_workspace.bytes()}, s));
      }
      to_half(attn, T * q_width);
      project(h_half, w.wo, x.get(), T, true);  // x += attn · Wo^T

      must(kc::rms_norm(x.as<float>(), w.ffn_norm.data.as<float>(), h.as<float>(), T, dim, c.rms_eps, s));
      to_half(h, T * dim);
      project(h_half, w.w_gate, gate.get(), T, false);
      project(h_half, w.w_up, up.get(), T, false);
      must(kc::silu_mul(gate.as<float>(), up.as<float>(), gate.as<float>(), T * c.ffn_dim, s));
      to_half(gate, T * c.ffn_dim);
      project(h_half, w.w_down, x.get(), T, true);  // x += act · Wdown^T
    }
    if (R == 0) return;
    must(kc::gather_rows(x.as<float>(), logit_rows.as<std::int32_t>(), R, dim, selected.as<float>(), s));
    must(kc::rms_norm(selected.as<float>(), output_norm.data.as<float>(), selected.as<float>(), R, dim, c.rms_eps, s));
    to_half(selected, R * dim);
    project(h_half, tied_output ? embedding : output, logits.get(), R, false);
  }

  // Every layer for the batch's tokens; leaves the logits of batch.logit_rows in logits[0..R).
  void run(const StepBatch& batch) {
    const ModelConfig& c = config;
    const std::size_t T = batch.tokens.size();
    TG_CHECK(T > 0 && batch.positions.size() == T && batch.token_seq.size() == T);
    for (const TokenId t : batch.tokens) TG_CHECK(t >= 0 && static_cast<std::size_t>(t) < c.vocab_size);
    for (const std::int32_t r : batch.logit_rows) TG_CHECK(r >= 0 && static_cast<std::size_t>(r) < T);

    // The engine puts decode tokens (one per sequence) first, then prefill chunks. Attention runs
    // as two launches over those two runs of tokens: the split-K decode kernel for the first, the
    // tiled prefill kernel for the rest (either alone when the step has only one kind).
    std::vector<std::size_t> per_seq(batch.num_sequences(), 0);
    for (std::size_t t = 0; t < T; ++t) ++per_seq[static_cast<std::size_t>(batch.token_seq[t])];
    std::size_t decode_tokens = 0;
    while (decode_tokens < T && per_seq[static_cast<std::size_t>(batch.token_seq[decode_tokens])] == 1) ++decode_tokens;
    StepShape st{T, batch.logit_rows.size(), batch.max_blocks, {{0, decode_tokens, {}}, {decode_tokens, T, {}}}};
    std::size_t max_context = 0;
    for (AttentionPart& part : st.parts) {
      for (std::size_t t = part.begin; t < part.end; ++t) {
        part.shape.max_context_len = std::max(part.shape.max_context_len, static_cast<std::size_t>(batch.positions[t]) + 1);
        part.shape.max_query_len = std::max(part.shape.max_query_len, per_seq[static_cast<std::size_t>(batch.token_seq[t])]);
      }
      max_context = std::max(max_context, part.shape.max_context_len);
    }
    if (options.cuda_graphs && decode_tokens == T && graphable(batch, max_context)) return run_graph(batch, max_context);

    // Every buffer grows before the step's first launch: one replaced mid-step would make
    // cudaFree wait for the stream.
    reserve(cuda_step_bytes(config, options.weight_dtype,
                            {T, std::max(st.logit_rows, batch.num_sequences()), batch.max_blocks}));
    reserve_workspace(st);
    upload(tokens, batch.tokens);
    upload(positions, batch.positions);
    upload(token_seq, batch.token_seq);
    upload(block_tables, batch.block_tables);
    upload(logit_rows, batch.logit_rows);
    launch(st);
  }

  // ---- CUDA graphs for pure decode steps ----------------------------------------------------
  // A step of B' <= kGraphBatches.back() decode tokens replays the graph captured for the batch
  // bucket B >= B' and the context bucket C >= its longest context. Padding tokens (B - B') are
  // token 0 at position 0 of a sequence whose table names only the scratch block (one block past
  // the BlockManager's pool), so they write and read nothing anyone else owns. Every step the
  // token arrays and block tables (width graph_max_blocks) are copied into the fixed buffers the
  // graph reads. The same kernels as the eager path; only the decode attention's split may
  // differ (it is planned for the context bucket), so results agree to fp32 summation order.
  static constexpr std::size_t kMinGraphContext = 256;

  bool graphable(const StepBatch& batch, std::size_t max_context) const {
    if (batch.tokens.size() > kGraphBatches[std::size(kGraphBatches) - 1]) return false;
    if (batch.max_blocks > graph_max_blocks || max_context > graph_max_blocks * options.block_size) return false;
    if (batch.logit_rows.size() != batch.tokens.size()) return false;
    for (std::size_t r = 0; r < batch.logit_rows.size(); ++r)
      if (batch.logit_rows[r] != static_cast<std::int32_t>(r)) return false;
    return true;
  }

  StepShape graph_shape(std::size_t bucket, std::size_t context) const {
    StepShape st{bucket, bucket, graph_max_blocks, {{0, bucket, {}}, {bucket, bucket, {}}}};
    st.parts[0].shape.max_context_len = context;
    st.parts[0].shape.max_query_len = 1;
    return st;
  }

  void run_graph(const StepBatch& batch, std::size_t max_context) {
    const std::size_t T = batch.tokens.size();
    const std::size_t bucket = *std::lower_bound(std::begin(kGraphBatches), std::end(kGraphBatches), T);
    std::size_t context = kMinGraphContext;
    while (context < max_context) context *= 2;
    context = std::min(context, graph_max_blocks * options.block_size);
    const auto scratch = static_cast<std::int32_t>(num_blocks);  // the block past the pool
    // Buffers for the bucket (reserved up front for the engine's largest step: then this grows
    // nothing; a bucket past it grows them, and the graphs captured before are recaptured).
    reserve(cuda_step_bytes(config, options.weight_dtype, {bucket, bucket, graph_max_blocks}));
    reserve_workspace(graph_shape(bucket, context));

    padded_tokens.assign(bucket, 0);
    padded_positions.assign(bucket, 0);
    padded_seq.resize(bucket);
    padded_tables.assign(bucket * graph_max_blocks, scratch);
    padded_rows.resize(bucket);
    for (std::size_t t = 0; t < bucket; ++t) {
      padded_rows[t] = static_cast<std::int32_t>(t);
      padded_seq[t] = static_cast<std::int32_t>(t);  // padding: its own row of scratch blocks
    }
    const std::size_t rows = batch.num_sequences();
    TG_CHECK(rows <= bucket);
    for (std::size_t t = 0; t < T; ++t) {
      padded_tokens[t] = batch.tokens[t];
      padded_positions[t] = batch.positions[t];
      padded_seq[t] = batch.token_seq[t];
    }
    for (std::size_t r = 0; r < rows; ++r) {
      std::copy_n(batch.block_tables.begin() + static_cast<long>(r * batch.max_blocks), batch.max_blocks,
                  padded_tables.begin() + static_cast<long>(r * graph_max_blocks));
    }
    // Rows the real tokens do not use keep scratch tables; so do the padding tokens' rows, which
    // may coincide with a real row index only if that row is unused (rows <= T in a decode step).
    for (std::size_t t = T; t < bucket; ++t) TG_CHECK(t >= rows);
    for (std::int32_t& b : padded_tables)
      if (b < 0) b = scratch;  // unused table slots (never read below a token's position)

    kc::memcpy_async(tokens.get(), padded_tokens.data(), bucket * sizeof(std::int32_t), stream.handle());
    kc::memcpy_async(positions.get(), padded_positions.data(), bucket * sizeof(std::int32_t), stream.handle());
    kc::memcpy_async(token_seq.get(), padded_seq.data(), bucket * sizeof(std::int32_t), stream.handle());
    kc::memcpy_async(block_tables.get(), padded_tables.data(), padded_tables.size() * sizeof(std::int32_t),
                     stream.handle());
    kc::memcpy_async(logit_rows.get(), padded_rows.data(), bucket * sizeof(std::int32_t), stream.handle());

    CapturedGraph& g = graphs[{bucket, context}];
    if (!g.graph || g.generation != buffers_generation) {
      const StepShape st = graph_shape(bucket, context);
      kc::Graph::begin_capture(stream.handle());
      launch(st);
      g.graph = kc::Graph::end_capture(stream.handle());
      g.generation = buffers_generation;
    }
    g.graph.launch(stream.handle());
  }

  struct CapturedGraph {
    kc::Graph graph;
    std::uint64_t generation = 0;
  };
  std::size_t graph_max_blocks = 0;  // block table width of graph steps: the model's context
  std::uint64_t buffers_generation = 0;
  std::map<std::pair<std::size_t, std::size_t>, CapturedGraph> graphs;  // (batch bucket, context bucket)
  std::vector<std::int32_t> padded_tokens, padded_positions, padded_seq, padded_tables, padded_rows;
};

CudaExecutor::CudaExecutor(const Model& model, CudaExecutorOptions options) {
  std::string why;
  if (!kc::device_available(&why)) throw std::runtime_error("CUDA executor: " + why);
  impl_ = std::make_unique<Impl>(model.config(), options);
  Impl& m = *impl_;
  m.validate_shape();
  kc::DeviceBuffer staging;
  m.embedding = m.matrix_from(model.embedding(), staging);
  m.tied_output = model.output().data == model.embedding().data;
  if (!m.tied_output) m.output = m.matrix_from(model.output(), staging);
  m.output_norm = m.norm_from(model.output_norm());
  for (const LayerWeights& w : model.layers()) {
    GpuLayer g;
    g.attn_norm = m.norm_from(w.attn_norm);
    g.ffn_norm = m.norm_from(w.ffn_norm);
    g.wq = m.matrix_from(w.wq, staging);
    g.wk = m.matrix_from(w.wk, staging);
    g.wv = m.matrix_from(w.wv, staging);
    g.wo = m.matrix_from(w.wo, staging);
    g.w_gate = m.matrix_from(w.w_gate, staging);
    g.w_up = m.matrix_from(w.w_up, staging);
    g.w_down = m.matrix_from(w.w_down, staging);
    m.layers.push_back(std::move(g));
  }
  staging = kc::DeviceBuffer();
  m.reserve_largest_step();
  m.allocate_kv();
}

CudaExecutor::CudaExecutor(const ModelConfig& shape, CudaExecutorOptions options, std::uint64_t seed) {
  std::string why;
  if (!kc::device_available(&why)) throw std::runtime_error("CUDA executor: " + why);
  impl_ = std::make_unique<Impl>(shape, options);
  Impl& m = *impl_;
  m.validate_shape();
  const ModelConfig& c = m.config;
  const std::size_t q_width = c.heads * c.head_dim, kv_width = c.kv_heads * c.head_dim;
  std::uint64_t next_seed = seed;
  m.embedding = m.random_matrix(c.vocab_size, c.dim, next_seed++);
  m.tied_output = options.tie_embeddings;
  if (!m.tied_output) m.output = m.random_matrix(c.vocab_size, c.dim, next_seed++);
  m.output_norm = m.ones(c.dim);
  for (std::size_t l = 0; l < c.layers; ++l) {
    GpuLayer g;
    g.attn_norm = m.ones(c.dim);
    g.ffn_norm = m.ones(c.dim);
    g.wq = m.random_matrix(q_width, c.dim, next_seed++);
    g.wk = m.random_matrix(kv_width, c.dim, next_seed++);
    g.wv = m.random_matrix(kv_width, c.dim, next_seed++);
    g.wo = m.random_matrix(c.dim, q_width, next_seed++);
    g.w_gate = m.random_matrix(c.ffn_dim, c.dim, next_seed++);
    g.w_up = m.random_matrix(c.ffn_dim, c.dim, next_seed++);
    g.w_down = m.random_matrix(c.dim, c.ffn_dim, next_seed++);
    m.layers.push_back(std::move(g));
  }
  m.reserve_largest_step();
  m.allocate_kv();
}

CudaExecutor::~CudaExecutor() = default;

void CudaExecutor::forward(const StepBatch& batch, std::vector<float>& logits) {
  Impl& m = *impl_;
  m.run(batch);
  const std::size_t n = batch.logit_rows.size() * m.config.vocab_size;
  logits.resize(n);
  if (n > 0) kc::memcpy_async(logits.data(), m.logits.get(), n * sizeof(float), m.stream.handle());
  m.stream.synchronize();
}

void CudaExecutor::forward_sampled(const StepBatch& batch, const SamplingStep& draws, SampledStep& out) {
  Impl& m = *impl_;
  const std::size_t R = batch.logit_rows.size(), D = draws.size(), vocab = m.config.vocab_size;
  TG_CHECK(draws.params.size() == D && draws.history_offsets.size() == D + 1);
  TG_CHECK(draws.bias_offsets.size() == D + 1 && draws.mask_index.size() == D);
  for (const std::int32_t row : draws.logit_rows) TG_CHECK(row >= 0 && static_cast<std::size_t>(row) < R);
  m.run(batch);
  void* s = m.stream.handle();
  // Host → device; pageable copies, done before the host vectors can change.
  auto stage = [&](kc::DeviceBuffer& buffer, const auto& host) {
    const std::size_t bytes = host.size() * sizeof(host[0]);
    ensure(buffer, std::max<std::size_t>(bytes, 16));
    if (bytes > 0) kc::memcpy_async(buffer.get(), host.data(), bytes, s);
  };
  if (D > 0) {
    // Draws read the logit rows in place when they are the rows in order (no fork this step);
    // otherwise each gets its own copy of its row (several share one when n > 1 forks).
    bool in_place = D == R;
    for (std::size_t d = 0; in_place && d < D; ++d) in_place = draws.logit_rows[d] == static_cast<std::int32_t>(d);
    if (!in_place) {
      stage(m.draw_rows, draws.logit_rows);
      ensure(m.draw_logits, D * vocab * sizeof(float));
      must(kc::gather_rows(m.logits.as<float>(), m.draw_rows.as<std::int32_t>(), D, vocab, m.draw_logits.as<float>(),
                           s));
    }
    stage(m.draw_params, draws.params);
    stage(m.history_offsets, draws.history_offsets);
    stage(m.history_tokens, draws.history_tokens);
    stage(m.history_counts, draws.history_counts);
    stage(m.bias_offsets, draws.bias_offsets);
    stage(m.bias_tokens, draws.bias_tokens);
    stage(m.bias_values, draws.bias_values);
    const bool masked = !draws.token_masks.empty();
    if (masked) {
      stage(m.token_masks, draws.token_masks);
      stage(m.mask_index, draws.mask_index);
    }
    ensure(m.draw_tokens, D * sizeof(std::int32_t));
    ensure(m.draw_logprobs, D * sizeof(float));
    const auto rows = static_cast<std::int32_t>(D), width = static_cast<std::int32_t>(vocab);
    ensure(m.sampling_workspace, std::max<std::size_t>(kc::sampling_workspace_bytes(rows, width), 16));
    kernels::SamplingBatch b;
    b.logits = in_place ? m.logits.as<float>() : m.draw_logits.as<float>();
    b.rows = rows;
    b.vocab = width;
    b.params = m.draw_params.as<kernels::SamplingRowParams>();
    b.history_offsets = m.history_offsets.as<std::int32_t>();
    b.history_tokens = m.history_tokens.as<std::int32_t>();
    b.history_counts = m.history_counts.as<std::int32_t>();
    b.bias_offsets = m.bias_offsets.as<std::int32_t>();
    b.bias_tokens = m.bias_tokens.as<std::int32_t>();
    b.bias_values = m.bias_values.as<float>();
    b.token_masks = masked ? m.token_masks.as<std::uint32_t>() : nullptr;
    b.mask_index = masked ? m.mask_index.as<std::int32_t>() : nullptr;
    b.tokens = m.draw_tokens.as<std::int32_t>();
    b.logprobs = draws.want_logprobs ? m.draw_logprobs.as<float>() : nullptr;
    must(kc::sample(b, m.sampling_workspace.get(), m.sampling_workspace.bytes(), s));
  }
  out.tokens.resize(D);
  out.logprobs.resize(draws.want_logprobs ? D : 0);
  out.logits.resize(draws.want_logits ? R * vocab : 0);
  if (D > 0) kc::memcpy_async(out.tokens.data(), m.draw_tokens.get(), D * sizeof(std::int32_t), s);
  if (!out.logprobs.empty()) kc::memcpy_async(out.logprobs.data(), m.draw_logprobs.get(), D * sizeof(float), s);
  if (!out.logits.empty()) kc::memcpy_async(out.logits.data(), m.logits.get(), R * vocab * sizeof(float), s);
  m.stream.synchronize();
}

void CudaExecutor::forward_greedy(const StepBatch& batch, std::vector<TokenId>& next) {
  Impl& m = *impl_;
  const std::size_t R = batch.logit_rows.size();
  ensure(m.next_tokens, std::max<std::size_t>(R, 1) * sizeof(std::int32_t));
  m.run(batch);
  next.resize(R);
  if (R > 0) {
    must(kc::argmax_rows(m.logits.as<float>(), R, m.config.vocab_size, m.next_tokens.as<std::int32_t>(),
                         m.stream.handle()));
    kc::memcpy_async(next.data(), m.next_tokens.get(), R * sizeof(std::int32_t), m.stream.handle());
  }
  m.stream.synchronize();
}

void CudaExecutor::copy_blocks(std::span<const BlockCopy> copies) {
  Impl& m = *impl_;
  const std::size_t block_bytes = m.layer_kv_bytes / (m.num_blocks + 1);
  for (const BlockCopy& c : copies) {
    TG_CHECK(c.from >= 0 && c.to >= 0 && static_cast<std::size_t>(c.from) < m.num_blocks &&
             static_cast<std::size_t>(c.to) < m.num_blocks);
    for (std::size_t l = 0; l < m.config.layers; ++l) {
      for (kc::DeviceBuffer* pool : {&m.k_cache, &m.v_cache}) {
        char* base = static_cast<char*>(pool->get()) + l * m.layer_kv_bytes;
        kc::memcpy_async(base + static_cast<std::size_t>(c.to) * block_bytes,
                         base + static_cast<std::size_t>(c.from) * block_bytes, block_bytes, m.stream.handle());
      }
    }
  }
}

std::string CudaExecutor::describe() const {
  const Impl& m = *impl_;
  const kc::DeviceInfo info = kc::device_info();
  return "CUDA " + info.name + ", weights " + (m.options.weight_dtype == DType::kBF16 ? "bf16" : "fp16") + " (" +
         std::to_string(m.weight_bytes >> 20) + " MiB), KV cache " + std::to_string(m.num_blocks) + " blocks of " +
         std::to_string(m.options.block_size) + " tokens (" + std::to_string(kv_cache_bytes() >> 20) + " MiB, " +
         (m.options.kv_dtype == DType::kBF16 ? "bf16" : "fp16") + ")";
}

std::size_t CudaExecutor::num_blocks() const { return impl_->num_blocks; }
std::size_t CudaExecutor::weight_bytes() const { return impl_->weight_bytes; }
std::size_t CudaExecutor::kv_cache_bytes() const { return impl_->k_cache.bytes() + impl_->v_cache.bytes(); }
std::size_t CudaExecutor::step_buffer_bytes() const { return impl_->step_bytes(); }
std::size_t CudaExecutor::captured_graphs() const { return impl_->graphs.size(); }

}  // namespace tiergate::engine
