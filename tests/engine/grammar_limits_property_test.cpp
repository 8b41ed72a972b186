// engine/grammar_limits.h as properties (issue 23): client-written constraints, deep and wide,
// compiled under small GrammarLimits so that thousands of cases run in seconds. Whatever the spec,
// compiling returns a grammar or an error; a spec within the limits by construction compiles; one
// beyond a limit by construction is refused with a message naming the limit and its number; and a
// compiled grammar, walked along random tokens its masks allow, never holds more DFA states than
// its budget. The issue's own inputs, under the default limits, come first.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "engine/grammar.h"
#include "engine/grammar_limits.h"
#include "kernels/sampling.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

using Compiled = std::variant<std::shared_ptr<const Grammar>, GrammarError>;

// Small enough that generated specs cross each limit; odd numbers, so that a message naming one
// cannot be mistaken for an offset or a count in the spec.
GrammarLimits small_limits() {
  GrammarLimits l;
  l.max_source_bytes = 8011;
  l.max_nesting = 23;
  l.max_pattern_nodes = 1009;
  l.max_nfa_states = 20011;
  l.max_dfa_states = 211;
  l.max_grammar_bytes = 32u << 20;
  // Never the limit that decides here: a loaded machine must not change an outcome.
  l.max_compile_time = std::chrono::minutes(10);
  return l;
}

std::shared_ptr<const TokenTrie> vocabulary(const Model& model) {
  static const std::shared_ptr<const TokenTrie> trie = std::make_shared<const TokenTrie>(model.tokenizer());
  return trie;
}

const std::string* error_of(const Compiled& c) {
  const auto* e = std::get_if<GrammarError>(&c);
  return e ? &e->message : nullptr;
}

bool refused(const Compiled& c) { return std::holds_alternative<GrammarError>(c); }

bool names_limit(const std::string& message, std::size_t limit) {
  return message.find("limit") != std::string::npos && message.find(std::to_string(limit)) != std::string::npos;
}

// A spec past several limits may be stopped by whichever its compiler meets first.
bool names_some_limit(const std::string& message, const GrammarLimits& l) {
  for (std::size_t n : {l.max_source_bytes, static_cast<std::size_t>(l.max_nesting), l.max_pattern_nodes,
                        l.max_nfa_states, l.max_grammar_bytes}) {
    if (names_limit(message, n)) return true;
  }
  return false;
}

// A generation's walk: random tokens among those each state's mask allows. The DFA grows only as
// masks and steps reach new states; it must stop at its budget (the walk then ends, as the
// generation would).
void walk(const Grammar& g, const GrammarLimits& limits) {
  const std::size_t vocab = g.vocabulary().vocab_size();
  const int steps = *rc::gen::inRange(1, 7);
  Grammar::State s = g.start();
  RC_ASSERT(g.dfa_states() <= limits.max_dfa_states);
  for (int i = 0; i < steps && s >= 0; ++i) {
    const std::vector<std::uint32_t>& mask = g.mask(s);
    RC_ASSERT(g.dfa_states() <= limits.max_dfa_states);
    std::vector<TokenId> allowed;
    for (std::size_t t = 0; t < vocab; ++t) {
      if (kernels::mask_allows(mask.data(), static_cast<TokenId>(t))) allowed.push_back(static_cast<TokenId>(t));
    }
    RC_ASSERT(!allowed.empty());  // at worst the end tokens, so that the generation can stop
    s = g.next(s, allowed[*rc::gen::inRange<std::size_t>(0, allowed.size())]);
    RC_ASSERT(g.dfa_states() <= limits.max_dfa_states);
  }
}

Compiled compile(const Model& model, GrammarSpec::Kind kind, const std::string& source, const GrammarLimits& limits,
                 bool strict = false) {
  Compiled c = Grammar::compile({kind, source, strict, "guided"}, vocabulary(model), limits);
  // Shown only for a failing case (the source cut, for the 100,000-character ones).
  RC_LOG() << (strict ? "strict " : "") << source.size() << " bytes: " << source.substr(0, 400) << "\n  -> "
           << (refused(c) ? *error_of(c) : std::string("compiled")) << "\n";
  return c;
}

// ---- the issue's inputs, under the limits the gateway uses ----

