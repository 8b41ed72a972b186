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

}  // namespace tiergate::engine::testing
