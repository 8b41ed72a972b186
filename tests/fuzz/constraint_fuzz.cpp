// Client-written output constraints (issue 23): the first byte picks what the rest is (a
// guided_regex, a guided_json schema, a strict response_format schema, a guided_choice list), and
// it is compiled as the gateway compiles it, through a GrammarCache over the real vocabulary. Any
// source either compiles or is refused with a message; a compiled grammar is then walked a few
// tokens along its own masks, so that the lazy DFA grows as a generation would make it grow, and
// never past its budget. Time and memory per input are libFuzzer's to bound (-timeout,
// -rss_limit_mb: see tests/fuzz/CMakeLists.txt); a compile that ignores its budgets shows up there.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/grammar.h"
#include "engine/grammar_limits.h"
#include "kernels/sampling.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using tiergate::engine::Grammar;
using tiergate::engine::GrammarSpec;
using tiergate::engine::TokenId;

constexpr int kSteps = 8;  // tokens walked per grammar: enough to reach past the start state's mask

GrammarSpec spec_of(std::uint8_t kind, std::string_view source) {
  switch (kind % 4) {
    case 0: return {GrammarSpec::Kind::kRegex, std::string(source), false, "guided_regex"};
    case 1: return {GrammarSpec::Kind::kJsonSchema, std::string(source), false, "guided_json"};
    case 2: return {GrammarSpec::Kind::kJsonSchema, std::string(source), true, "response_format"};
    default: return {GrammarSpec::Kind::kChoice, std::string(source), false, "guided_choice"};
  }
}

std::vector<TokenId> allowed(const std::vector<std::uint32_t>& mask, std::size_t vocab) {
  std::vector<TokenId> out;
  for (std::size_t t = 0; t < vocab; ++t) {
    if (tiergate::kernels::mask_allows(mask.data(), static_cast<TokenId>(t))) out.push_back(static_cast<TokenId>(t));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const tiergate::engine::Tokenizer& tok = tiergate::fuzz::model().tokenizer();
  // One cache for the process, as the gateway holds one: its eviction is under test too.
  static tiergate::engine::GrammarCache cache;
  const tiergate::engine::GrammarLimits limits;  // the gateway compiles under the defaults
  const GrammarSpec spec = spec_of(data[0], std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  auto compiled = cache.get(spec, tok);
  if (auto* e = std::get_if<tiergate::engine::GrammarError>(&compiled)) {
    TG_CHECK(!e->message.empty());  // the 400 must say what is wrong
    return 0;
  }
  const auto& grammar = std::get<std::shared_ptr<const Grammar>>(compiled);
  TG_CHECK(grammar != nullptr);
  TG_CHECK(grammar->dfa_states() <= limits.max_dfa_states);
  // Choices among the allowed tokens come from the input, so a crash replays exactly.
  std::minstd_rand pick(static_cast<std::uint32_t>(std::hash<std::string_view>{}(spec.source)) | 1u);
  Grammar::State state = grammar->start();
  for (int step = 0; step < kSteps && state >= 0; ++step) {
    const std::vector<TokenId> options = allowed(grammar->mask(state), tok.vocab_size());
    TG_CHECK(grammar->dfa_states() <= limits.max_dfa_states);
    if (options.empty()) break;  // the DFA budget ran out on the way: the generation would end here
    const TokenId token = options[pick() % options.size()];
    const bool was_accepting = grammar->accepting(state);
    state = grammar->next(state, token);
    TG_CHECK(grammar->dfa_states() <= limits.max_dfa_states);
    // An end-of-generation token ends the generation exactly where the match may end.
    if (grammar->vocabulary().is_end(token)) TG_CHECK((state == Grammar::kEnded) == was_accepting);
  }
  return 0;
}