TEST(GrammarLimits, TheIssuesHostileInputsAreRefusedNamingALimit) {
  TG_REQUIRE_MODEL(model);
  const GrammarLimits defaults;
  GrammarCache cache;
  auto answer = [&](GrammarSpec::Kind kind, const std::string& source) {
    const Compiled c = cache.get({kind, source, false, "guided"}, model->tokenizer());
    return error_of(c) ? *error_of(c) : std::string("<compiled>");
  };
  // Each of these used to kill or bloat the server (a recursion 20,000 deep, 100,000 nested
  // repeats, a pattern expanding 2^28 times).
  const std::string deep = std::string(20000, '(') + "a" + std::string(20000, ')');
  EXPECT_TRUE(names_limit(answer(GrammarSpec::Kind::kRegex, deep), static_cast<std::size_t>(defaults.max_nesting)))
      << answer(GrammarSpec::Kind::kRegex, deep);
  const std::string stars = "a" + std::string(100000, '*');
  EXPECT_TRUE(names_limit(answer(GrammarSpec::Kind::kRegex, stars), defaults.max_source_bytes))
      << answer(GrammarSpec::Kind::kRegex, stars);
  const std::string few_stars = "a" + std::string(1000, '*');
  EXPECT_NE(answer(GrammarSpec::Kind::kRegex, few_stars).find("multiple repeat"), std::string::npos)
      << answer(GrammarSpec::Kind::kRegex, few_stars);
  EXPECT_NE(answer(GrammarSpec::Kind::kRegex, "a{2}{3}").find("multiple repeat"), std::string::npos);
  std::string defs;
  for (int i = 0; i < 28; ++i) {
    const std::string next = "\"#/$defs/d" + std::to_string(i + 1) + "\"";
    defs += "\"d" + std::to_string(i) + "\":{\"anyOf\":[{\"$ref\":" + next + "},{\"$ref\":" + next + "}]},";
  }
  const std::string chain = "{\"$defs\":{" + defs + "\"d28\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/d0\"}";
  const std::string why = answer(GrammarSpec::Kind::kJsonSchema, chain);
  EXPECT_TRUE(names_some_limit(why, defaults)) << why;
}

// ---- regular expressions ----

std::string regex_leaf(int which) {
  static const char* const leaves[] = {"a", "[a-c]", "\\d", ".", "[\\u00e0-\\u00ff]", "xyz", "", "b+"};
  return leaves[which % 8];
}

// Groups nested `forms.size()` deep, innermost last; every form is one group around the rest and
// costs one copy of it (no counted repeats), so the automaton grows linearly with the depth.
std::string nested_regex(const std::vector<int>& forms, const std::vector<int>& leaves) {
  std::string r = regex_leaf(leaves.empty() ? 0 : leaves.back());
  for (std::size_t i = forms.size(); i-- > 0;) {
    const std::string leaf = regex_leaf(leaves[i]);
    switch (forms[i]) {
      case 0: r = "(" + r + ")"; break;
      case 1: r = "(?:" + r + ")"; break;
      case 2: r = "(" + r + "|" + leaf + ")"; break;
      case 3: r = "(?:" + leaf + "|" + r + ")?"; break;
      case 4: r = "(" + r + ")*"; break;
      case 5: r = "(?:" + leaf + r + ")+"; break;
      default: r = "(" + leaf + r + leaf + ")"; break;
    }
  }
  return r;
}

TG_MODEL_PROP(GrammarLimitsProperty, DeepRegexesCompileUpToTheNestingLimitAndAreRefusedPastIt) {
  const GrammarLimits limits = small_limits();
  const int depth = *rc::gen::oneOf(rc::gen::inRange(0, 30), rc::gen::inRange(0, 201));
  const auto forms = *rc::gen::container<std::vector<int>>(static_cast<std::size_t>(depth), rc::gen::inRange(0, 7));
  const auto leaves = *rc::gen::container<std::vector<int>>(static_cast<std::size_t>(depth) + 1, rc::gen::inRange(0, 8));
  const std::string regex = nested_regex(forms, leaves);
  const Compiled c = compile(model, GrammarSpec::Kind::kRegex, regex, limits);
  if (depth <= limits.max_nesting) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  } else {
    RC_ASSERT(refused(c));
    RC_ASSERT(names_limit(*error_of(c), static_cast<std::size_t>(limits.max_nesting)));
  }
}

std::string random_word() {
  return *rc::gen::container<std::string>(static_cast<std::size_t>(*rc::gen::inRange(1, 7)),
                                          rc::gen::elementOf(std::string("abc")));
}

