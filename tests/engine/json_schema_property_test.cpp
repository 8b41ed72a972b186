// Constrained decoding's promise, as a property: for random schemas of the supported subset, every
// output the grammar lets through the real vocabulary's token masks parses as JSON and validates
// against its schema. Outputs are random walks over the allowed tokens (steered to finish, as a
// model stops); validation is an independent, plain reading of the schema keywords
// (SchemaValidator below), not the grammar's own construction.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <simdjson.h>

#include <climits>
#include <cmath>
#include <map>
#include <random>
#include <regex>

#include "engine/grammar.h"
#include "engine/json_schema_pattern.h"
#include "engine/unicode.h"
#include "kernels/sampling.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

using simdjson::dom::element;

// ---- an independent validator for the subset ----

class SchemaValidator {
 public:
  explicit SchemaValidator(element root) : root_(root) {}

  bool valid(element v, element s) const {
    if (s.is_bool()) return s.get_bool().value_unsafe();
    simdjson::dom::object schema = s.get_object().value();
    std::string_view ref;
    if (schema["$ref"].get_string().get(ref) == simdjson::SUCCESS) {
      return valid(v, root_.at_pointer(std::string(ref.substr(1))).value());
    }
    bool nullable = false;
    if (schema["nullable"].get_bool().get(nullable) == simdjson::SUCCESS && nullable && v.is_null()) return true;
    element e;
    if (schema["const"].get(e) == simdjson::SUCCESS && !same(v, e)) return false;
    if (schema["enum"].get(e) == simdjson::SUCCESS) {
      bool found = false;
      const simdjson::dom::array list = e.get_array().value();
      for (element x : list) found |= same(v, x);
      if (!found) return false;
    }
    if (schema["anyOf"].get(e) == simdjson::SUCCESS) {
      bool any = false;
      const simdjson::dom::array list = e.get_array().value();
      for (element x : list) any |= valid(v, x);
      if (!any) return false;
    }
    if (schema["allOf"].get(e) == simdjson::SUCCESS) {
      const simdjson::dom::array list = e.get_array().value();
      for (element x : list) {
        if (!valid(v, x)) return false;
      }
    }
    if (schema["type"].get(e) == simdjson::SUCCESS) {
      bool any = false;
      if (e.is_string()) {
        any = is_type(v, e.get_string().value());
      } else {
        const simdjson::dom::array list = e.get_array().value();
        for (element t : list) any |= is_type(v, t.get_string().value());
      }
      if (!any) return false;
    }
    if (v.is_string()) return valid_string(v.get_string().value(), schema);
    if (v.is_int64() || v.is_uint64() || v.is_double()) return valid_number(v, schema);
    if (v.is_array()) return valid_array(v.get_array().value(), schema);
    if (v.is_object()) return valid_object(v.get_object().value(), schema);
    return true;
  }

