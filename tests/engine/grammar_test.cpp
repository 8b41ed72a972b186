// engine/grammar_pattern.*, engine/regex_pattern.*, engine/json_schema_pattern.* and
// engine/grammar.*: what each pattern accepts (checked by simulating its NFA, independently of the
// grammar's DFA), regular expressions against std::regex, integer ranges against arithmetic, the
// schema subset's errors, and the grammar's token masks against token-by-token stepping.
#include "engine/grammar.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <iostream>
#include <regex>
#include <set>

#include "engine/json_schema_pattern.h"
#include "engine/regex_pattern.h"
#include "engine/tool_calls.h"
#include "kernels/sampling.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

// Whether `nfa` accepts `text`, by the textbook simulation (sets of states, epsilon closure).
bool nfa_accepts(const Nfa& nfa, std::string_view text) {
  auto close = [&](std::vector<std::int32_t> set) {
    std::vector<char> seen(nfa.states.size(), 0);
    std::vector<std::int32_t> out;
    while (!set.empty()) {
      const std::int32_t s = set.back();
      set.pop_back();
      if (seen[static_cast<std::size_t>(s)]) continue;
      seen[static_cast<std::size_t>(s)] = 1;
      out.push_back(s);
      for (std::int32_t t : nfa.states[static_cast<std::size_t>(s)].epsilon) set.push_back(t);
    }
    return out;
  };
  std::vector<std::int32_t> now = close({0});
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    std::vector<std::int32_t> next;
    for (std::int32_t s : now) {
      for (const Nfa::Edge& e : nfa.states[static_cast<std::size_t>(s)].edges) {
        if (e.lo <= c && c <= e.hi) next.push_back(e.to);
      }
    }
    now = close(next);
    if (now.empty()) return false;
  }
  return std::find(now.begin(), now.end(), nfa.accept) != now.end();
}

Nfa nfa_of(const PatternRef& p) {
  auto nfa = compile_nfa(p, 1000000);
  EXPECT_TRUE(std::holds_alternative<Nfa>(nfa));
  return std::holds_alternative<Nfa>(nfa) ? std::move(std::get<Nfa>(nfa)) : Nfa{};
}

Nfa regex_nfa(std::string_view regex) {
  auto p = regex_pattern(regex);
  EXPECT_TRUE(std::holds_alternative<PatternRef>(p)) << regex << ": " << std::get<RegexError>(p).message;
  return nfa_of(std::get<PatternRef>(p));
}

Nfa schema_nfa(std::string_view schema, bool strict = false) {
  auto p = json_schema_pattern(schema, strict);
  EXPECT_TRUE(std::holds_alternative<PatternRef>(p)) << schema << ": " << std::get<SchemaError>(p).message;
  return nfa_of(std::holds_alternative<PatternRef>(p) ? std::get<PatternRef>(p) : pattern::empty());
}

std::string schema_error(std::string_view schema, bool strict = false) {
  auto p = json_schema_pattern(schema, strict);
  return std::holds_alternative<SchemaError>(p) ? std::get<SchemaError>(p).message : "<ok>";
}

TEST(RegexPattern, AcceptsWhatTheExpressionMatches) {
  struct Case {
    const char* regex;
    std::vector<std::string> yes, no;
  };
  const Case cases[] = {
      {"[0-9]{3}", {"123", "000"}, {"12", "1234", "12a", ""}},
      {"a|bc|", {"a", "bc", ""}, {"b", "abc"}},
      {"(ab)+c?", {"ab", "ababc"}, {"", "abcab", "a"}},
      {"^\\d+\\.\\d*$", {"1.", "12.34"}, {".5", "1"}},
      {"[^a-c]x", {"dx", "éx", "\nx"}, {"ax", "x", "dd"}},
      {"(?:yes|no)(?P<tail>!)?", {"yes", "no!"}, {"yes!!", "maybe"}},
      {".{2}", {"ab", "é!", "中文"}, {"a\n", "a"}},
      {"\\w+@\\w+\\.com", {"a_1@x.com"}, {"a@x.org", "@x.com"}},
      {"x{2,}", {"xx", "xxxxx"}, {"x"}},
      {"x{1,3}?y", {"xy", "xxxy"}, {"xxxxy", "y"}},
      {"[\\s\\d-]+", {" 1-2\t"}, {"a"}},
      {"\\u00e9\\x41", {"éA"}, {"eA"}},
      {"[à-ÿ]+", {"àéÿ"}, {"a", "Ā"}},
  };
  for (const Case& c : cases) {
    const Nfa nfa = regex_nfa(c.regex);
    for (const auto& s : c.yes) EXPECT_TRUE(nfa_accepts(nfa, s)) << c.regex << " should match " << s;
    for (const auto& s : c.no) EXPECT_FALSE(nfa_accepts(nfa, s)) << c.regex << " should not match " << s;
  }
}