TG_MODEL_PROP(GrammarLimitsProperty, WideRegexesCompileWhenSmallAndAreRefusedPastTheNodeOrSourceLimit) {
  const GrammarLimits limits = small_limits();
  const auto width = static_cast<std::size_t>(*rc::gen::oneOf(rc::gen::inRange(1, 300), rc::gen::inRange(1, 2001)));
  const bool alternation = *rc::gen::arbitrary<bool>();
  std::string regex;
  for (std::size_t i = 0; i < width; ++i) {
    // A concatenation's items are separate atoms: a group each, so no two literals merge into one.
    regex += alternation ? (i ? "|" : "") + random_word() : "(?:" + random_word() + ")?";
  }
  const Compiled c = compile(model, GrammarSpec::Kind::kRegex, regex, limits);
  // Every branch or item is at least one pattern node; a small one, a handful.
  const bool beyond = regex.size() > limits.max_source_bytes || width > limits.max_pattern_nodes;
  const bool within = regex.size() <= limits.max_source_bytes && 8 * width + 16 <= limits.max_pattern_nodes;
  if (error_of(c)) RC_ASSERT(names_some_limit(*error_of(c), limits));
  if (beyond) RC_ASSERT(refused(c));
  if (within) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
}

TG_MODEL_PROP(GrammarLimitsProperty, AQuantifierAfterAQuantifierIsAMultipleRepeat) {
  const GrammarLimits limits = small_limits();
  const std::size_t count = *rc::gen::oneOf(rc::gen::inRange<std::size_t>(2, 20), rc::gen::inRange<std::size_t>(2, 100001));
  // A `?` right after a quantifier makes it lazy and a `+` possessive: neither may come second.
  std::string regex = "a" + *rc::gen::element<std::string>("*", "+", "?", "{2}", "{1,3}", "*?");
  for (std::size_t i = 1; i < count; ++i) regex += *rc::gen::element<std::string>("*", "{2}", "{1,3}", "{2,}");
  const Compiled c = compile(model, GrammarSpec::Kind::kRegex, regex, limits);
  RC_ASSERT(refused(c));
  if (regex.size() > limits.max_source_bytes) {
    RC_ASSERT(names_limit(*error_of(c), limits.max_source_bytes));
  } else {
    RC_ASSERT(error_of(c)->find("multiple repeat") != std::string::npos);
  }
}

TG_MODEL_PROP(GrammarLimitsProperty, CountedRepeatsCompileWhileTheirCopiesFitAndAreRefusedPastTheNfaLimit) {
  const GrammarLimits limits = small_limits();
  const auto counts = *rc::gen::container<std::vector<int>>(static_cast<std::size_t>(*rc::gen::inRange(1, 4)),
                                                              rc::gen::inRange(0, 1001));
  std::string regex = "a";
  std::size_t copies = 1;  // of `a`, each at least one NFA state
  std::size_t states = 2;  // at most, were each copy and each repeat's ends a few states
  for (int n : counts) {
    regex = "(?:" + regex + "){" + std::to_string(n) + "}";
    copies *= static_cast<std::size_t>(n);
    states = static_cast<std::size_t>(std::max(n, 1)) * (states + 4) + 4;  // {0} still costs its ends
  }
  regex += "b";  // so that zero copies still leave a language of one string
  const Compiled c = compile(model, GrammarSpec::Kind::kRegex, regex, limits);
  if (error_of(c)) RC_ASSERT(names_limit(*error_of(c), limits.max_nfa_states));
  if (copies > limits.max_nfa_states) RC_ASSERT(refused(c));
  if (2 * states <= limits.max_nfa_states) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
}

TG_MODEL_PROP(GrammarLimitsProperty, ADfaThatWouldBlowUpStopsAtItsBudget) {
  // (a|b)*a(a|b){n}: n + 1 NFA states make up to 2^(n+1) DFA states, far past the budget at n = 20.
  const GrammarLimits limits = small_limits();
  const int n = *rc::gen::inRange(0, 21);
  const std::string regex = *rc::gen::element<std::string>("(a|b)*a(a|b){", "[ab]*a[ab]{", "(?:a|b|ab)*a(?:a|b){") +
                            std::to_string(n) + "}";
  const Compiled c = compile(model, GrammarSpec::Kind::kRegex, regex, limits);
  RC_ASSERT(!refused(c));
  walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
}

