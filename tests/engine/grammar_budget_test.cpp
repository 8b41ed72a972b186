// engine/grammar_limits.h as the compilers and the grammar honour it: each hostile shape that once
// crashed the server or grew it without bound (issue 23) now meets a limit named in its error, the
// DFA and its masks stay within their bytes, a mask computed in slices equals the mask computed at
// once, and GrammarCache holds its bytes, compiles outside its lock and once per spec.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "engine/grammar.h"
#include "engine/json_schema_pattern.h"
#include "engine/regex_pattern.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

template <typename Error, typename Result>
std::string error_of(const Result& r) {
  const auto* e = std::get_if<Error>(&r);
  return e ? e->message : std::string("(compiled)");
}

// Each $defs entry an anyOf of two references to the next: 2^depth uses of the last one.
std::string ref_chain_schema(int depth) {
  std::string defs;
  for (int i = 0; i < depth; ++i) {
    defs += "\"d" + std::to_string(i) + "\": {\"anyOf\": [{\"$ref\": \"#/$defs/d" + std::to_string(i + 1) +
            "\"}, {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/d" + std::to_string(i + 1) + "\"}}]},";
  }
  defs += "\"d" + std::to_string(depth) + "\": {\"type\": \"string\", \"maxLength\": 8}";
  return "{\"$defs\": {" + defs + "}, \"$ref\": \"#/$defs/d0\"}";
}

TEST(GrammarBudget, DeeplyNestedGroupsAreRefusedAtTheNestingLimit) {
  const std::string deep = std::string(20000, '(') + "a" + std::string(20000, ')');
  const std::string message = error_of<RegexError>(regex_pattern(deep));
  EXPECT_NE(message.find("limit of 64"), std::string::npos) << message;
  // At the limit it still compiles.
  EXPECT_TRUE(std::holds_alternative<PatternRef>(regex_pattern(std::string(64, '(') + "a" + std::string(64, ')'))));
}

TEST(GrammarBudget, AQuantifierAfterAQuantifierIsRefused) {
  const std::string message = error_of<RegexError>(regex_pattern("a" + std::string(60000, '*')));
  EXPECT_NE(message.find("multiple repeat"), std::string::npos) << message;
  EXPECT_NE(error_of<RegexError>(regex_pattern("a{2}{3}")).find("multiple repeat"), std::string::npos);
  EXPECT_TRUE(std::holds_alternative<PatternRef>(regex_pattern("a*?b+?c??d{2,3}?")));  // lazy forms stay
}

TEST(GrammarBudget, SourcesPastTheSizeLimitAreRefused) {
  GrammarLimits limits;
  limits.max_source_bytes = 100;
  EXPECT_NE(error_of<RegexError>(regex_pattern(std::string(101, 'a'), limits)).find("limit of 100"), std::string::npos);
  EXPECT_NE(error_of<SchemaError>(json_schema_pattern("{\"description\": \"" + std::string(100, 'x') + "\"}", false, limits))
                .find("limit of 100"),
            std::string::npos);
  EXPECT_NE(error_of<SchemaError>(choice_pattern("[\"" + std::string(100, 'x') + "\"]", limits)).find("limit of 100"),
            std::string::npos);
}

TEST(GrammarBudget, AReferenceChainCompilesEachDefinitionOnceAndMeetsTheNfaLimit) {
  // The 2 KB schema that grew the server to 24 GB: three schema levels a link, past the nesting limit.
  EXPECT_NE(error_of<SchemaError>(json_schema_pattern(ref_chain_schema(28), false)).find("limit of 64 levels"),
            std::string::npos);
  const std::string schema = ref_chain_schema(20);  // within it: 2^20 uses of the last definition
  {
    pattern::NodeCount nodes;
    const auto p = json_schema_pattern(schema, false);
    ASSERT_TRUE(std::holds_alternative<PatternRef>(p)) << error_of<SchemaError>(p);
    EXPECT_LT(nodes.made(), 2000u);  // linear in the schema: each definition compiled once
  }
  TG_REQUIRE_MODEL(model);
  const auto g = Grammar::compile({GrammarSpec::Kind::kJsonSchema, schema, false, "guided_json"},
                                  std::make_shared<const TokenTrie>(model->tokenizer()));
  EXPECT_NE(error_of<GrammarError>(g).find("limit of 200000 states"), std::string::npos) << error_of<GrammarError>(g);
}

