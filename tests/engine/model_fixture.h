// Shared by the engine tests that need the default GGUF: where it is, and the llama.cpp fixtures.
// Without the model file (tools/fetch_model.sh fetches it; tools/test.sh runs that first) the
// tests skip with a message rather than fail.
#pragma once

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"

namespace tiergate::engine::testing {

inline std::string default_model_path() {
  if (const char* env = std::getenv("TIERGATE_MODEL")) return env;
  return TIERGATE_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The model, loaded once per test binary; nullptr when the file is absent.
inline const Model* shared_model() {
  static std::unique_ptr<Model> model = [] {
    const std::string path = default_model_path();
    return std::filesystem::exists(path) ? Model::load(path) : nullptr;
  }();
  return model.get();
}

#define TG_REQUIRE_MODEL(model)                                                               \
  const ::tiergate::engine::Model* model = ::tiergate::engine::testing::shared_model();       \
  if (!model) GTEST_SKIP() << "model not found at " << ::tiergate::engine::testing::default_model_path() \
                           << " (run tools/fetch_model.sh)"

inline simdjson::dom::element load_fixture(simdjson::dom::parser& parser, const std::string& name) {
  return parser.load(TIERGATE_SOURCE_DIR "/tests/engine/fixtures/" + name);
}

// tests/engine/fixtures/greedy_continuations.json: llama.cpp's greedy continuations of the
// prompt corpus (= the CPU engine's, which is bit-exact with it) and their top-2 logit gaps.
struct GreedyCase {
  std::string prompt;
  std::vector<TokenId> prompt_ids, greedy;
  std::vector<double> gaps;
};

inline std::vector<GreedyCase> load_greedy_cases() {
  simdjson::dom::parser parser;
  std::vector<GreedyCase> cases;
  for (simdjson::dom::element c : load_fixture(parser, "greedy_continuations.json")["cases"].get_array()) {
    GreedyCase gc;
    gc.prompt = std::string(c["prompt"].get_string().value());
    for (auto id : c["prompt_ids"].get_array()) gc.prompt_ids.push_back(static_cast<TokenId>(id.get_int64()));
    for (auto id : c["greedy"].get_array()) gc.greedy.push_back(static_cast<TokenId>(id.get_int64()));
    for (auto g : c["top2_gap"].get_array()) gc.gaps.push_back(g.get_double());
    cases.push_back(std::move(gc));
  }
  return cases;
}

}  // namespace tiergate::engine::testing