TEST(RegexPattern, RefusesWhatIsNotRegularWithItsPosition) {
  for (const char* bad : {"(a)\\1", "a(?=b)", "(?<!x)a", "\\bword", "(?i)abc", "a{3,2}", "[z-a]", "(ab", "ab)",
                          "*a", "a^b", "a{5000}", "a++"}) {
    auto r = regex_pattern(bad);
    ASSERT_TRUE(std::holds_alternative<RegexError>(r)) << bad;
    EXPECT_NE(std::get<RegexError>(r).message.find("offset"), std::string::npos) << bad;
  }
}

// Random expressions of the supported syntax over a small alphabet, against std::regex, with
// whether each may match "" (unbounded repetition applies to non-empty ones only: std::regex
// backtracks without end on things like (a*)*).
using Expr = std::pair<std::string, bool>;  // (text, nullable)
rc::Gen<Expr> random_regex(int depth) {
  const auto atom = rc::gen::map(rc::gen::element<std::string>("a", "b", "c", ".", "[ab]", "[^a]", "\\d", "[0-2]", "\\."),
                                 [](const std::string& s) { return Expr{s, false}; });
  if (depth == 0) return atom;
  return rc::gen::oneOf(
      atom,
      rc::gen::map(rc::gen::pair(random_regex(depth - 1), random_regex(depth - 1)),
                   [](const auto& p) { return Expr{p.first.first + p.second.first, p.first.second && p.second.second}; }),
      rc::gen::map(rc::gen::pair(random_regex(depth - 1), random_regex(depth - 1)), [](const auto& p) {
        return Expr{"(" + p.first.first + "|" + p.second.first + ")", p.first.second || p.second.second};
      }),
      rc::gen::map(rc::gen::pair(random_regex(depth - 1), rc::gen::element<std::string>("*", "+", "?", "{2}", "{1,3}", "{0,}")),
                   [](const auto& p) {
                     const bool unbounded = p.second == "*" || p.second == "+" || p.second == "{0,}";
                     if (unbounded && p.first.second) return Expr{"(" + p.first.first + ")?", true};
                     const bool nullable = p.first.second || p.second == "*" || p.second == "?" || p.second == "{0,}";
                     return Expr{"(" + p.first.first + ")" + p.second, nullable};
                   }));
}

RC_GTEST_PROP(RegexPatternProperty, MatchesLikeStdRegex, ()) {
  const std::string regex = (*random_regex(3)).first;
  const Nfa nfa = regex_nfa(regex);
  const std::regex oracle(regex, std::regex::ECMAScript);
  for (int i = 0; i < 20; ++i) {
    const auto length = *rc::gen::inRange(0, 9);
    const std::string text = *rc::gen::container<std::string>(static_cast<std::size_t>(length),
                                                               rc::gen::element('a', 'b', 'c', '0', '1', '5', '.', 'x'));
    RC_ASSERT(nfa_accepts(nfa, text) == std::regex_match(text, oracle));
  }
}

