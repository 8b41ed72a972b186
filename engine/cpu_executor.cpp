#include "engine/cpu_executor.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/quant.h"

namespace tiergate::engine {

namespace kc = kernels::cpu;

CpuExecutor::CpuExecutor(const Model& model, KvCache& cache, std::size_t threads)
    : model_(model), cache_(cache), pool_(threads) {
  const kc::IsaKernels& isa = kc::active_kernels();  // decides the ISA level now: a bad TIERGATE_CPU_ISA fails at start-up
  auto pack = [&](const Weight& w) {
    if (packed_.count(w.data)) return;
    std::vector<std::byte> packed = kc::pack_weight(isa, w.type, w.data, w.rows, w.cols);
    if (!packed.empty()) packed_.emplace(w.data, std::move(packed));
  };
  for (const LayerWeights& l : model_.layers()) {
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) pack(*w);
  }
  pack(model_.output());
}

void CpuExecutor::linear(std::initializer_list<std::pair<const Weight*, float*>> outputs, const float* x,
                         std::size_t tokens) {
  // Weights of one type and width on the same input run as one call: the input is quantised once
  // and all their rows share one parallel pass.
  kc::MatmulParams ps[4];
  std::size_t n = 0;
  for (auto [w, y] : outputs) {
    TG_CHECK(n < std::size(ps));
    auto packed = packed_.find(w->data);
    ps[n++] = {w->data, w->type, w->rows, w->cols, x, y, tokens, packed == packed_.end() ? nullptr : packed->second.data()};
  }
  const bool alike = std::all_of(ps, ps + n, [&](const kc::MatmulParams& p) {
    return p.weight_type == ps[0].weight_type && p.cols == ps[0].cols;
  });
  if (alike) return kc::matmul(std::span<const kc::MatmulParams>(ps, n), pool_, scratch_);
  for (std::size_t i = 0; i < n; ++i) kc::matmul(ps[i], pool_, scratch_);
}

std::string CpuExecutor::describe() const {
  return "CPU (" + kc::describe_cpu() + "), " + std::to_string(pool_.size()) + " threads, KV cache " + std::to_string(cache_.num_blocks()) +
         " blocks of " + std::to_string(cache_.block_size()) + " tokens (" + std::to_string(cache_.bytes() >> 20) +
         " MiB)";
}

void CpuExecutor::forward_sampled(const StepBatch& batch, const SamplingStep& draws, SampledStep& out) {
  forward(batch, out.logits);
  sample_on_host(out.logits, model_.config().vocab_size, draws, out, &pool_);
}

void CpuExecutor::copy_blocks(std::span<const BlockCopy> copies) {
  for (const BlockCopy& c : copies) cache_.copy_block(c.from, c.to);
}

void CpuExecutor::forward(const StepBatch& batch, std::vector<float>& logits) {
  const ModelConfig& c = model_.config();
  const std::size_t T = batch.tokens.size();
  TG_CHECK(T > 0 && batch.positions.size() == T && batch.token_seq.size() == T);
  const std::size_t dim = c.dim, kv_width = c.kv_heads * c.head_dim;
  x_.resize(T * dim);
  h_.resize(T * dim);
  q_.resize(T * dim);
  k_.resize(T * kv_width);
  v_.resize(T * kv_width);
  attn_.resize(T * dim);
  o_.resize(T * dim);
  gate_.resize(T * c.ffn_dim);
  up_.resize(T * c.ffn_dim);
  act_.resize(T * c.ffn_dim);

  const Weight& emb = model_.embedding();
  const std::size_t emb_row = kernels::row_bytes(emb.type, emb.cols);
  for (std::size_t t = 0; t < T; ++t) {
    const auto token = static_cast<std::size_t>(batch.tokens[t]);
    TG_CHECK(token < emb.rows);
    kc::dequantize_row(emb.type, static_cast<const std::byte*>(emb.data) + token * emb_row, x_.data() + t * dim, dim);
  }

  kernels::TokenLayout layout{batch.block_tables.data(), batch.max_blocks, batch.token_seq.data(),
                              batch.positions.data(), T};
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (std::size_t l = 0; l < c.layers; ++l) {
    const LayerWeights& w = model_.layers()[l];
    kc::rms_norm(x_.data(), static_cast<const float*>(w.attn_norm.data), h_.data(), T, dim, c.rms_eps);
    linear({{&w.wq, q_.data()}, {&w.wk, k_.data()}, {&w.wv, v_.data()}}, h_.data(), T);
    kc::rope(q_.data(), batch.positions.data(), T, c.heads, c.head_dim, c.rope_dims, c.rope_base);
    kc::rope(k_.data(), batch.positions.data(), T, c.kv_heads, c.head_dim, c.rope_dims, c.rope_base);
    const kernels::PagedKv kv = cache_.layer(l);
    kc::kv_append({kv, layout, k_.data(), v_.data()});
    kc::paged_attention({kv, layout, q_.data(), attn_.data(), c.heads, scale}, pool_);
    linear({{&w.wo, o_.data()}}, attn_.data(), T);
    kc::add_inplace(x_.data(), o_.data(), T * dim);

    kc::rms_norm(x_.data(), static_cast<const float*>(w.ffn_norm.data), h_.data(), T, dim, c.rms_eps);
    linear({{&w.w_gate, gate_.data()}, {&w.w_up, up_.data()}}, h_.data(), T);
    for (std::size_t t = 0; t < T; ++t) {  // row by row, as ggml does (its vector tail is per row)
      const std::size_t off = t * c.ffn_dim;
      kc::silu_mul(gate_.data() + off, up_.data() + off, act_.data() + off, c.ffn_dim);
    }
    linear({{&w.w_down, o_.data()}}, act_.data(), T);
    kc::add_inplace(x_.data(), o_.data(), T * dim);
  }

  const std::size_t R = batch.logit_rows.size();
  logits.resize(R * c.vocab_size);
  if (R == 0) return;
  for (std::size_t r = 0; r < R; ++r) {
    const auto t = static_cast<std::size_t>(batch.logit_rows[r]);
    TG_CHECK(t < T);
    kc::rms_norm(x_.data() + t * dim, static_cast<const float*>(model_.output_norm().data), h_.data() + r * dim, 1,
                 dim, c.rms_eps);
  }
  linear({{&model_.output(), logits.data()}}, h_.data(), R);
}

}  // namespace tiergate::engine
