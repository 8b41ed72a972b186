// engine/gguf_file.*: a GGUF written here byte by byte reads back exactly; truncated, corrupt and
// unsupported files fail with messages that say what was found and what is supported.
#include "engine/gguf_file.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <fstream>

#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

// A minimal GGUF v3 writer for tests.
class GgufBuilder {
 public:
  void kv_string(const std::string& key, const std::string& value) {
    key_(key);
    u32(8);
    str(value);
    ++kvs_;
  }
  void kv_u32(const std::string& key, std::uint32_t value) {
    key_(key);
    u32(4);
    u32(value);
    ++kvs_;
  }
  void kv_strings(const std::string& key, const std::vector<std::string>& values) {
    key_(key);
    u32(9);
    u32(8);
    u64(values.size());
    for (const auto& v : values) str(v);
    ++kvs_;
  }
  void tensor(const std::string& name, std::vector<std::uint64_t> shape, std::uint32_t type, std::size_t bytes) {
    infos_.push_back({name, shape, type, data_.size()});
    data_.resize(data_.size() + (bytes + 31) / 32 * 32, std::byte{0x3C});
  }
  std::string build() const {
    std::string out;
    auto put = [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); };
    const std::uint32_t magic = 0x46554747, version = 3;
    const std::uint64_t tensors = infos_.size(), kvs = kvs_;
    put(&magic, 4);
    put(&version, 4);
    put(&tensors, 8);
    put(&kvs, 8);
    out += meta_;
    for (const Info& t : infos_) {
      const std::uint64_t len = t.name.size();
      put(&len, 8);
      out += t.name;
      const auto dims = static_cast<std::uint32_t>(t.shape.size());
      put(&dims, 4);
      for (std::uint64_t d : t.shape) put(&d, 8);
      put(&t.type, 4);
      const std::uint64_t offset = t.offset;
      put(&offset, 8);
    }
    out.resize((out.size() + 31) / 32 * 32, '\0');
    out.append(reinterpret_cast<const char*>(data_.data()), data_.size());
    return out;
  }

 private:
  struct Info {
    std::string name;
    std::vector<std::uint64_t> shape;
    std::uint32_t type;
    std::size_t offset;
  };
  void u32(std::uint32_t v) { meta_.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(std::uint64_t v) { meta_.append(reinterpret_cast<const char*>(&v), 8); }
  void str(const std::string& s) {
    u64(s.size());
    meta_ += s;
  }
  void key_(const std::string& k) { str(k); }
  std::string meta_;
  std::uint64_t kvs_ = 0;
  std::vector<Info> infos_;
  std::vector<std::byte> data_;
};

std::string write_temp(const std::string& bytes, const std::string& name = "test.gguf") {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string error_of(const std::string& bytes) {
  try {
    GgufFile::open(write_temp(bytes));
  } catch (const GgufError& e) {
    return e.what();
  }
  return "<opened>";
}

GgufBuilder small_model() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.kv_u32("llama.block_count", 2);
  b.kv_strings("tokenizer.ggml.tokens", {"a", "b", "c"});
  b.tensor("token_embd.weight", {64, 3}, 8, 2 * 34 * 3);  // Q8_0
  b.tensor("norm.weight", {64}, 0, 64 * 4);                  // F32
  b.tensor("w.weight", {64, 2}, 3, 2 * 20 * 2);              // Q4_1
  return b;
}

TEST(GgufFile, ReadsMetadataAndTensors) {
  const auto file = GgufFile::open(write_temp(small_model().build()));
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->get_string("general.architecture"), "llama");
  EXPECT_EQ(file->get_uint("llama.block_count"), 2u);
  EXPECT_EQ(file->get_strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(file->tensors().size(), 3u);
  const GgufTensor& emb = file->tensor("token_embd.weight");
  EXPECT_EQ(emb.type, GgmlType::kQ8_0);
  EXPECT_EQ(emb.rows(), 3u);
  EXPECT_EQ(emb.data.size(), 3u * 2 * 34);
  EXPECT_EQ(file->tensor("w.weight").data.size(), 2u * 2 * 20);
  EXPECT_THROW(file->tensor("missing"), GgufError);
  EXPECT_THROW(file->get_uint("general.architecture"), GgufError);
}

TEST(GgufFile, NamesUnsupportedTensorTypes) {
  GgufBuilder b;
  b.tensor("blk.0.ffn_down.weight", {256, 4}, 12, 4 * 144);  // Q4_K
  const std::string e = error_of(b.build());
  EXPECT_NE(e.find("blk.0.ffn_down.weight has type Q4_K (12)"), std::string::npos) << e;
  EXPECT_NE(e.find("supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"), std::string::npos) << e;
}

TEST(GgufFile, RejectsWhatIsNotAGgufFile) {
  EXPECT_NE(error_of("GGML this is not it").find("not a GGUF file"), std::string::npos);
  std::string v9 = small_model().build();
  v9[4] = 9;
  EXPECT_NE(error_of(v9).find("GGUF version 9 is not supported"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

RC_GTEST_PROP(GgufFileProperty, EveryTruncationFailsCleanly, ()) {
  const std::string full = small_model().build();
  const auto cut = *rc::gen::inRange<std::size_t>(1, full.size() - 1);
  const std::string e = error_of(full.substr(0, cut));
  RC_ASSERT(e != "<opened>");
  RC_ASSERT(e.find("test.gguf") != std::string::npos);
}

RC_GTEST_PROP(GgufFileProperty, CorruptBytesNeverCrash, ()) {
  std::string bytes = small_model().build();
  const auto edits = *rc::gen::inRange(1, 8);
  for (int i = 0; i < edits; ++i) {
    bytes[*rc::gen::inRange<std::size_t>(0, 200)] = *rc::gen::arbitrary<char>();  // header and metadata
  }
  try {
    GgufFile::open(write_temp(bytes, "corrupt.gguf"));
  } catch (const GgufError&) {
  }
}

TEST(GgufFile, TheDefaultModelLoadsAsLlama) {
  TG_REQUIRE_MODEL(model);
  EXPECT_EQ(model->config().layers, 30u);
  EXPECT_EQ(model->config().heads, 9u);
  EXPECT_EQ(model->config().kv_heads, 3u);
  EXPECT_EQ(model->config().vocab_size, 49152u);
  EXPECT_GT(model->weight_bytes(), 60u << 20);
}

}  // namespace
}  // namespace tiergate::engine