RC_GTEST_PROP(JsonSchemaPatternProperty, IntegerBoundsAdmitExactlyTheRange, ()) {
  const auto lo = *rc::gen::inRange<std::int64_t>(-1200, 1200);
  const auto hi = lo + *rc::gen::inRange<std::int64_t>(0, 2500);
  const bool has_lo = *rc::gen::arbitrary<bool>(), has_hi = *rc::gen::arbitrary<bool>();
  std::string schema = R"({"type": "integer")";
  if (has_lo) schema += ", \"minimum\": " + std::to_string(lo);
  if (has_hi) schema += ", \"exclusiveMaximum\": " + std::to_string(hi + 1);
  const Nfa nfa = schema_nfa(schema + "}");
  for (std::int64_t v = lo - 30; v <= hi + 30; v += 1 + (hi - lo) / 200) {
    const bool in = (!has_lo || v >= lo) && (!has_hi || v <= hi);
    RC_ASSERT(nfa_accepts(nfa, std::to_string(v)) == in);
  }
  RC_ASSERT(!nfa_accepts(nfa, "-0") || (!has_lo && !has_hi));  // JSON's -0 is 0; bounded ranges write 0
  RC_ASSERT(!nfa_accepts(nfa, "007"));
}

TEST(JsonSchemaPattern, ObjectsListTheirPropertiesInOrderAndMayLeaveOutOptionalOnes) {
  const Nfa nfa = schema_nfa(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
      "c": {"type": "boolean"}}, "required": ["b"]})");
  for (const char* yes : {R"({"b": "x"})", R"({"a": 1, "b": ""})", R"({"b": "x", "c": true})",
                          R"({"a": -2,"b":"y","c":false})", "{\n  \"b\": \"q\"\n}"}) {
    EXPECT_TRUE(nfa_accepts(nfa, yes)) << yes;
  }
  for (const char* no : {R"({})", R"({"a": 1})", R"({"b": "x", "a": 1})", R"({"b": "x",})", R"({"b": "x", "d": 1})",
                         R"({"b": 3})", R"({,"b": "x"})"}) {
    EXPECT_FALSE(nfa_accepts(nfa, no)) << no;
  }
  const Nfa optional_only = schema_nfa(R"({"properties": {"a": {"type": "null"}, "b": {"type": "null"}}})");
  for (const char* yes : {"{}", R"({"a": null})", R"({"b": null})", R"({"a": null, "b": null})"}) {
    EXPECT_TRUE(nfa_accepts(optional_only, yes)) << yes;
  }
  EXPECT_FALSE(nfa_accepts(optional_only, R"({"b": null, "a": null})"));
}

TEST(JsonSchemaPattern, StringsArraysEnumsAndReferences) {
  const Nfa s = schema_nfa(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  EXPECT_TRUE(nfa_accepts(s, R"("ab")"));
  EXPECT_TRUE(nfa_accepts(s, R"("a\"é")"));  // an escape is one character
  EXPECT_FALSE(nfa_accepts(s, R"("a")"));
  EXPECT_FALSE(nfa_accepts(s, R"("abcd")"));
  const Nfa p = schema_nfa(R"({"type": "string", "pattern": "^[a-z]+\"?$"})");
  EXPECT_TRUE(nfa_accepts(p, R"("abc\"")"));
  EXPECT_FALSE(nfa_accepts(p, R"("abc"")"));
  const Nfa unanchored = schema_nfa(R"({"type": "string", "pattern": "42"})");
  EXPECT_TRUE(nfa_accepts(unanchored, R"("x42y")"));
  EXPECT_FALSE(nfa_accepts(unanchored, R"("x4y")"));
  const Nfa a = schema_nfa(R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2})");
  EXPECT_TRUE(nfa_accepts(a, "[1]"));
  EXPECT_TRUE(nfa_accepts(a, "[1, 2]"));
  EXPECT_FALSE(nfa_accepts(a, "[]"));
  EXPECT_FALSE(nfa_accepts(a, "[1, 2, 3]"));
  const Nfa t = schema_nfa(R"({"prefixItems": [{"type": "string"}, {"type": "null"}], "items": false})");
  EXPECT_TRUE(nfa_accepts(t, R"(["a", null])"));
  EXPECT_TRUE(nfa_accepts(t, R"(["a"])"));
  EXPECT_TRUE(nfa_accepts(t, "[]"));
  EXPECT_FALSE(nfa_accepts(t, R"([null])"));
  const Nfa e = schema_nfa(R"({"enum": ["red", 3, null, {"k": [1]}]})");
  for (const char* yes : {R"("red")", "3", "null", R"({"k":[1]})"}) EXPECT_TRUE(nfa_accepts(e, yes)) << yes;
  EXPECT_FALSE(nfa_accepts(e, R"("blue")"));
  const Nfa r = schema_nfa(R"({"$defs": {"p": {"type": "object", "properties": {"x": {"type": "number"}},
      "required": ["x"]}}, "type": "array", "items": {"$ref": "#/$defs/p"}})");
  EXPECT_TRUE(nfa_accepts(r, R"([{"x": 1.5e3}, {"x": -0.25}])"));
  EXPECT_FALSE(nfa_accepts(r, R"([{"x": 01}])"));
  const Nfa o = schema_nfa(R"({"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]})");
  EXPECT_TRUE(nfa_accepts(o, R"("2024-02-29")"));
  EXPECT_TRUE(nfa_accepts(o, "null"));
  EXPECT_FALSE(nfa_accepts(o, R"("2024-13-01")"));
  const Nfa map = schema_nfa(R"({"type": "object", "additionalProperties": {"type": "boolean"}})");
  EXPECT_TRUE(nfa_accepts(map, R"({"any": true, "other": false})"));
  EXPECT_FALSE(nfa_accepts(map, R"({"any": 1})"));
}