 private:
  static bool same(element a, element b) { return simdjson::minify(a) == simdjson::minify(b); }
  static double num(element v) {
    return v.is_int64() ? static_cast<double>(v.get_int64().value_unsafe())
           : v.is_uint64() ? static_cast<double>(v.get_uint64().value_unsafe())
                           : v.get_double().value_unsafe();
  }
  static bool is_type(element v, std::string_view t) {
    if (t == "null") return v.is_null();
    if (t == "boolean") return v.is_bool();
    if (t == "string") return v.is_string();
    if (t == "array") return v.is_array();
    if (t == "object") return v.is_object();
    const bool numeric = v.is_int64() || v.is_uint64() || v.is_double();
    if (t == "number") return numeric;
    if (t == "integer") return numeric && std::floor(num(v)) == num(v);
    return false;
  }
  static std::optional<double> number_of(simdjson::dom::object s, const char* key) {
    element e;
    if (s[key].get(e) != simdjson::SUCCESS) return std::nullopt;
    return num(e);
  }
  static bool valid_string(std::string_view text, simdjson::dom::object s) {
    double chars = 0;
    for (std::size_t i = 0; i < text.size(); i += decode_utf8(text, i).length) ++chars;
    if (auto m = number_of(s, "minLength"); m && chars < *m) return false;
    if (auto m = number_of(s, "maxLength"); m && chars > *m) return false;
    std::string_view pattern;
    if (s["pattern"].get_string().get(pattern) == simdjson::SUCCESS &&
        !std::regex_search(std::string(text), std::regex(std::string(pattern)))) {
      return false;
    }
    std::string_view format;
    if (s["format"].get_string().get(format) == simdjson::SUCCESS) {
      if (format == "date" && !std::regex_match(std::string(text), std::regex("\\d{4}-(0[1-9]|1[012])-(0[1-9]|[12]\\d|3[01])"))) {
        return false;
      }
      if (format == "uuid" && !std::regex_match(std::string(text), std::regex("[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"))) {
        return false;
      }
    }
    return true;
  }
  static bool valid_number(element v, simdjson::dom::object s) {
    const double x = num(v);
    if (auto m = number_of(s, "minimum"); m && x < *m) return false;
    if (auto m = number_of(s, "maximum"); m && x > *m) return false;
    if (auto m = number_of(s, "exclusiveMinimum"); m && x <= *m) return false;
    if (auto m = number_of(s, "exclusiveMaximum"); m && x >= *m) return false;
    return true;
  }
  bool valid_array(simdjson::dom::array a, simdjson::dom::object s) const {
    const auto n = static_cast<double>(a.size());
    if (auto m = number_of(s, "minItems"); m && n < *m) return false;
    if (auto m = number_of(s, "maxItems"); m && n > *m) return false;
    std::size_t i = 0;
    element prefix, items;
    simdjson::dom::array tuple;
    const bool has_prefix = s["prefixItems"].get(prefix) == simdjson::SUCCESS && prefix.get_array().get(tuple) == simdjson::SUCCESS;
    const bool has_items = s["items"].get(items) == simdjson::SUCCESS;
    for (element x : a) {
      if (has_prefix && i < tuple.size()) {
        if (!valid(x, tuple.at(i).value())) return false;
      } else if (has_items && !valid(x, items)) {
        return false;
      }
      ++i;
    }
    return true;
  }
  bool valid_object(simdjson::dom::object o, simdjson::dom::object s) const {
    element props, required, additional;
    const bool has_props = s["properties"].get(props) == simdjson::SUCCESS;
    if (s["required"].get(required) == simdjson::SUCCESS) {
      const simdjson::dom::array list = required.get_array().value();
      for (element r : list) {
        element x;
        if (o[r.get_string().value()].get(x) != simdjson::SUCCESS) return false;
      }
    }
    const bool has_additional = s["additionalProperties"].get(additional) == simdjson::SUCCESS;
    for (auto m : o) {
      element p;
      if (has_props && props[m.key].get(p) == simdjson::SUCCESS) {
        if (!valid(m.value, p)) return false;
      } else if (has_additional && !valid(m.value, additional)) {
        return false;
      }
    }
    return true;
  }
  element root_;
};

// ---- random schemas of the supported subset ----

rc::Gen<std::string> scalar_schema() {
  return rc::gen::oneOf(
      rc::gen::element<std::string>(
          R"({"type": "string"})", R"({"type": "string", "maxLength": 4})", R"({"type": "string", "minLength": 2, "maxLength": 6})",
          R"({"type": "string", "pattern": "^[a-z]{1,5}$"})", R"({"type": "string", "pattern": "^(yes|no)$"})",
          R"({"type": "string", "pattern": "[0-9]"})", R"({"type": "string", "format": "date"})",
          R"({"type": "string", "format": "uuid"})", R"({"type": "integer"})", R"({"type": "number"})",
          R"({"type": "boolean"})", R"({"type": "null"})", R"({"type": ["string", "null"]})",
          R"({"enum": ["red", "green", 3, null]})", R"({"const": {"v": [1, true]}})", R"({"type": "integer", "minimum": 0})",
          R"({"description": "anything", "title": "x"})", R"({"type": "integer", "nullable": true})"),
      rc::gen::map(rc::gen::pair(rc::gen::inRange(-300, 300), rc::gen::inRange(0, 700)), [](const auto& p) {
        return "{\"type\": \"integer\", \"minimum\": " + std::to_string(p.first) + ", \"maximum\": " +
               std::to_string(p.first + p.second) + "}";
      }));
}