TEST(GrammarBudget, SchemasNestedPastTheLimitAreRefused) {
  std::string schema = "{\"type\": \"string\"}";
  for (int i = 0; i < 200; ++i) schema = "{\"type\": \"array\", \"items\": " + schema + "}";
  EXPECT_NE(error_of<SchemaError>(json_schema_pattern(schema, false)).find("limit of 64 levels"), std::string::npos);
  std::string any_of = "{\"type\": \"null\"}";
  for (int i = 0; i < 200; ++i) any_of = "{\"anyOf\": [" + any_of + "]}";
  EXPECT_NE(error_of<SchemaError>(json_schema_pattern(any_of, false)).find("limit of 64 levels"), std::string::npos);
}

TEST(GrammarBudget, PatternsPastTheNodeLimitStopGrowingThere) {
  GrammarLimits limits;
  limits.max_pattern_nodes = 1000;
  std::string wide;
  for (int i = 0; i < 5000; ++i) wide += "[a-c]x|";
  wide += "y";
  pattern::NodeCount nodes;
  EXPECT_NE(error_of<RegexError>(regex_pattern(wide, limits)).find("limit of 1000 nodes"), std::string::npos);
  EXPECT_LT(nodes.made(), 1100u);  // it stopped at the limit, not after the whole expression
}

TEST(GrammarBudget, ACompilePastItsTimeLimitIsRefused) {
  TG_REQUIRE_MODEL(model);
  GrammarLimits limits;
  limits.max_compile_time = std::chrono::milliseconds(0);
  const auto g = Grammar::compile({GrammarSpec::Kind::kRegex, "([a-z]{100}x){100}", false, "guided_regex"},
                                  std::make_shared<const TokenTrie>(model->tokenizer()), limits);
  EXPECT_NE(error_of<GrammarError>(g).find("limit of 0 ms"), std::string::npos) << error_of<GrammarError>(g);
}

TEST(GrammarBudget, AMaskComputedInSlicesEqualsTheMaskComputedAtOnce) {
  TG_REQUIRE_MODEL(model);
  auto vocab = std::make_shared<const TokenTrie>(model->tokenizer());
  const GrammarSpec spec{GrammarSpec::Kind::kJsonSchema,
                         R"({"type":"object","properties":{"name":{"type":"string"},"n":{"type":"integer"}}})", false,
                         "guided_json"};
  const auto whole = std::get<std::shared_ptr<const Grammar>>(Grammar::compile(spec, vocab));
  const auto sliced = std::get<std::shared_ptr<const Grammar>>(Grammar::compile(spec, vocab));
  // Walk both to the same state inside a string, where nearly every token is allowed.
  Grammar::State a = whole->start(), b = sliced->start();
  for (const char* piece : {"{\"", "name", "\":", " \""}) {
    const auto ids = model->tokenizer().encode(piece, false);
    for (TokenId t : ids) {
      a = whole->next(a, t);
      b = sliced->next(b, t);
    }
  }
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  int slices = 0;
  for (;; ++slices) {
    std::size_t budget = 500;
    const bool ready = sliced->prepare_mask(b, budget);
    if (ready) break;
    EXPECT_EQ(budget, 0u);
    ASSERT_LT(slices, 1000000);
  }
  EXPECT_GT(slices, 10);  // it was worked on in many slices
  EXPECT_EQ(sliced->mask(b), whole->mask(a));
}

TEST(GrammarBudget, TheDfaAndItsMasksStayWithinTheGrammarsBytes) {
  TG_REQUIRE_MODEL(model);
  GrammarLimits limits;
  limits.max_grammar_bytes = 4u << 20;
  auto vocab = std::make_shared<const TokenTrie>(model->tokenizer());
  // Exponentially many DFA states: the 21st byte from the end must be 'a'.
  const auto compiled = Grammar::compile({GrammarSpec::Kind::kRegex, "[ab]*a[ab]{20}", false, "guided_regex"}, vocab, limits);
  const auto g = std::get<std::shared_ptr<const Grammar>>(compiled);
  Grammar::State s = g->start();
  const TokenId a = model->tokenizer().encode("a", false).at(0), b = model->tokenizer().encode("b", false).at(0);
  std::uint64_t x = 88172645463325252ull;
  bool ended = false;
  for (int i = 0; i < 5000 && !ended; ++i) {
    const auto& m = g->mask(s);
    ASSERT_FALSE(m.empty());
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const Grammar::State next = g->next(s, (x & 1) ? a : b);
    if (next < 0) {
      ended = true;  // the budget ran out: the generation under it ends here
    } else {
      s = next;
    }
    EXPECT_LE(g->bytes(), limits.max_grammar_bytes);
  }
  EXPECT_TRUE(ended);
  EXPECT_LE(g->bytes(), limits.max_grammar_bytes);
}

