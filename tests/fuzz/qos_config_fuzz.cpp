// qos_config.json: any bytes are accepted or rejected with errors, never a crash; an accepted
// config writes back as text that parses to the same config (the admin API shows that text).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "qos/config_parser.h"
#include "qos/config_writer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tiergate;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const qos::ConfigParseResult r = qos::parse_config(text, "fuzz.json");
  TG_CHECK(r.ok() == r.errors.empty());
  if (!r.ok()) {
    TG_CHECK(!r.describe().empty());
    return 0;
  }
  const std::string written = qos::to_json(*r.config);
  const qos::ConfigParseResult again = qos::parse_config(written, "written.json");
  TG_CHECK(again.ok());
  TG_CHECK(qos::to_json(*again.config) == written);
  return 0;
}