// The walks above could pass by never nearing the budget: this one reaches it.
TEST(GrammarLimits, AGenerationThatOutgrowsTheDfaBudgetEndsThere) {
  TG_REQUIRE_MODEL(model);
  const GrammarLimits limits = small_limits();
  const Compiled c = compile(*model, GrammarSpec::Kind::kRegex, "(a|b)*a(a|b){20}", limits);
  ASSERT_FALSE(refused(c)) << *error_of(c);
  const Grammar& g = *std::get<std::shared_ptr<const Grammar>>(c);
  const TokenTrie& vocab = g.vocabulary();
  // Random allowed tokens (a fixed seed): a and b in ever new orders, so that the DFA keeps growing.
  std::mt19937 pick(23);
  Grammar::State s = g.start();
  int step = 0;
  for (; step < 200 && s >= 0; ++step) {
    const std::vector<std::uint32_t>& mask = g.mask(s);
    ASSERT_LE(g.dfa_states(), limits.max_dfa_states) << "step " << step;
    std::vector<TokenId> continuing;
    for (std::size_t t = 0; t < vocab.vocab_size(); ++t) {
      const auto id = static_cast<TokenId>(t);
      if (!vocab.is_end(id) && kernels::mask_allows(mask.data(), id)) continuing.push_back(id);
    }
    if (continuing.empty()) break;  // only the end tokens: the budget ended the generation
    s = g.next(s, continuing[pick() % continuing.size()]);
  }
  EXPECT_EQ(g.dfa_states(), limits.max_dfa_states) << "the walk never reached the budget (" << step << " steps)";
  EXPECT_LT(step, 200) << "a generation past the DFA budget went on";
}

// ---- JSON schemas ----

std::string schema_leaf(int which) {
  static const char* const leaves[] = {R"({"type":"integer"})", R"({"type":"string","maxLength":5})",
                                       R"({"type":"boolean"})", R"({"enum":["x","y"]})",
                                       R"({"type":"null"})", R"({"type":"number"})"};
  return leaves[which % 6];
}

// Schema levels nested `forms.size()` deep, innermost last, each one copy of the rest (no bounded
// arrays, whose items are copied per position): objects closed and fully required, so that OpenAI's
// strict mode accepts them too.
std::string nested_schema(const std::vector<int>& forms, int leaf) {
  std::string s = schema_leaf(leaf), defs;
  for (std::size_t i = forms.size(); i-- > 0;) {
    const std::string d = "d" + std::to_string(i);
    switch (forms[i]) {
      case 0:
        s = R"({"type":"object","additionalProperties":false,"required":["k"],"properties":{"k":)" + s + "}}";
        break;
      case 1: s = R"({"type":"array","items":)" + s + "}"; break;
      case 2: s = R"({"anyOf":[)" + s + R"(,{"type":"null"}]})"; break;
      case 3:
        defs += (defs.empty() ? "\"" : ",\"") + d + "\":" + s;
        s = R"({"$ref":"#/$defs/)" + d + "\"}";
        break;
      case 4: s = R"({"allOf":[)" + s + "]}"; break;
      default:
        s = R"({"type":"object","additionalProperties":false,"required":["a","b"],"properties":{"a":{"type":"integer"},"b":)" +
            s + "}}";
        break;
    }
  }
  // Definitions live at the root (s is an object: insert them as its first member).
  if (!defs.empty()) s = "{\"$defs\":{" + defs + "}," + s.substr(1);
  return s;
}

TG_MODEL_PROP(GrammarLimitsProperty, DeepSchemasCompileWellWithinTheNestingLimitAndAreRefusedPastIt) {
  const GrammarLimits limits = small_limits();
  const int depth = *rc::gen::oneOf(rc::gen::inRange(0, 30), rc::gen::inRange(0, 201));
  const auto forms = *rc::gen::container<std::vector<int>>(static_cast<std::size_t>(depth), rc::gen::inRange(0, 6));
  const bool strict = *rc::gen::arbitrary<bool>();
  const std::string schema = nested_schema(forms, *rc::gen::inRange(0, 6));
  const Compiled c = compile(model, GrammarSpec::Kind::kJsonSchema, schema, limits, strict);
  if (error_of(c)) RC_ASSERT(names_some_limit(*error_of(c), limits));
  // A level may count twice (a $ref and its target; an anyOf and its branch): within is half.
  if (2 * depth + 2 <= limits.max_nesting && schema.size() <= limits.max_source_bytes) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
  if (depth > limits.max_nesting + 1) RC_ASSERT(refused(c));
}

