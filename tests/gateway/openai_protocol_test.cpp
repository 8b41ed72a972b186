// gateway/openai_protocol.* and gateway/api_keys.*: request parsing names the bad parameter,
// LMDeploy-QoS bodies are accepted as sent, responses have the OpenAI shape, keys hash and match.
#include "gateway/openai_protocol.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <simdjson.h>

#include "gateway/api_keys.h"

namespace tiergate::gateway {
namespace {

std::string error_param(std::string_view body, Endpoint e = Endpoint::kChat, bool qos = false) {
  auto r = parse_generation(body, e, qos);
  if (auto* err = std::get_if<ApiError>(&r)) return err->param.empty() ? "<none>" : err->param;
  return "<ok>";
}

TEST(OpenAiProtocol, ParsesEverySamplingParameter) {
  auto r = parse_generation(R"({"model": "m", "messages": [{"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}],
      "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.1, "repetition_penalty": 1.1,
      "presence_penalty": 0.2, "frequency_penalty": 0.3, "seed": 5, "stop": ["x", "y"], "n": 2, "ignore_eos": true,
      "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true}, "user": "u"})",
                            Endpoint::kChat, false);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(r));
  const auto& g = std::get<GenerationRequest>(r);
  EXPECT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[1].content, "AB");
  EXPECT_EQ(g.params.max_tokens, 7);
  EXPECT_FLOAT_EQ(g.params.temperature, 0.5f);
  EXPECT_EQ(g.params.top_k, 40);
  EXPECT_EQ(g.params.seed, 5u);
  EXPECT_EQ(g.params.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(g.params.n, 2);
  EXPECT_TRUE(g.params.ignore_eos && g.params.logprobs && g.stream && g.include_usage);
  EXPECT_EQ(g.params.top_logprobs, 3);
  EXPECT_EQ(g.user, "u");
}

TEST(OpenAiProtocol, AcceptsLmdeployQosBodies) {
  auto r = parse_generation(R"({"messages": "Hello", "user_id": "user_id0", "request_output_len": 12, "stop": false,
      "session_id": -1, "interactive_mode": false, "ignore_eos": false, "top_k": 40})",
                            Endpoint::kChat, true);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(r));
  const auto& g = std::get<GenerationRequest>(r);
  EXPECT_EQ(g.messages[0].content, "Hello");
  EXPECT_EQ(g.user, "user_id0");
  EXPECT_EQ(g.params.max_tokens, 12);
  EXPECT_TRUE(g.params.stop.empty());
}

// Issue 11, hole 9: a session's turn has one answer; n > 1 there used to finish the response at the
// first choice and let the next choices answer the connection's next request.
TEST(OpenAiProtocol, InteractiveTurnsTakeNoN) {
  EXPECT_EQ(error_param(R"({"prompt": "hi", "session_id": 1, "n": 2})", Endpoint::kInteractive, true), "n");
  EXPECT_EQ(error_param(R"({"prompt": "hi", "session_id": 1, "n": 1})", Endpoint::kInteractive, true), "<ok>");
}

// Issue 11's hostile table: wrong types are refused, never silently ignored; numbers out of range
// are refused without an undefined conversion.
TEST(OpenAiProtocol, WrongTypesAndHugeNumbersNameTheParameter) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(error_param("{" + m + R"(, "stream": "yes"})"), "stream");
  EXPECT_EQ(error_param("{" + m + R"(, "ignore_eos": 1})"), "ignore_eos");
  EXPECT_EQ(error_param("{" + m + R"(, "model": 7})"), "model");
  EXPECT_EQ(error_param("{" + m + R"(, "stream_options": [1]})"), "stream_options");
  EXPECT_EQ(error_param("{" + m + R"(, "stream_options": {"include_usage": "y"}})"), "stream_options");
  EXPECT_EQ(error_param("{" + m + R"(, "seed": 1e30})"), "seed");
  EXPECT_EQ(error_param("{" + m + R"(, "seed": 2.5})"), "seed");
  EXPECT_EQ(error_param("{" + m + R"(, "temperature": 1e300})"), "<ok>");  // clamped here, refused by validate()
  EXPECT_EQ(error_param(R"({"prompt": "x", "session_id": 18446744073709551615})", Endpoint::kInteractive, true),
            "session_id");
  auto seed_of = [&](const std::string& v) {
    auto r = parse_generation("{" + m + R"(, "seed": )" + v + "}", Endpoint::kChat, false);
    return *std::get<GenerationRequest>(r).params.seed;
  };
  EXPECT_EQ(seed_of("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(seed_of("-1"), 18446744073709551615ull);
  EXPECT_EQ(seed_of("7.0"), 7u);
}

TEST(OpenAiProtocol, ErrorsNameTheParameter) {
  EXPECT_EQ(error_param("{"), "<none>");
  EXPECT_EQ(error_param("[]"), "<none>");
  EXPECT_EQ(error_param(R"({})"), "messages");
  EXPECT_EQ(error_param(R"({"messages": "plain"})"), "messages");  // a string only on *_qos routes
  EXPECT_EQ(error_param(R"({"messages": [{"role": "wizard", "content": "x"}]})"), "messages");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})"), "temperature");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "stop": 3})"), "stop");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})"), "top_logprobs");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "user": 7})"), "user");
  EXPECT_EQ(error_param(R"({"prompt": ["a", "b"]})", Endpoint::kCompletion), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": "a", "logprobs": 99})", Endpoint::kCompletion), "logprobs");
}

RC_GTEST_PROP(OpenAiProtocolProperty, AnyBodyParsesOrFailsCleanly, ()) {
  const auto body = *rc::gen::container<std::string>(rc::gen::element<char>('{', '}', '[', ']', '"', ':', ',', 'a',
                                                                            '1', ' ', 'm', 'e', 's', '-', '.'));
  const auto r = parse_generation(body, Endpoint::kChat, *rc::gen::arbitrary<bool>());
  if (auto* e = std::get_if<ApiError>(&r)) {
    RC_ASSERT(e->status == 400);
    simdjson::dom::parser parser;
    RC_ASSERT(parser.parse(simdjson::padded_string(e->to_json())).error() == simdjson::SUCCESS);
  }
}

TEST(OpenAiProtocol, ErrorJsonHasTheOpenAiShape) {
  const ApiError e{429, "queue \"full\"", "rate_limit_error", "", "queue_full"};
  EXPECT_EQ(e.to_json(),
            R"({"error": {"message": "queue \"full\"", "type": "rate_limit_error", "param": null, "code": "queue_full"}})");
}

TEST(ApiKeys, HashesAndMatchesInConstantTime) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string path = ::testing::TempDir() + "keys_test/api_keys.json";
  std::remove(path.c_str());
  const std::string alice = ApiKeyStore::add_key(path, "alice", {"a1", "a2"}, false, false);
  const std::string saas = ApiKeyStore::add_key(path, "saas", {}, true, true);
  const auto store = ApiKeyStore::load(path);
  ASSERT_EQ(store->size(), 2u);
  const auto a = store->authenticate(alice);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->may_act_for("a2"));
  EXPECT_FALSE(a->may_act_for("b"));
  EXPECT_FALSE(a->admin);
  const auto s = store->authenticate(saas);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->may_act_for("anyone") && s->admin);
  EXPECT_FALSE(store->authenticate(alice + "x"));
  EXPECT_FALSE(store->authenticate(""));
}

}  // namespace
}  // namespace tiergate::gateway
