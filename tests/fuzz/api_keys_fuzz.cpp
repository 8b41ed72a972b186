// The API-keys file: any bytes are a store or an ApiKeyError naming the file, never a crash; a
// store authenticates nothing but the keys whose hashes it holds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gateway/api_keys.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tiergate::gateway;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto store = ApiKeyStore::parse(text, "fuzz_keys.json");
    TG_CHECK(!store->authenticate(text));  // the file's text is no key: no hash of it is stored
    TG_CHECK(!store->authenticate(""));
  } catch (const ApiKeyError& e) {
    TG_CHECK(std::string_view(e.what()).rfind("fuzz_keys.json: ", 0) == 0);
  }
  return 0;
}
