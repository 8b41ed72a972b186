// Shared by the fuzz targets: the default model (for the tokenizer and the stand-in engine), and
// TG_CHECK for their invariants (an abort, which libFuzzer records as a crash).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "engine/model.h"
#include "kernels/check.h"  // TG_CHECK: a broken invariant aborts, which libFuzzer records

namespace tiergate::fuzz {

inline std::string model_path() {
  if (const char* env = std::getenv("TIERGATE_MODEL")) return env;
  return TIERGATE_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// Loaded once; a missing model is a setup error, not a finding.
inline const engine::Model& model() {
  static const std::unique_ptr<engine::Model> m = [] {
    if (!std::filesystem::exists(model_path())) {
      std::fprintf(stderr, "fuzz: model not found at %s (run tools/fetch_model.sh)\n", model_path().c_str());
      std::exit(2);
    }
    return engine::Model::load(model_path());
  }();
  return *m;
}

}  // namespace tiergate::fuzz
