#include "engine/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace tiergate::engine {
namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr std::uint64_t kDefaultAlignment = 32;
// Sanity caps so that a corrupt count cannot make us allocate the machine away.
constexpr std::uint64_t kMaxCount = 1ull << 24;
constexpr std::uint32_t kMaxDims = 4;

enum ValueType : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Reads little-endian values from the mapping, throwing on every overrun.
class Cursor {
 public:
  Cursor(const std::byte* data, std::size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  std::size_t offset() const { return offset_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw GgufError(path_ + ": corrupt or truncated GGUF at byte " + std::to_string(offset_) + ": " + what);
  }

  template <typename T>
  T read(const char* what) {
    if (size_ - offset_ < sizeof(T)) fail(std::string("file ends inside ") + what);
    T value;
    std::memcpy(&value, data_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const auto length = read<std::uint64_t>(what);
    if (length > size_ - offset_) fail(std::string("string longer than the file in ") + what);
    std::string s(reinterpret_cast<const char*>(data_ + offset_), length);
    offset_ += length;
    return s;
  }

  void skip_to(std::size_t offset) {
    if (offset > size_) fail("data section starts past the end of the file");
    offset_ = offset;
  }

 private:
  const std::byte* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
  const std::string& path_;
};

GgufValue::Kind kind_of(std::uint32_t type, Cursor& in) {
  switch (type) {
    case kU8: case kU16: case kU32: case kU64: return GgufValue::Kind::kUnsigned;
    case kI8: case kI16: case kI32: case kI64: return GgufValue::Kind::kSigned;
    case kF32: case kF64: return GgufValue::Kind::kFloat;
    case kBool: return GgufValue::Kind::kBool;
    case kString: return GgufValue::Kind::kString;
    case kArray: return GgufValue::Kind::kArray;
    default: in.fail("unknown metadata value type " + std::to_string(type));
  }
}

// Reads one scalar of `type` into the matching field of `v`.
void read_scalar(Cursor& in, std::uint32_t type, GgufValue& v, const char* what) {
  switch (type) {
    case kU8: v.u = in.read<std::uint8_t>(what); break;
    case kU16: v.u = in.read<std::uint16_t>(what); break;
    case kU32: v.u = in.read<std::uint32_t>(what); break;
    case kU64: v.u = in.read<std::uint64_t>(what); break;
    case kI8: v.i = in.read<std::int8_t>(what); break;
    case kI16: v.i = in.read<std::int16_t>(what); break;
    case kI32: v.i = in.read<std::int32_t>(what); break;
    case kI64: v.i = in.read<std::int64_t>(what); break;
    case kF32: v.f = in.read<float>(what); break;
    case kF64: v.f = in.read<double>(what); break;
    case kBool: v.b = in.read<std::uint8_t>(what) != 0; break;
    case kString: v.s = in.read_string(what); break;
    default: in.fail("unexpected value type " + std::to_string(type));
  }
}

GgufValue read_value(Cursor& in, std::uint32_t type) {
  GgufValue v;
  v.kind = kind_of(type, in);
  if (type != kArray) {
    read_scalar(in, type, v, "a metadata value");
    return v;
  }
  const auto element_type = in.read<std::uint32_t>("an array's element type");
  v.element_kind = kind_of(element_type, in);
  if (element_type == kArray) in.fail("nested arrays are not supported");
  const auto count = in.read<std::uint64_t>("an array's length");
  if (count > kMaxCount) in.fail("array of " + std::to_string(count) + " elements");
  for (std::uint64_t n = 0; n < count; ++n) {
    GgufValue e;
    read_scalar(in, element_type, e, "an array element");
    switch (v.element_kind) {
      case GgufValue::Kind::kString: v.strings.push_back(std::move(e.s)); break;
      case GgufValue::Kind::kFloat: v.floats.push_back(e.f); break;
      case GgufValue::Kind::kUnsigned: v.integers.push_back(static_cast<std::int64_t>(e.u)); break;
      case GgufValue::Kind::kSigned: v.integers.push_back(e.i); break;
      case GgufValue::Kind::kBool: v.integers.push_back(e.b); break;
      default: break;
    }
  }
  return v;
}

}  // namespace

std::string_view ggml_type_name(std::uint32_t type) {
  static constexpr std::string_view kNames[] = {
      "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
      "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
      "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
  return type < std::size(kNames) ? kNames[type] : "unknown";
}

std::uint64_t GgufTensor::elements() const {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GgufError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size == 0) {
    ::close(fd);
    throw GgufError(path + ": empty or unreadable file");
  }
  void* map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw GgufError(path + ": cannot map: " + std::strerror(errno));
  file->map_ = static_cast<const std::byte*>(map);
  file->map_size_ = static_cast<std::size_t>(st.st_size);
  file->mapped_ = true;
  file->parse();
  return file;
}

std::unique_ptr<GgufFile> GgufFile::from_bytes(std::string bytes, std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  file->owned_ = std::move(bytes);
  file->map_ = reinterpret_cast<const std::byte*>(file->owned_.data());
  file->map_size_ = file->owned_.size();
  file->parse();
  return file;
}

void GgufFile::parse() {
  GgufFile* const file = this;
  const std::string& path = path_;
  Cursor in(file->map_, file->map_size_, file->path_);
  if (in.read<std::uint32_t>("the magic number") != kMagic) {
    throw GgufError(path + ": not a GGUF file (the first four bytes are not \"GGUF\")");
  }
  file->version_ = in.read<std::uint32_t>("the version");
  if (file->version_ != 2 && file->version_ != 3) {
    throw GgufError(path + ": GGUF version " + std::to_string(file->version_) + " is not supported (2 and 3 are)");
  }
  const auto tensor_count = in.read<std::uint64_t>("the tensor count");
  const auto kv_count = in.read<std::uint64_t>("the metadata count");
  if (tensor_count > kMaxCount || kv_count > kMaxCount) in.fail("implausible tensor or metadata count");

  for (std::uint64_t n = 0; n < kv_count; ++n) {
    std::string key = in.read_string("a metadata key");
    const auto type = in.read<std::uint32_t>("a metadata type");
    file->metadata_[std::move(key)] = read_value(in, type);
  }

  struct Pending {
    std::string name;
    std::vector<std::uint64_t> shape;
    std::uint32_t type;
    std::uint64_t offset;
  };
  std::vector<Pending> infos;
  for (std::uint64_t n = 0; n < tensor_count; ++n) {
    Pending t;
    t.name = in.read_string("a tensor name");
    const auto dims = in.read<std::uint32_t>("a tensor's dimension count");
    if (dims == 0 || dims > kMaxDims) in.fail("tensor " + t.name + " has " + std::to_string(dims) + " dimensions");
    for (std::uint32_t d = 0; d < dims; ++d) t.shape.push_back(in.read<std::uint64_t>("a tensor dimension"));
    t.type = in.read<std::uint32_t>("a tensor type");
    t.offset = in.read<std::uint64_t>("a tensor offset");
    infos.push_back(std::move(t));
  }

  const std::uint64_t alignment = file->get_uint_or("general.alignment", kDefaultAlignment);
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) in.fail("general.alignment is not a power of two");
  const std::uint64_t data_start = (in.offset() + alignment - 1) / alignment * alignment;
  in.skip_to(data_start);

