// A Llama-family model loaded from GGUF: its hyper-parameters, its tokenizer and views of its
// weights inside the mapped file (quantised weights stay quantised; nothing is copied). Immutable
// after load; any thread may read it. load() is start-up code and throws std::runtime_error naming
// the file and what is wrong or unsupported.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf_file.h"
#include "engine/tokenizer.h"
#include "kernels/tensor_type.h"

namespace tiergate::engine {

struct ModelConfig {
  std::string architecture;
  std::string name;
  std::size_t vocab_size = 0;
  std::size_t dim = 0;          // embedding width
  std::size_t layers = 0;
  std::size_t heads = 0;
  std::size_t kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t ffn_dim = 0;
  std::size_t context_length = 0;
  std::size_t rope_dims = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
};

struct Weight {
  const void* data = nullptr;  // [rows, cols] in type, one output feature per row
  kernels::DType type = kernels::DType::kF32;
  std::size_t rows = 0;
  std::size_t cols = 0;
};

struct LayerWeights {
  Weight attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path);
  // The same from a GGUF already read (the fuzz target reads one from memory). Throws like load().
  static std::unique_ptr<Model> from_gguf(std::unique_ptr<GgufFile> file);

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const GgufFile& file() const { return *file_; }
  const Weight& embedding() const { return embedding_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const Weight& output_norm() const { return output_norm_; }
  const Weight& output() const { return output_; }  // the embedding when tied
  std::string chat_template() const;                // "" when the file has none
  // Bytes of weights read per decode step (for bandwidth figures).
  std::size_t weight_bytes() const;

 private:
  Model() = default;

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ModelConfig config_;
  Weight embedding_, output_norm_, output_;
  std::vector<LayerWeights> layers_;
};

}  // namespace tiergate::engine