rc::Gen<std::string> random_schema(int depth) {
  if (depth == 0) return scalar_schema();
  const auto names = rc::gen::element<std::string>("a", "b", "name", "b c", "q\"uote", "é", "key_2", "x");
  const auto object = rc::gen::map(
      rc::gen::tuple(rc::gen::container<std::vector<std::pair<std::string, std::string>>>(
                         rc::gen::pair(names, random_schema(depth - 1))),
                     rc::gen::arbitrary<std::uint32_t>(), rc::gen::arbitrary<bool>()),
      [](const auto& t) {
        const auto& [props, bits, closed] = t;
        std::string properties, required;
        std::set<std::string> seen;
        std::size_t i = 0;
        for (const auto& [name, schema] : props) {
          if (!seen.insert(name).second || seen.size() > 5) continue;
          properties += (properties.empty() ? "" : ", ") + json_quote(name) + ": " + schema;
          if ((bits >> (i++ % 32)) & 1u) required += (required.empty() ? "" : ", ") + json_quote(name);
        }
        return "{\"type\": \"object\", \"properties\": {" + properties + "}, \"required\": [" + required + "]" +
               (closed ? ", \"additionalProperties\": false" : "") + "}";
      });
  const auto array = rc::gen::map(rc::gen::tuple(random_schema(depth - 1), rc::gen::inRange(0, 3), rc::gen::inRange(0, 3)),
                                  [](const auto& t) {
                                    const auto& [items, lo, extra] = t;
                                    return "{\"type\": \"array\", \"items\": " + items + ", \"minItems\": " +
                                           std::to_string(lo) + ", \"maxItems\": " + std::to_string(lo + extra) + "}";
                                  });
  const auto any_of = rc::gen::map(rc::gen::pair(random_schema(depth - 1), random_schema(depth - 1)), [](const auto& p) {
    return "{\"anyOf\": [" + p.first + ", " + p.second + "]}";
  });
  const auto map = rc::gen::map(random_schema(depth - 1), [](const std::string& s) {
    return "{\"type\": \"object\", \"additionalProperties\": " + s + "}";
  });
  return rc::gen::weightedOneOf<std::string>(
      {{3, object}, {2, array}, {1, any_of}, {1, map}, {2, scalar_schema()}});
}

// A schema, at the top level sometimes reached through a $ref (references are to the document's
// root, so $defs live there).
rc::Gen<std::string> top_schema() {
  return rc::gen::oneOf(random_schema(2), rc::gen::map(random_schema(1), [](const std::string& s) {
    return "{\"$defs\": {\"item\": " + s + "}, \"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/item\"}, \"maxItems\": 2}";
  }));
}

// ---- walking the masks ----

struct Walk {
  std::string text;
  bool finished = false;
};

// The tokens of one byte each (for walking the DFA byte by byte).
std::vector<TokenId> single_byte_tokens(const TokenTrie& trie) {
  std::vector<TokenId> out;
  const TokenTrie::Node& root = trie.nodes()[TokenTrie::kRoot];
  for (std::int32_t e = root.first_edge; e < root.first_edge + root.edges; ++e) {
    const TokenTrie::Node& child = trie.nodes()[static_cast<std::size_t>(trie.edge_node(e))];
    if (child.tokens > 0) out.push_back(trie.token(child.first_token));
  }
  return out;
}

// Bytes from `s` to the nearest accepting state (breadth first over one-byte tokens), memoised.
std::size_t distance(const Grammar& g, const std::vector<TokenId>& bytes, Grammar::State s,
                     std::map<Grammar::State, std::size_t>& memo) {
  if (auto it = memo.find(s); it != memo.end()) return it->second;
  std::map<Grammar::State, std::size_t> seen{{s, 0}};
  std::vector<Grammar::State> frontier{s};
  std::size_t found = SIZE_MAX;
  for (std::size_t d = 0; found == SIZE_MAX && !frontier.empty() && seen.size() < 20000; ++d) {
    std::vector<Grammar::State> next;
    for (Grammar::State x : frontier) {
      if (g.accepting(x)) {
        found = d;
        break;
      }
      for (TokenId t : bytes) {
        const Grammar::State y = g.next(x, t);
        if (y >= 0 && seen.emplace(y, d + 1).second) next.push_back(y);
      }
    }
    frontier = std::move(next);
  }
  memo[s] = found;
  return found;
}

