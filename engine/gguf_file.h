// A GGUF model file (versions 2 and 3) mapped read-only: its metadata, its tensor infos and a view
// of each tensor's bytes. Owns the mapping; immutable after open, so any thread may read it.
// open() is start-up code (DESIGN.md §7, tier 1): a truncated or corrupt file, or a tensor type we
// cannot run, throws GgufError naming the file, what was found, and what is supported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/tensor_type.h"

namespace tiergate::engine {

class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ggml's tensor type ids for the types we run; the reader names any other id in its error.
using GgmlType = kernels::DType;

std::string_view ggml_type_name(std::uint32_t type);

struct GgufTensor {
  std::string name;
  std::vector<std::uint64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  GgmlType type = GgmlType::kF32;
  std::span<const std::byte> data;   // inside the mapping

  std::uint64_t elements() const;
  std::uint64_t rows() const { return shape.empty() ? 0 : elements() / shape[0]; }
};

// One metadata value. Arrays keep their elements in the matching vector.
struct GgufValue {
  enum class Kind { kUnsigned, kSigned, kFloat, kBool, kString, kArray };
  Kind kind = Kind::kUnsigned;
  Kind element_kind = Kind::kUnsigned;  // for arrays
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> strings;
  std::vector<std::int64_t> integers;  // signed and unsigned elements alike
  std::vector<double> floats;
};

class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // The same from bytes in memory (kept by the file); `name` stands for the path in messages.
  static std::unique_ptr<GgufFile> from_bytes(std::string bytes, std::string name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  bool has(std::string_view key) const { return metadata_.find(key) != metadata_.end(); }
  // Typed look-ups; a missing key or another type throws GgufError naming the key.
  std::uint64_t get_uint(std::string_view key) const;
  double get_float(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  const std::vector<std::string>& get_strings(std::string_view key) const;
  const std::vector<std::int64_t>& get_integers(std::string_view key) const;
  const std::vector<double>& get_floats(std::string_view key) const;
  std::uint64_t get_uint_or(std::string_view key, std::uint64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;

  // nullptr when absent.
  const GgufTensor* find_tensor(std::string_view name) const;
  // Throws GgufError naming the tensor when absent.
  const GgufTensor& tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  const GgufValue& value(std::string_view key, GgufValue::Kind kind, const char* expected) const;
  void parse();  // reads map_[0, map_size_) into the metadata and tensor views; throws GgufError

  std::string path_;
  std::uint32_t version_ = 0;
  const std::byte* map_ = nullptr;
  std::size_t map_size_ = 0;
  bool mapped_ = false;  // map_ is an mmap (else it points into owned_)
  std::string owned_;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace tiergate::engine