TEST(JsonSchemaPattern, JsonObjectModeIsAnyObject) {
  const Nfa nfa = nfa_of(json_object_pattern());
  for (const char* yes : {"{}", R"({"a": [1, {"b": null}], "c": "\u00e9\n"})", "{\n  \"x\": -1.5E+3\n}"}) {
    EXPECT_TRUE(nfa_accepts(nfa, yes)) << yes;
  }
  for (const char* no : {"[]", "\"s\"", R"({"a": })", R"({"a": 1,})", R"({'a': 1})", "{\"a\": 01}", " {}"}) {
    EXPECT_FALSE(nfa_accepts(nfa, no)) << no;
  }
  EXPECT_LT(nfa.states.size(), 200000u);
  std::cout << "json_object NFA states: " << nfa.states.size() << "\n";
}

TEST(JsonSchemaPattern, UnsupportedFeaturesNameTheKeywordAndWhere) {
  EXPECT_NE(schema_error(R"({"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}})")
                .find("'contentEncoding'"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"properties": {"a": {"oneOf": [{}, {}]}}})").find("$.properties.a"), std::string::npos);
  EXPECT_NE(schema_error(R"({"$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"})")
                .find("recursive"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "number", "minimum": 0.5})").find("integers only"), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "string", "format": "hostname"})").find("hostname"), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "array", "uniqueItems": true})").find("uniqueItems"), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "string", "pattern": "(a)\\1"})").find("backreference"), std::string::npos);
  EXPECT_NE(schema_error("false").find("false"), std::string::npos);
  // Strict mode is OpenAI's: every object closed, every property required.
  EXPECT_NE(schema_error(R"({"type": "object", "properties": {"a": {"type": "string"}}})", true).find("additionalProperties"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false})", true)
                .find("required"),
            std::string::npos);
  EXPECT_EQ(schema_error(R"({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
      "additionalProperties": false, "title": "T", "description": "d"})", true),
            "<ok>");
}