  for (Pending& t : infos) {
    const std::uint32_t type = t.type;
    const bool supported = type == 0 || type == 1 || type == 2 || type == 3 || type == 8 || type == 30;
    if (!supported) {
      throw GgufError(path + ": tensor " + t.name + " has type " + std::string(ggml_type_name(type)) +
                      " (" + std::to_string(type) + "), which tiergate cannot run; supported: "
                      "F32, F16, BF16, Q8_0, Q4_0, Q4_1");
    }
    GgufTensor tensor;
    tensor.name = std::move(t.name);
    tensor.shape = std::move(t.shape);
    tensor.type = static_cast<GgmlType>(type);
    const std::uint64_t per_block = kernels::block_elements(tensor.type);
    if (tensor.shape[0] % per_block != 0) {
      throw GgufError(path + ": tensor " + tensor.name + " has rows of " + std::to_string(tensor.shape[0]) +
                      " elements, not a multiple of its block size " + std::to_string(per_block));
    }
    // Shapes come from the file: a corrupt dimension can make the element count wrap to a small
    // number that fits the file, and a huge one would wrap the byte count computed below.
    std::uint64_t elements = 1;
    for (std::uint64_t d : tensor.shape) {
      if (__builtin_mul_overflow(elements, d, &elements)) {
        throw GgufError(path + ": tensor " + tensor.name + " has more than 2^64 elements: the file is corrupt");
      }
    }
    if (elements / per_block > file->map_size_) {
      throw GgufError(path + ": tensor " + tensor.name + " has " + std::to_string(elements) +
                      " elements, more than the file could hold: the file is truncated or corrupt");
    }
    const std::uint64_t bytes = elements / per_block * kernels::block_bytes(tensor.type);
    if (t.offset % alignment != 0 || t.offset > file->map_size_ - data_start ||
        bytes > file->map_size_ - data_start - t.offset) {
      throw GgufError(path + ": tensor " + tensor.name + " lies outside the file (offset " +
                      std::to_string(t.offset) + ", " + std::to_string(bytes) +
                      " bytes): the file is truncated or corrupt");
    }
    tensor.data = {file->map_ + data_start + t.offset, static_cast<std::size_t>(bytes)};
    file->tensor_index_[tensor.name] = file->tensors_.size();
    file->tensors_.push_back(std::move(tensor));
  }
}

