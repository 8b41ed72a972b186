#include "engine/model.h"

#include <stdexcept>

namespace tiergate::engine {
namespace {

// A 2-D weight [rows, cols] or a 1-D norm [cols], checked against the shape the config implies.
Weight weight(const GgufFile& file, const std::string& name, std::size_t cols, std::size_t rows) {
  const GgufTensor& t = file.tensor(name);
  const std::size_t got_cols = t.shape.size() > 0 ? t.shape[0] : 0;
  const std::size_t got_rows = t.shape.size() > 1 ? t.shape[1] : 1;
  if (got_cols != cols || got_rows != rows) {
    throw std::runtime_error(file.path() + ": tensor " + name + " has shape [" + std::to_string(got_cols) + ", " +
                             std::to_string(got_rows) + "], expected [" + std::to_string(cols) + ", " +
                             std::to_string(rows) + "]");
  }
  if (rows == 1 && t.type != kernels::DType::kF32) {
    throw std::runtime_error(file.path() + ": norm tensor " + name + " must be F32");
  }
  return Weight{t.data.data(), t.type, rows, cols};
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) { return from_gguf(GgufFile::open(path)); }

std::unique_ptr<Model> Model::from_gguf(std::unique_ptr<GgufFile> file) {
  std::unique_ptr<Model> model(new Model());
  model->file_ = std::move(file);
  const GgufFile& f = *model->file_;
  const std::string& path = f.path();
  ModelConfig& c = model->config_;
  c.architecture = f.get_string("general.architecture");
  if (c.architecture != "llama") {
    throw std::runtime_error(path + ": architecture \"" + c.architecture + "\" is not supported; supported: llama");
  }
  c.name = f.has("general.name") ? f.get_string("general.name") : path;
  const std::string a = c.architecture + ".";
  c.dim = f.get_uint(a + "embedding_length");
  c.layers = f.get_uint(a + "block_count");
  c.heads = f.get_uint(a + "attention.head_count");
  c.kv_heads = f.get_uint_or(a + "attention.head_count_kv", c.heads);
  c.ffn_dim = f.get_uint(a + "feed_forward_length");
  c.context_length = f.get_uint_or(a + "context_length", 2048);
  c.rms_eps = static_cast<float>(f.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = static_cast<float>(f.get_float_or(a + "rope.freq_base", 10000.0));
  if (c.heads == 0 || c.dim % c.heads != 0 || c.kv_heads == 0 || c.heads % c.kv_heads != 0) {
    throw std::runtime_error(path + ": inconsistent head counts (" + std::to_string(c.heads) + " heads, " +
                             std::to_string(c.kv_heads) + " KV heads, width " + std::to_string(c.dim) + ")");
  }
  c.head_dim = c.dim / c.heads;
  c.rope_dims = f.get_uint_or(a + "rope.dimension_count", c.head_dim);
  if (f.has(a + "rope.scaling.type") && f.get_string(a + "rope.scaling.type") != "none") {
    throw std::runtime_error(path + ": RoPE scaling \"" + f.get_string(a + "rope.scaling.type") +
                             "\" is not supported yet");
  }
  model->tokenizer_ = Tokenizer::from_gguf(f);
  c.vocab_size = model->tokenizer_->vocab_size();

  model->embedding_ = weight(f, "token_embd.weight", c.dim, c.vocab_size);
  model->output_norm_ = weight(f, "output_norm.weight", c.dim, 1);
  model->output_ = f.find_tensor("output.weight") ? weight(f, "output.weight", c.dim, c.vocab_size)
                                                  : model->embedding_;
  const std::size_t kv_width = c.kv_heads * c.head_dim;
  for (std::size_t l = 0; l < c.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = weight(f, p + "attn_norm.weight", c.dim, 1);
    w.wq = weight(f, p + "attn_q.weight", c.dim, c.dim);
    w.wk = weight(f, p + "attn_k.weight", c.dim, kv_width);
    w.wv = weight(f, p + "attn_v.weight", c.dim, kv_width);
    w.wo = weight(f, p + "attn_output.weight", c.dim, c.dim);
    w.ffn_norm = weight(f, p + "ffn_norm.weight", c.dim, 1);
    w.w_gate = weight(f, p + "ffn_gate.weight", c.dim, c.ffn_dim);
    w.w_up = weight(f, p + "ffn_up.weight", c.dim, c.ffn_dim);
    w.w_down = weight(f, p + "ffn_down.weight", c.ffn_dim, c.dim);
    model->layers_.push_back(w);
  }
  return model;
}

std::string Model::chat_template() const {
  return file_->has("tokenizer.chat_template") ? file_->get_string("tokenizer.chat_template") : std::string();
}

std::size_t Model::weight_bytes() const {
  auto bytes = [](const Weight& w) { return kernels::row_bytes(w.type, w.cols) * w.rows; };
  std::size_t total = bytes(output_) + bytes(output_norm_);
  for (const LayerWeights& l : layers_) {
    for (const Weight* w : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      total += bytes(*w);
    }
  }
  return total;
}

}  // namespace tiergate::engine