TEST(JsonSchemaPattern, ChoicesAndToolCalls) {
  const Nfa c = nfa_of(std::get<PatternRef>(choice_pattern(R"(["yes", "no", "né"])")));
  EXPECT_TRUE(nfa_accepts(c, "yes"));
  EXPECT_TRUE(nfa_accepts(c, "né"));
  EXPECT_FALSE(nfa_accepts(c, "ye"));
  const std::vector<ToolDefinition> tools = {
      {"get_weather", "", R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})", ""},
      {"noop", "", "", ""}};
  const auto spec = tool_call_grammar(hermes_tool_call_format(), tools, {ToolChoice::Mode::kRequired, ""}, true);
  ASSERT_TRUE(spec.has_value());
  const Nfa t = nfa_of(std::get<PatternRef>(tool_calls_pattern(spec->source)));
  const std::string call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  EXPECT_TRUE(nfa_accepts(t, call));
  EXPECT_TRUE(nfa_accepts(t, call + "\n<tool_call>\n{\"name\": \"noop\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(nfa_accepts(t, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(nfa_accepts(t, "Sure! " + call));
  const auto named = tool_call_grammar(hermes_tool_call_format(), tools, {ToolChoice::Mode::kNamed, "noop"}, false);
  const Nfa n = nfa_of(std::get<PatternRef>(tool_calls_pattern(named->source)));
  EXPECT_FALSE(nfa_accepts(n, call));
  EXPECT_TRUE(nfa_accepts(n, "<tool_call>\n{\"name\": \"noop\", \"arguments\": {\"x\": 1}}\n</tool_call>"));
  EXPECT_FALSE(tool_call_grammar(hermes_tool_call_format(), tools, {ToolChoice::Mode::kAuto, ""}, true));
}

// ---- the grammar over the real vocabulary ----

std::shared_ptr<const Grammar> grammar_for(const Model& model, GrammarSpec spec) {
  auto g = Grammar::compile(spec, std::make_shared<const TokenTrie>(model.tokenizer()));
  EXPECT_TRUE(std::holds_alternative<std::shared_ptr<const Grammar>>(g));
  return std::get<std::shared_ptr<const Grammar>>(g);
}

TEST(Grammar, MasksAllowExactlyTheTokensThatContinueAMatch) {
  TG_REQUIRE_MODEL(model);
  const auto g = grammar_for(*model, {GrammarSpec::Kind::kJsonSchema,
                                      R"({"type":"object","properties":{"n":{"type":"integer"},"s":{"enum":["ab","cd"]}},"required":["s"]})",
                                      false, "response_format"});
  const Tokenizer& tok = model->tokenizer();
  // Walk one valid output token by token; at each state the mask equals brute-force stepping.
  const std::vector<TokenId> path = tok.encode(R"({"n": 12, "s": "cd"})", false);
  Grammar::State s = g->start();
  for (std::size_t i = 0; i <= path.size(); ++i) {
    const std::vector<std::uint32_t>& mask = g->mask(s);
    for (std::size_t t = 0; t < tok.vocab_size(); ++t) {
      const auto id = static_cast<TokenId>(t);
      const bool continues = g->next(s, id) != Grammar::kDead;
      ASSERT_EQ(kernels::mask_allows(mask.data(), id), continues) << "step " << i << " token " << t;
    }
    if (i == path.size()) break;
    s = g->next(s, path[i]);
    ASSERT_GE(s, 0) << i;
  }
  EXPECT_TRUE(g->accepting(s));
  EXPECT_TRUE(g->complete(s));  // nothing may follow the closing brace
  EXPECT_EQ(g->next(s, tok.eos()), Grammar::kEnded);
  EXPECT_EQ(g->next(g->start(), tok.eos()), Grammar::kDead);
}

TEST(Grammar, TheCacheCompilesEachSpecOnceAndReportsErrors) {
  TG_REQUIRE_MODEL(model);
  GrammarCache cache(2);
  const GrammarSpec a{GrammarSpec::Kind::kRegex, "[ab]+", false, "guided_regex"};
  const auto first = std::get<std::shared_ptr<const Grammar>>(cache.get(a, model->tokenizer()));
  EXPECT_EQ(std::get<std::shared_ptr<const Grammar>>(cache.get(a, model->tokenizer())), first);
  cache.get({GrammarSpec::Kind::kRegex, "c", false, ""}, model->tokenizer());
  cache.get({GrammarSpec::Kind::kRegex, "d", false, ""}, model->tokenizer());
  EXPECT_EQ(cache.size(), 2u);
  auto bad = cache.get({GrammarSpec::Kind::kJsonSchema, R"({"type": "object", "minProperties": 1})", false, ""},
                       model->tokenizer());
  ASSERT_TRUE(std::holds_alternative<GrammarError>(bad));
  EXPECT_NE(std::get<GrammarError>(bad).message.find("minProperties"), std::string::npos);
}

}  // namespace
}  // namespace tiergate::engine