GgufFile::~GgufFile() {
  if (mapped_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

const GgufValue& GgufFile::value(std::string_view key, GgufValue::Kind kind, const char* expected) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw GgufError(path_ + ": metadata key " + std::string(key) + " is missing");
  const GgufValue& v = it->second;
  const bool numeric_ok = (kind == GgufValue::Kind::kUnsigned &&
                           (v.kind == GgufValue::Kind::kSigned || v.kind == GgufValue::Kind::kUnsigned)) ||
                          (kind == GgufValue::Kind::kFloat && v.kind != GgufValue::Kind::kString &&
                           v.kind != GgufValue::Kind::kArray && v.kind != GgufValue::Kind::kBool);
  if (v.kind != kind && !numeric_ok) {
    throw GgufError(path_ + ": metadata key " + std::string(key) + " is not " + expected);
  }
  return v;
}

std::uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue& v = value(key, GgufValue::Kind::kUnsigned, "an integer");
  if (v.kind == GgufValue::Kind::kSigned) {
    if (v.i < 0) throw GgufError(path_ + ": metadata key " + std::string(key) + " is negative");
    return static_cast<std::uint64_t>(v.i);
  }
  return v.u;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = value(key, GgufValue::Kind::kFloat, "a number");
  switch (v.kind) {
    case GgufValue::Kind::kUnsigned: return static_cast<double>(v.u);
    case GgufValue::Kind::kSigned: return static_cast<double>(v.i);
    default: return v.f;
  }
}

std::string GgufFile::get_string(std::string_view key) const {
  return value(key, GgufValue::Kind::kString, "a string").s;
}

const std::vector<std::string>& GgufFile::get_strings(std::string_view key) const {
  const GgufValue& v = value(key, GgufValue::Kind::kArray, "an array");
  if (v.element_kind != GgufValue::Kind::kString) {
    throw GgufError(path_ + ": metadata key " + std::string(key) + " is not an array of strings");
  }
  return v.strings;
}

const std::vector<std::int64_t>& GgufFile::get_integers(std::string_view key) const {
  const GgufValue& v = value(key, GgufValue::Kind::kArray, "an array");
  if (v.element_kind != GgufValue::Kind::kSigned && v.element_kind != GgufValue::Kind::kUnsigned) {
    throw GgufError(path_ + ": metadata key " + std::string(key) + " is not an array of integers");
  }
  return v.integers;
}

const std::vector<double>& GgufFile::get_floats(std::string_view key) const {
  const GgufValue& v = value(key, GgufValue::Kind::kArray, "an array");
  if (v.element_kind != GgufValue::Kind::kFloat) {
    throw GgufError(path_ + ": metadata key " + std::string(key) + " is not an array of numbers");
  }
  return v.floats;
}

std::uint64_t GgufFile::get_uint_or(std::string_view key, std::uint64_t fallback) const {
  return has(key) ? get_uint(key) : fallback;
}

double GgufFile::get_float_or(std::string_view key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  if (const GgufTensor* t = find_tensor(name)) return *t;
  throw GgufError(path_ + ": tensor " + std::string(name) + " is missing");
}

}  // namespace tiergate::engine
