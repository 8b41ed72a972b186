// engine/gguf_file.*: a GGUF written here byte by byte reads back exactly; truncated, corrupt and
// unsupported files fail with messages that say what was found and what is supported, and what a
// corrupt file does open with has every tensor's view inside the file.
#include "engine/gguf_file.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstring>

#include "tests/engine/model_fixture.h"
#include "tests/temp_file.h"

namespace tiergate::engine {
namespace {

using ::tiergate::testing::TempFile;

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
  // The data section holds a 16-bit little-endian counter, so that any two-byte-aligned run of it
  // of two bytes or more occurs once in the file: a tensor's view can be traced to its place.
  void tensor(const std::string& name, std::vector<std::uint64_t> shape, std::uint32_t type, std::size_t bytes) {
    infos_.push_back({name, shape, type, data_.size(), bytes});
    const std::size_t end = data_.size() + (bytes + 31) / 32 * 32;
    for (std::size_t i = data_.size(); i < end; ++i) {
      data_.push_back(static_cast<std::byte>(i % 2 == 0 ? (i / 2) & 0xFF : (i / 2) >> 8));
    }
  }
  std::string build() const {
    std::string out = header();
    out.append(reinterpret_cast<const char*>(data_.data()), data_.size());
    return out;
  }
  // Where the data section starts (the header is padded to the default alignment, 32).
  std::size_t data_start() const { return header().size(); }
  // Where the last tensor's bytes end: after it comes only the padding to the alignment.
  std::size_t data_end() const {
    std::size_t end = 0;
    for (const Info& t : infos_) end = std::max(end, t.offset + t.bytes);
    return header().size() + end;
  }

 private:
  // Header, metadata and tensor infos, padded to the default alignment.
  std::string header() const {
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
    return out;
  }

  struct Info {
    std::string name;
    std::vector<std::uint64_t> shape;
    std::uint32_t type;
    std::size_t offset, bytes;
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

// The error open() gives for these bytes, or "<opened>"; `path`, when given, receives the file's name.
std::string error_of(const std::string& bytes, std::string* path = nullptr) {
  const TempFile file("model.gguf", bytes);
  if (path) *path = file.path();
  try {
    GgufFile::open(file.path());
  } catch (const GgufError& e) {
    return e.what();
  }
  return "<opened>";
}

std::string_view view_of(const GgufTensor& t) {
  return {reinterpret_cast<const char*>(t.data.data()), t.data.size()};
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
  const GgufBuilder b = small_model();
  const std::string bytes = b.build();
  const TempFile path("model.gguf", bytes);
  const auto file = GgufFile::open(path.path());
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
  // Each view holds its own bytes: the data section from the tensor's offset (0, 224, 480: each
  // tensor padded to 32 bytes).
  EXPECT_EQ(view_of(emb), std::string_view(bytes).substr(b.data_start(), 204));
  EXPECT_EQ(view_of(file->tensor("norm.weight")), std::string_view(bytes).substr(b.data_start() + 224, 256));
  EXPECT_EQ(view_of(file->tensor("w.weight")), std::string_view(bytes).substr(b.data_start() + 480, 80));
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

TEST(GgufFile, RejectsShapesWhoseElementCountWraps) {
  GgufBuilder b;
  b.tensor("token_embd.weight", {64, (1ull << 58) + 3}, 8, 3 * 2 * 34);  // 64 * (2^58 + 3) = 2^64 + 192
  const std::string e = error_of(b.build());
  EXPECT_NE(e.find("token_embd.weight has more than 2^64 elements"), std::string::npos) << e;
}

// Every cut of the file, not a sample: a cut anywhere up to the end of the last tensor's bytes
// fails with an error naming the file; a cut inside the padding after it loses no tensor byte, so
// the file opens (as llama.cpp's mapped loader also accepts it).
TEST(GgufFile, EveryTruncationFailsCleanly) {
  const GgufBuilder b = small_model();
  const std::string full = b.build();
  ASSERT_LT(b.data_end(), full.size());  // the cases past the last tensor exist
  for (std::size_t cut = 1; cut < full.size(); ++cut) {
    std::string path;
    const std::string e = error_of(full.substr(0, cut), &path);
    if (cut < b.data_end()) {
      ASSERT_NE(e, "<opened>") << "a cut at byte " << cut << " of " << full.size() << " was accepted";
      ASSERT_EQ(e.rfind(path + ": ", 0), 0u) << e;
    } else {
      ASSERT_EQ(e, "<opened>") << "a cut at byte " << cut << " loses only padding";
    }
  }
}

// What open() accepts, however corrupt, is safe to use: every tensor's view lies inside the file
// (its bytes are found in the file, all views at one consistent mapping), holds exactly the bytes
// its shape and type need (the element count computed without wrapping), and is found by name.
void check_views_lie_inside(const GgufFile& file, const std::string& bytes) {
  const std::byte* mapping = nullptr;
  for (const GgufTensor& t : file.tensors()) {
    RC_ASSERT(!t.shape.empty());
    std::uint64_t elements = 1;
    for (std::uint64_t d : t.shape) RC_ASSERT(!__builtin_mul_overflow(elements, d, &elements));
    const std::uint64_t per_block = kernels::block_elements(t.type);
    RC_ASSERT(t.shape[0] % per_block == 0);
    RC_ASSERT(elements / per_block * kernels::block_bytes(t.type) == t.data.size());
    const GgufTensor* found = file.find_tensor(t.name);
    RC_ASSERT(found != nullptr && found->name == t.name);
    if (t.data.empty()) continue;
    const std::size_t at = bytes.find(view_of(t));
    RC_ASSERT(at != std::string::npos);
    const std::byte* base = t.data.data() - at;
    if (!mapping) mapping = base;
    RC_ASSERT(base == mapping);
  }
}

RC_GTEST_PROP(GgufFileProperty, CorruptHeadersFailCleanlyOrGiveViewsInsideTheFile, ()) {
  const GgufBuilder b = small_model();
  std::string bytes = b.build();
  const auto edits = *rc::gen::inRange(1, 8);
  for (int i = 0; i < edits; ++i) {
    // Header, metadata and tensor infos (names, shapes, types, offsets).
    bytes[*rc::gen::inRange<std::size_t>(0, b.data_start())] = *rc::gen::arbitrary<char>();
  }
  const TempFile path("model.gguf", bytes);
  std::unique_ptr<GgufFile> file;
  try {
    file = GgufFile::open(path.path());
  } catch (const GgufError& e) {
    RC_TAG("rejected");
    RC_ASSERT(std::string_view(e.what()).starts_with(path.path() + ": "));
    return;
  }
  RC_TAG("opened");
  check_views_lie_inside(*file, bytes);
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
