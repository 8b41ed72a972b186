// The GGUF reader on any bytes: a file or a GgufError, never a crash or a read outside the input;
// every tensor an accepted file lists lies inside it. Accepted files then go through the tokenizer
// and model checks (which may only throw).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/gguf_file.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tiergate::engine;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<GgufFile> file;
  try {
    file = GgufFile::from_bytes(bytes, "fuzz.gguf");
  } catch (const GgufError&) {
    return 0;
  }
  for (const GgufTensor& t : file->tensors()) {
    // Inside the copy the file holds: [begin, end) within its size.
    TG_CHECK(t.data.size() <= size);
  }
  try {
    Tokenizer::from_gguf(*file);
  } catch (const std::runtime_error&) {
  }
  try {
    Model::from_gguf(GgufFile::from_bytes(bytes, "fuzz.gguf"));
  } catch (const std::runtime_error&) {
  }
  return 0;
}