TG_MODEL_PROP(GrammarLimitsProperty, WideSchemasCompileWhenSmallAndAreRefusedPastTheNodeOrSourceLimit) {
  const GrammarLimits limits = small_limits();
  const auto width = static_cast<std::size_t>(*rc::gen::oneOf(rc::gen::inRange(1, 60), rc::gen::inRange(1, 2001)));
  const int shape = *rc::gen::inRange(0, 4);
  const bool strict = shape == 0 && *rc::gen::arbitrary<bool>();
  std::string list;
  for (std::size_t i = 0; i < width; ++i) {
    const std::string name = "\"p" + std::to_string(i) + "\"";
    if (i) list += ",";
    switch (shape) {
      case 0: list += name + ":" + schema_leaf(static_cast<int>(i)); break;  // properties
      case 1: list += name; break;                                            // enum
      case 2: list += "{\"const\":" + name + "}"; break;                      // anyOf
      default: list += schema_leaf(static_cast<int>(i)); break;              // prefixItems
    }
  }
  std::string schema;
  switch (shape) {
    case 0: {
      std::string required;
      for (std::size_t i = 0; i < width; ++i) required += (i ? ",\"p" : "\"p") + std::to_string(i) + "\"";
      schema = R"({"type":"object","additionalProperties":false,"required":[)" + required + "],\"properties\":{" + list + "}}";
      break;
    }
    case 1: schema = "{\"enum\":[" + list + "]}"; break;
    case 2: schema = "{\"anyOf\":[" + list + "]}"; break;
    default: schema = R"({"type":"array","items":false,"prefixItems":[)" + list + "]}"; break;
  }
  const Compiled c = compile(model, GrammarSpec::Kind::kJsonSchema, schema, limits, strict);
  if (error_of(c)) RC_ASSERT(names_some_limit(*error_of(c), limits));
  // Each property, value or branch is at least one node; a leaf schema is a few dozen at most.
  if (schema.size() > limits.max_source_bytes || width > limits.max_pattern_nodes) RC_ASSERT(refused(c));
  if (schema.size() <= limits.max_source_bytes && 32 * width + 64 <= limits.max_pattern_nodes) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
}

TG_MODEL_PROP(GrammarLimitsProperty, DoublingRefChainsAreRefusedOnceTheirExpansionPassesTheNfaLimit) {
  // Each definition an anyOf of two $refs to the next: the pattern stays linear (a target is
  // shared), its NFA doubles per level.
  const GrammarLimits limits = small_limits();
  const int levels = *rc::gen::inRange(1, 41);
  std::string defs;
  for (int i = 0; i < levels; ++i) {
    const std::string next = "\"#/$defs/d" + std::to_string(i + 1) + "\"";
    defs += "\"d" + std::to_string(i) + "\":{\"anyOf\":[{\"$ref\":" + next + "},{\"$ref\":" + next + "}]},";
  }
  const std::string schema =
      "{\"$defs\":{" + defs + "\"d" + std::to_string(levels) + "\":{\"enum\":[1,2]}},\"$ref\":\"#/$defs/d0\"}";
  const Compiled c = compile(model, GrammarSpec::Kind::kJsonSchema, schema, limits);
  if (error_of(c)) RC_ASSERT(names_some_limit(*error_of(c), limits));
  if (levels >= 15) RC_ASSERT(refused(c));  // 2^15 copies of the leaf: past 20011 states
  if (levels <= 5) {                          // 32 copies, at most 11 levels of nesting
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
}

TG_MODEL_PROP(GrammarLimitsProperty, ChoicesCompileWhenFewAndAreRefusedPastTheNodeOrSourceLimit) {
  const GrammarLimits limits = small_limits();
  const auto count = static_cast<std::size_t>(*rc::gen::oneOf(rc::gen::inRange(1, 50), rc::gen::inRange(1, 3001)));
  std::string choices = "[";
  for (std::size_t i = 0; i < count; ++i) choices += (i ? ",\"" : "\"") + random_word() + "\"";
  choices += "]";
  const Compiled c = compile(model, GrammarSpec::Kind::kChoice, choices, limits);
  if (error_of(c)) RC_ASSERT(names_some_limit(*error_of(c), limits));
  if (choices.size() > limits.max_source_bytes || count > limits.max_pattern_nodes) RC_ASSERT(refused(c));
  if (choices.size() <= limits.max_source_bytes && 8 * count + 16 <= limits.max_pattern_nodes) {
    RC_ASSERT(!refused(c));
    walk(*std::get<std::shared_ptr<const Grammar>>(c), limits);
  }
}

}  // namespace
}  // namespace tiergate::engine