// Random allowed tokens; past `closing_after` steps it heads for the end as a model that wants to
// stop does: an end token where allowed, else a one-byte token one byte nearer to acceptance.
Walk walk(const Grammar& g, const Tokenizer& tok, std::uint32_t seed, std::size_t closing_after) {
  const std::vector<TokenId> bytes = single_byte_tokens(g.vocabulary());
  std::map<Grammar::State, std::size_t> memo;
  std::mt19937 rng(seed);
  Walk w;
  Grammar::State s = g.start();
  const auto vocab = static_cast<TokenId>(tok.vocab_size());
  for (std::size_t step = 0; step < 2000; ++step) {
    const std::vector<std::uint32_t>& mask = g.mask(s);
    std::optional<TokenId> pick;
    if (step >= closing_after) {
      for (TokenId t : g.vocabulary().end_tokens()) {
        if (!pick && kernels::mask_allows(mask.data(), t)) pick = t;
      }
      const std::size_t here = distance(g, bytes, s, memo);
      for (TokenId t : bytes) {
        if (pick || !kernels::mask_allows(mask.data(), t)) continue;
        const Grammar::State next = g.next(s, t);
        if (next >= 0 && distance(g, bytes, next, memo) + 1 == here) pick = t;
      }
    }
    for (int tries = 0; !pick && tries < 64; ++tries) {
      const auto t = static_cast<TokenId>(rng() % static_cast<std::uint32_t>(vocab));
      if (kernels::mask_allows(mask.data(), t) && !g.vocabulary().is_end(t)) pick = t;
    }
    if (!pick) {  // a sparse mask: choose among its tokens
      std::vector<TokenId> allowed;
      for (TokenId t = 0; t < vocab; ++t) {
        if (kernels::mask_allows(mask.data(), t)) allowed.push_back(t);
      }
      RC_ASSERT(!allowed.empty());
      pick = allowed[rng() % allowed.size()];
    }
    const Grammar::State next = g.next(s, *pick);
    if (next == Grammar::kEnded) {
      w.finished = true;
      return w;
    }
    RC_ASSERT(next >= 0);  // every allowed token continues the match
    w.text += g.vocabulary().bytes(*pick);
    s = next;
    if (g.complete(s)) {
      w.finished = true;
      return w;
    }
  }
  return w;
}

RC_GTEST_PROP(ConstrainedDecodingProperty, EveryOutputParsesAndValidates, ()) {
  const Model* model = testing::shared_model();
  if (!model) {
    RC_ASSERT(!testing::model_required());
    RC_DISCARD("no model");
  }
  static GrammarCache cache;
  const std::string schema = *top_schema();
  RC_TAG(schema.size() < 60 ? "small schema" : "large schema");
  auto compiled = cache.get({GrammarSpec::Kind::kJsonSchema, schema, false, "response_format"}, model->tokenizer());
  if (auto* e = std::get_if<GrammarError>(&compiled)) RC_FAIL(e->message);
  const auto& g = *std::get<std::shared_ptr<const Grammar>>(compiled);
  simdjson::dom::parser schema_parser;
  const element schema_root = schema_parser.parse(simdjson::padded_string(schema)).value();
  const SchemaValidator validator(schema_root);
  const Walk w = walk(g, model->tokenizer(), *rc::gen::arbitrary<std::uint32_t>(), *rc::gen::inRange<std::size_t>(0, 40));
  RC_LOG() << "output: " << w.text << "\n";
  RC_ASSERT(w.finished);
  simdjson::dom::parser parser;
  element value;
  RC_ASSERT(parser.parse(simdjson::padded_string(w.text)).get(value) == simdjson::SUCCESS);
  RC_ASSERT(validator.valid(value, schema_root));
}

// json_object mode: any output is a JSON object.
RC_GTEST_PROP(ConstrainedDecodingProperty, JsonObjectModeOutputsAnObject, ()) {
  const Model* model = testing::shared_model();
  if (!model) {
    RC_ASSERT(!testing::model_required());
    RC_DISCARD("no model");
  }
  static GrammarCache cache;
  auto compiled = cache.get({GrammarSpec::Kind::kJsonValue, "", false, "response_format"}, model->tokenizer());
  const auto& g = *std::get<std::shared_ptr<const Grammar>>(compiled);
  const Walk w = walk(g, model->tokenizer(), *rc::gen::arbitrary<std::uint32_t>(), *rc::gen::inRange<std::size_t>(0, 60));
  RC_LOG() << "output: " << w.text << "\n";
  RC_ASSERT(w.finished);
  simdjson::dom::parser parser;
  element value;
  RC_ASSERT(parser.parse(simdjson::padded_string(w.text)).get(value) == simdjson::SUCCESS);
  RC_ASSERT(value.is_object());
}

}  // namespace
}  // namespace tiergate::engine
