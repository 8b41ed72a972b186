// The request bodies of every route (chat, completions, their *_qos forms, interactive): any bytes
// parse to a request or to an OpenAI-shaped 400 that is itself valid JSON; a parsed chat request
// renders through every chat-template family without a crash.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "engine/chat_template.h"
#include "gateway/openai_protocol.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tiergate;
  if (size == 0) return 0;
  // The first byte picks the route.
  static constexpr gateway::Endpoint kEndpoints[] = {gateway::Endpoint::kChat, gateway::Endpoint::kCompletion,
                                                     gateway::Endpoint::kInteractive};
  const gateway::Endpoint endpoint = kEndpoints[data[0] % 3];
  const bool qos_route = (data[0] / 3) % 2 == 1 || endpoint == gateway::Endpoint::kInteractive;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto parsed = gateway::parse_generation(body, endpoint, qos_route);
  if (const auto* e = std::get_if<gateway::ApiError>(&parsed)) {
    TG_CHECK(e->status == 400);
    simdjson::dom::parser parser;
    TG_CHECK(parser.parse(simdjson::padded_string(e->to_json())).error() == simdjson::SUCCESS);
    return 0;
  }
  const auto& req = std::get<gateway::GenerationRequest>(parsed);
  TG_CHECK(req.endpoint == endpoint);
  if (endpoint != gateway::Endpoint::kCompletion) TG_CHECK(!req.messages.empty());
  for (const char* style : {"<|im_start|>", "<|start_header_id|>", "[INST]"}) {
    const auto rendered = engine::ChatTemplate::from_template_text(style).render_marked(req.messages);
    std::size_t last = 0;
    for (const engine::TextRange& r : rendered.markup) {
      TG_CHECK(r.begin >= last && r.begin < r.end && r.end <= rendered.text.size());
      last = r.end;
    }
  }
  return 0;
}