TEST(GrammarBudget, TheCacheEvictsByBytesAndKeepsItsErrors) {
  TG_REQUIRE_MODEL(model);
  GrammarCache cache(100, 256u << 10);
  for (int i = 0; i < 20; ++i) {
    const auto r = cache.get({GrammarSpec::Kind::kRegex, "[a-z]{" + std::to_string(i + 1) + "}", false, "guided_regex"},
                             model->tokenizer());
    ASSERT_TRUE(std::holds_alternative<std::shared_ptr<const Grammar>>(r));
    EXPECT_LE(cache.bytes(), std::size_t{256} << 10);
  }
  EXPECT_LT(cache.size(), 20u);
  const GrammarSpec bad{GrammarSpec::Kind::kRegex, "(a", false, "guided_regex"};
  const auto first = cache.get(bad, model->tokenizer());
  ASSERT_TRUE(std::holds_alternative<GrammarError>(first));
  EXPECT_EQ(std::get<GrammarError>(cache.get(bad, model->tokenizer())).message, std::get<GrammarError>(first).message);
}

// Runs `get(slow)` on two threads while `body` runs on this one, once the slow compile is in flight.
template <typename Body>
void while_compiling(GrammarCache& cache, const Tokenizer& tokenizer, const GrammarSpec& slow, Body body) {
  GrammarCache::Result first, second;
  std::atomic<bool> slow_done{false};
  std::thread compiling([&] {
    first = cache.get(slow, tokenizer);
    slow_done = true;
  });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (cache.compiles_in_flight() == 0 && !slow_done) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the slow compile never started";
    std::this_thread::yield();
  }
  std::thread again([&] { second = cache.get(slow, tokenizer); });
  body(slow_done);
  compiling.join();
  again.join();
  // Compiled once: the second caller got the first one's grammar (or its error).
  if (auto* g = std::get_if<std::shared_ptr<const Grammar>>(&first)) {
    EXPECT_EQ(std::get<std::shared_ptr<const Grammar>>(second), *g);
  } else {
    EXPECT_EQ(std::get<GrammarError>(second).message, std::get<GrammarError>(first).message);
  }
}

TEST(GrammarBudget, TheCacheCompilesOutsideItsLockAndOncePerSpec) {
  TG_REQUIRE_MODEL(model);
  // (.?){500}: a 9-byte expression whose first mask takes hundreds of milliseconds.
  const GrammarSpec slow{GrammarSpec::Kind::kRegex, "(.?){500}", false, "guided_regex"};
  GrammarCache cache(256, kMaxGrammarCacheBytes, GrammarLimits{}, 2);
  cache.get({GrammarSpec::Kind::kRegex, "warm", false, "guided_regex"}, model->tokenizer());  // the vocabulary trie
  while_compiling(cache, model->tokenizer(), slow, [&](const std::atomic<bool>& slow_done) {
    const auto quick = cache.get({GrammarSpec::Kind::kRegex, "[0-9]+", false, "guided_regex"}, model->tokenizer());
    EXPECT_TRUE(std::holds_alternative<std::shared_ptr<const Grammar>>(quick));
    EXPECT_FALSE(slow_done.load()) << "a small spec's compile waited for a large one";
    EXPECT_GT(cache.size(), 1u);  // and the cache answered hits meanwhile
  });
}

TEST(GrammarBudget, PastItsCompileSlotsTheCacheAnswersBusyAtOnce) {
  TG_REQUIRE_MODEL(model);
  const GrammarSpec slow{GrammarSpec::Kind::kRegex, "(.?){500}", false, "guided_regex"};
  GrammarCache cache;  // one compile at a time
  const GrammarSpec hit{GrammarSpec::Kind::kRegex, "cached", false, "guided_regex"};
  cache.get(hit, model->tokenizer());
  while_compiling(cache, model->tokenizer(), slow, [&](const std::atomic<bool>& slow_done) {
    const auto other = cache.get({GrammarSpec::Kind::kRegex, "[0-9]+", false, "guided_regex"}, model->tokenizer());
    ASSERT_TRUE(std::holds_alternative<GrammarError>(other));
    EXPECT_TRUE(std::get<GrammarError>(other).busy);
    EXPECT_TRUE(std::holds_alternative<std::shared_ptr<const Grammar>>(cache.get(hit, model->tokenizer())));
    EXPECT_FALSE(slow_done.load()) << "the busy answer waited for the compile";
  });
}

}  // namespace
}  // namespace tiergate::engine
