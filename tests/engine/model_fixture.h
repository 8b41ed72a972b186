// Shared by the engine tests that need the default GGUF: where it is, and the llama.cpp fixtures.
// Without the model file (tools/fetch_model.sh fetches it; tools/test.sh runs that first) the
// tests skip with a message, which ctest shows as skipped; where the model is required (CI=true,
// or TIERGATE_REQUIRE_MODEL=1 as tools/test.sh sets) they fail instead, so that a run without the
// model cannot pass.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
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

inline bool model_required() {
  const char* ci = std::getenv("CI");
  const char* required = std::getenv("TIERGATE_REQUIRE_MODEL");
  return (ci && std::string_view(ci) == "true") ||
         (required && *required && std::string_view(required) != "0");
}

inline std::string missing_model_message() {
  return "model not found at " + default_model_path() + " (run tools/fetch_model.sh)" +
         (model_required() ? "; CI=true or TIERGATE_REQUIRE_MODEL requires it" : "");
}

// Declares `model` and skips (or, where the model is required, fails) the test without it.
#define TG_REQUIRE_MODEL(model)                                                         \
  const ::tiergate::engine::Model* model = ::tiergate::engine::testing::shared_model(); \
  if (!model) {                                                                         \
    if (::tiergate::engine::testing::model_required()) {                               \
      FAIL() << ::tiergate::engine::testing::missing_model_message();                  \
    }                                                                                   \
    GTEST_SKIP() << ::tiergate::engine::testing::missing_model_message();              \
  }                                                                                     \
  static_assert(true)

// A rapidcheck property over the default model (`model` in its body): it skips or fails as a
// whole like TG_REQUIRE_MODEL (an RC_PRE on the model would discard every case, which rapidcheck
// reports as a failure that says nothing of the model).
#define TG_MODEL_PROP(Suite, Name)                                                      \
  void tg_model_prop_##Suite##_##Name(const ::tiergate::engine::Model& model);          \
  TEST(Suite, Name) {                                                                   \
    TG_REQUIRE_MODEL(loaded);                                                           \
    ::rc::detail::checkGTest([loaded] { tg_model_prop_##Suite##_##Name(*loaded); });    \
  }                                                                                     \
  void tg_model_prop_##Suite##_##Name(const ::tiergate::engine::Model& model)

inline simdjson::dom::element load_fixture(simdjson::dom::parser& parser, const std::string& name) {
  return parser.load(TIERGATE_SOURCE_DIR "/tests/engine/fixtures/" + name);
}

// tests/engine/fixtures/greedy_continuations.json: llama.cpp's greedy continuations of the
// prompt corpus and their top-2 logit gaps.
struct GreedyCase {
  std::string prompt;
  std::vector<TokenId> prompt_ids, greedy;
  std::vector<double> gaps;
};

// A top-2 gap below which two implementations whose arithmetic differs may legitimately choose
// differently. Every activation is quantised to int8 before each matmul, so a last-bit difference
// can move an element a whole quantisation step and the logits by a few tenths: the CPU engine's
// flips against llama.cpp's fixture all lie at llama.cpp gaps below 0.25. llama.cpp's own AVX2
// build against its AVX-512 build (the fixture's) shows the same: 1 of 8 prompts identical for 32
// tokens, top-2 gaps 0.12 apart on average, every divergence at a gap below 0.22.
inline constexpr double kNearTie = 0.3;

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
