// qos/config_writer.*'s json_string: whatever bytes it quotes (file paths and error texts the
// admin report and /health carry need not be UTF-8), the literal is valid JSON that reads back as
// the text, with each byte outside well-formed UTF-8 as U+FFFD.
#include "qos/config_writer.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <simdjson.h>

#include <string>

namespace tiergate::qos {
namespace {

std::optional<std::string> parsed(const std::string& literal) {
  simdjson::dom::parser parser;
  std::string_view text;
  if (parser.parse(simdjson::padded_string(literal)).get_string().get(text) != simdjson::SUCCESS) return std::nullopt;
  return std::string(text);
}

TEST(JsonString, RepairsBytesThatAreNotUtf8) {
  EXPECT_EQ(parsed(json_string("/v1/\xff\xfe")), "/v1/\uFFFD\uFFFD");
  EXPECT_EQ(parsed(json_string("cut \xe2\x82")), "cut \uFFFD\uFFFD");
  EXPECT_EQ(parsed(json_string("surrogate \xed\xa0\x80")), "surrogate \uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(parsed(json_string("overlong \xc0\xaf")), "overlong \uFFFD\uFFFD");
  EXPECT_EQ(parsed(json_string("ok \xe2\x82\xac \xf0\x9f\x98\x80 \"\\\n")), "ok \u20AC \U0001F600 \"\\\n");
}

RC_GTEST_PROP(JsonStringProperty, AnyBytesMakeValidJsonThatKeepsEveryValidCharacter, (const std::string& bytes)) {
  const auto back = parsed(json_string(bytes));
  RC_ASSERT(back.has_value());
  if (simdjson::validate_utf8(bytes.data(), bytes.size())) RC_ASSERT(*back == bytes);
}

}  // namespace
}  // namespace tiergate::qos
