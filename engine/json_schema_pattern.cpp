#include "engine/json_schema_pattern.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "engine/regex_pattern.h"

namespace tiergate::engine {
namespace {

namespace pt = pattern;
using simdjson::dom::element;
using simdjson::dom::element_type;

// ---- JSON lexical pieces ----

PatternRef ws() {
  static const PatternRef p = [] {
    std::bitset<256> indent;
    indent.set(' ');
    indent.set('\t');
    return pt::optional(pt::alt({pt::literal(" "), pt::seq({pt::literal("\n"), pt::repeat(pt::byte_set(indent), 0, 16)})}));
  }();
  return p;
}

PatternRef lit(std::string_view s) { return pt::literal(s); }

PatternRef digit() {
  static const PatternRef p = pt::byte_range('0', '9');
  return p;
}

// One character of a JSON string: any scalar value but '"', '\' and controls, or an escape.
PatternRef string_char() {
  static const PatternRef p = [] {
    const PatternRef hex = pt::alt({pt::byte_range('0', '9'), pt::byte_range('a', 'f'), pt::byte_range('A', 'F')});
    std::bitset<256> simple;
    for (char c : std::string_view("\"\\/bfnrt")) simple.set(static_cast<unsigned char>(c));
    return pt::alt({pt::utf8_class({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}}),
                    pt::seq({lit("\\"), pt::alt({pt::byte_set(simple), pt::seq({lit("u"), pt::repeat(hex, 4, 4)})})})});
  }();
  return p;
}

PatternRef string_of(PatternRef content) { return pt::seq({lit("\""), std::move(content), lit("\"")}); }

PatternRef any_string() {
  static const PatternRef p = string_of(pt::repeat(string_char(), 0, -1));
  return p;
}

// Integers fit 64 bits (18 digits) and exponents two digits, so that every number parses as a
// number everywhere (a 30-digit integer or 4e+51241947 is JSON, but not a number most parsers give back).
PatternRef integer() {
  static const PatternRef p = pt::seq({pt::optional(lit("-")),
                                       pt::alt({lit("0"), pt::seq({pt::byte_range('1', '9'), pt::repeat(digit(), 0, 17)})})});
  return p;
}

PatternRef number() {
  static const PatternRef p = pt::seq(
      {integer(), pt::optional(pt::seq({lit("."), pt::repeat(digit(), 1, -1)})),
       pt::optional(pt::seq({pt::alt({lit("e"), lit("E")}), pt::optional(pt::alt({lit("+"), lit("-")})), pt::repeat(digit(), 1, 2)}))});
  return p;
}

PatternRef scalar() {
  static const PatternRef p = pt::alt({any_string(), number(), lit("true"), lit("false"), lit("null")});
  return p;
}

PatternRef comma() {
  static const PatternRef p = pt::seq({ws(), lit(","), ws()});
  return p;
}

PatternRef object_of(PatternRef members) {
  return pt::seq({lit("{"), ws(), pt::optional(pt::seq({std::move(members), ws()})), lit("}")});
}
PatternRef array_of(PatternRef items) {
  return pt::seq({lit("["), ws(), pt::optional(pt::seq({std::move(items), ws()})), lit("]")});
}

PatternRef any_value(int depth);

PatternRef any_object(int depth) {
  const PatternRef member = pt::seq({any_string(), ws(), lit(":"), ws(), any_value(depth - 1)});
  return object_of(pt::list(member, comma(), 1, -1));
}

// Any JSON value with objects and arrays nested at most `depth` deep (memoised: each depth is
// one shared node, expanded where compiled).
PatternRef any_value(int depth) {
  // Built once, every depth at the first call (a static initialiser, so compiles on several
  // threads share it safely).
  static const std::vector<PatternRef> by_depth = [] {
    std::vector<PatternRef> v{scalar()};
    for (int d = 1; d <= kMaxJsonDepth + 1; ++d) {
      const PatternRef inner = v.back();
      const PatternRef member = pt::seq({any_string(), ws(), lit(":"), ws(), inner});
      v.push_back(pt::alt({object_of(pt::list(member, comma(), 1, -1)), array_of(pt::list(inner, comma(), 1, -1)), scalar()}));
    }
    return v;
  }();
  return by_depth[static_cast<std::size_t>(std::clamp(depth, 0, kMaxJsonDepth + 1))];
}

// A value a schema leaves free (`{}`, `true`, an object with no properties) nests at most this
// deep inside it: each level doubles its automaton (objects and arrays both hold any value).
constexpr int kMaxFreeDepth = 3;
PatternRef free_value(int depth) { return any_value(std::min(depth, kMaxFreeDepth)); }

// ---- integer ranges as digit patterns ----

constexpr std::int64_t kIntegerCap = 9999999999999999;  // 16 digits

bool all_of(const std::string& s, char c) { return std::all_of(s.begin(), s.end(), [c](char x) { return x == c; }); }

// The decimal strings of one length from a to b (a <= b).
PatternRef same_length(const std::string& a, const std::string& b) {
  if (a.empty()) return pt::empty();
  if (a == b) return lit(a);
  const auto d = [](char c) { return static_cast<unsigned char>(c); };
  const std::size_t rest = a.size() - 1;
  const std::string ar = a.substr(1), br = b.substr(1);
  if (a[0] == b[0]) return pt::seq({lit(a.substr(0, 1)), same_length(ar, br)});
  if (all_of(ar, '0') && all_of(br, '9')) {
    return pt::seq({pt::byte_range(d(a[0]), d(b[0])), pt::repeat(digit(), static_cast<int>(rest), static_cast<int>(rest))});
  }
  std::vector<PatternRef> alts{pt::seq({lit(a.substr(0, 1)), same_length(ar, std::string(rest, '9'))})};
  if (b[0] - a[0] >= 2) {
    alts.push_back(pt::seq({pt::byte_range(static_cast<unsigned char>(a[0] + 1), static_cast<unsigned char>(b[0] - 1)),
                            pt::repeat(digit(), static_cast<int>(rest), static_cast<int>(rest))}));
  }
  alts.push_back(pt::seq({lit(b.substr(0, 1)), same_length(std::string(rest, '0'), br)}));
  return pt::alt(std::move(alts));
}

// Non-negative integers lo..hi without leading zeros.
PatternRef nonnegative_range(std::int64_t lo, std::int64_t hi) {
  std::vector<PatternRef> alts;
  const std::string los = std::to_string(lo), his = std::to_string(hi);
  for (std::size_t len = los.size(); len <= his.size(); ++len) {
    const std::string a = len == los.size() ? los : "1" + std::string(len - 1, '0');
    const std::string b = len == his.size() ? his : std::string(len, '9');
    alts.push_back(same_length(a, b));
  }
  return pt::alt(std::move(alts));
}

PatternRef integer_range(std::int64_t lo, std::int64_t hi) {
  std::vector<PatternRef> alts;
  if (lo < 0) {  // -(|hi|..|lo|) for the negative part
    alts.push_back(pt::seq({lit("-"), nonnegative_range(std::max<std::int64_t>(1, hi < 0 ? -hi : 1), -lo)}));
  }
  if (hi >= 0) alts.push_back(nonnegative_range(std::max<std::int64_t>(lo, 0), hi));
  return pt::alt(std::move(alts));
}

// ---- formats ----

PatternRef from_regex(std::string_view regex) {
  auto r = regex_pattern(regex);
  return std::get<PatternRef>(r);  // our own expressions: always valid
}

std::optional<PatternRef> format_pattern(std::string_view format) {
  static const std::string date = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])";
  static const std::string time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
  static const std::string octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  if (format == "date") return from_regex(date);
  if (format == "time") return from_regex(time);
  if (format == "date-time") return from_regex(date + "T" + time);
  if (format == "uuid") return from_regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  if (format == "ipv4") return from_regex(octet + "\\." + octet + "\\." + octet + "\\." + octet);
  if (format == "email") return from_regex("[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9-]{1,63}(\\.[a-zA-Z0-9-]{1,63}){1,4}");
  return std::nullopt;
}

// ---- schemas ----

const std::set<std::string_view>& annotations() {
  static const std::set<std::string_view> keys = {"title", "description", "default", "examples", "$schema", "$id",
                                                 "$comment", "deprecated", "readOnly", "writeOnly", "discriminator",
                                                 "$defs", "definitions"};
  return keys;
}

std::string nodes_past_limit(const GrammarLimits& limits) {
  return "the pattern passes the limit of " + std::to_string(limits.max_pattern_nodes) + " nodes";
}

class SchemaCompiler {
 public:
  SchemaCompiler(element root, bool strict, const GrammarLimits& limits) : root_(root), strict_(strict), limits_(limits) {}

  // `depth`: how deep free values may still nest (kMaxJsonDepth at the top); `level_` counts the
  // schema levels this call is inside, for the nesting limit.
  PatternRef compile(element schema, const std::string& path, int depth) {
    if (error_) return pt::empty();
    if (level_ >= limits_.max_nesting) {
      return fail(path, "the schema nests past the limit of " + std::to_string(limits_.max_nesting) + " levels");
    }
    if (nodes_.made() > limits_.max_pattern_nodes) return fail(path, nodes_past_limit(limits_));
    ++level_;
    PatternRef p = compile_level(schema, path, depth);
    --level_;
    return p;
  }

  std::optional<SchemaError> error() const { return error_; }

 private:
  PatternRef compile_level(element schema, const std::string& path, int depth) {
    if (schema.is_bool()) {
      if (schema.get_bool().value_unsafe()) return free_value(depth);
      return fail(path, "the schema `false` admits no value");
    }
    simdjson::dom::object obj;
    if (schema.get_object().get(obj) != simdjson::SUCCESS) return fail(path, "a schema must be an object or a boolean");
    std::set<std::string_view> keys;
    for (auto m : obj) keys.insert(m.key);
    for (std::string_view k : keys) {
      if (annotations().count(k)) continue;
      static const std::set<std::string_view> known = {
          "type", "enum", "const", "anyOf", "allOf", "$ref", "nullable", "properties", "required",
          "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength",
          "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
      if (!known.count(k)) return fail(path, "the keyword '" + std::string(k) + "' is not supported");
    }
    bool nullable = false;
    if (element n; obj["nullable"].get(n) == simdjson::SUCCESS) nullable = n.is_bool() && n.get_bool().value_unsafe();
    PatternRef p = compile_constraints(obj, keys, path, depth);
    return nullable ? pt::alt({p, lit("null")}) : p;
  }

  PatternRef fail(const std::string& path, std::string what) {
    if (!error_) error_ = SchemaError{"unsupported JSON schema at " + path + ": " + what};
    return pt::empty();
  }

  // Keywords other than annotations and those in `allowed`.
  bool only(const std::set<std::string_view>& keys, std::initializer_list<std::string_view> allowed) {
    for (std::string_view k : keys) {
      if (k == "nullable" || annotations().count(k)) continue;
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) return false;
    }
    return true;
  }

  PatternRef compile_constraints(simdjson::dom::object obj, const std::set<std::string_view>& keys,
                                 const std::string& path, int depth) {
    if (keys.count("$ref")) {
      if (!only(keys, {"$ref"})) return fail(path, "'$ref' beside other constraints is not supported");
      std::string_view ref;
      if (obj["$ref"].get_string().get(ref) != simdjson::SUCCESS) return fail(path + ".$ref", "must be a string");
      return reference(std::string(ref), path, depth);
    }
    if (keys.count("const") || keys.count("enum")) {
      if (!only(keys, {"const", "enum", "type"})) return fail(path, "'enum'/'const' beside other constraints is not supported");
      std::vector<PatternRef> values;
      if (element c; obj["const"].get(c) == simdjson::SUCCESS) values.push_back(lit(simdjson::minify(c)));
      if (element e; obj["enum"].get(e) == simdjson::SUCCESS) {
        simdjson::dom::array list;
        if (e.get_array().get(list) != simdjson::SUCCESS || list.size() == 0) {
          return fail(path + ".enum", "must be a non-empty list");
        }
        if (values.empty()) {
          for (element v : list) values.push_back(lit(simdjson::minify(v)));
        }
      }
      if (nodes_.made() > limits_.max_pattern_nodes) return fail(path, nodes_past_limit(limits_));
      return pt::alt(std::move(values));  // `type` beside them adds nothing the values do not fix
    }
    if (keys.count("anyOf")) {
      if (!only(keys, {"anyOf"})) return fail(path, "'anyOf' beside other constraints is not supported");
      simdjson::dom::array list;
      if (obj["anyOf"].get_array().get(list) != simdjson::SUCCESS || list.size() == 0) {
        return fail(path + ".anyOf", "must be a non-empty list of schemas");
      }
      std::vector<PatternRef> branches;
      std::size_t i = 0;
      for (element b : list) branches.push_back(compile(b, path + ".anyOf[" + std::to_string(i++) + "]", depth));
      return pt::alt(std::move(branches));
    }
    if (keys.count("allOf")) {
      simdjson::dom::array list;
      if (!only(keys, {"allOf"}) || obj["allOf"].get_array().get(list) != simdjson::SUCCESS || list.size() != 1) {
        return fail(path, "'allOf' is supported with one schema and nothing beside it");
      }
      return compile(list.at(0).value(), path + ".allOf[0]", depth);
    }
    std::vector<std::string> types;
    if (element t; obj["type"].get(t) == simdjson::SUCCESS) {
      std::string_view one;
      simdjson::dom::array list;
      if (t.get_string().get(one) == simdjson::SUCCESS) {
        types.emplace_back(one);
      } else if (t.get_array().get(list) == simdjson::SUCCESS && list.size() > 0) {
        for (element x : list) {
          if (x.get_string().get(one) != simdjson::SUCCESS) return fail(path + ".type", "must hold type names");
          types.emplace_back(one);
        }
      } else {
        return fail(path + ".type", "must be a type name or a list of them");
      }
    } else if (keys.count("properties") || keys.count("additionalProperties") || keys.count("required")) {
      types.emplace_back("object");
    } else if (keys.count("items") || keys.count("prefixItems")) {
      types.emplace_back("array");
    } else if (keys.count("pattern") || keys.count("format") || keys.count("minLength") || keys.count("maxLength")) {
      types.emplace_back("string");
    } else if (keys.count("minimum") || keys.count("maximum") || keys.count("exclusiveMinimum") ||
               keys.count("exclusiveMaximum")) {
      types.emplace_back("number");
    } else {
      return free_value(depth);
    }
    std::vector<PatternRef> alts;
    for (const std::string& type : types) alts.push_back(typed(obj, keys, type, path, depth));
    return pt::alt(std::move(alts));
  }

  PatternRef reference(const std::string& ref, const std::string& path, int depth) {
    if (ref.empty() || ref[0] != '#') return fail(path + ".$ref", "only references inside the schema (#/...) are supported");
    if (std::find(refs_.begin(), refs_.end(), ref) != refs_.end()) {
      return fail(path + ".$ref", "'" + ref + "' refers to itself: recursive schemas are not supported");
    }
    element target;
    if (root_.at_pointer(ref.substr(1)).get(target) != simdjson::SUCCESS) {
      return fail(path + ".$ref", "'" + ref + "' points at nothing");
    }
    // Below depth 0 a free value is a scalar at any depth, so those depths share one entry.
    const auto key = std::make_pair(ref, std::max(depth, -1));
    if (auto it = compiled_refs_.find(key); it != compiled_refs_.end()) return it->second;
    refs_.push_back(ref);
    PatternRef p = compile(target, ref, depth);
    refs_.pop_back();
    compiled_refs_.emplace(key, p);
    return p;
  }

  std::optional<double> number_of(simdjson::dom::object obj, const char* key, const std::string& path) {
    element e;
    if (obj[key].get(e) != simdjson::SUCCESS) return std::nullopt;
    if (e.is_int64()) return static_cast<double>(e.get_int64().value_unsafe());
    if (e.is_uint64()) return static_cast<double>(e.get_uint64().value_unsafe());
    if (e.is_double()) return e.get_double().value_unsafe();
    fail(path + "." + key, "must be a number");
    return std::nullopt;
  }

  PatternRef typed(simdjson::dom::object obj, const std::set<std::string_view>& keys, const std::string& type,
                   const std::string& path, int depth) {
    if (type == "null") return lit("null");
    if (type == "boolean") return pt::alt({lit("true"), lit("false")});
    if (type == "string") return string_type(obj, keys, path);
    if (type == "integer" || type == "number") return number_type(obj, type == "integer", path);
    if (type == "array") return array_type(obj, path, depth);
    if (type == "object") return object_type(obj, path, depth);
    return fail(path + ".type", "unknown type '" + type + "'");
  }

  PatternRef string_type(simdjson::dom::object obj, const std::set<std::string_view>& keys, const std::string& path) {
    std::string_view text;
    const bool has_pattern = keys.count("pattern") > 0, has_format = keys.count("format") > 0;
    const bool has_length = keys.count("minLength") > 0 || keys.count("maxLength") > 0;
    if (has_pattern + has_format + has_length > 1) {
      return fail(path, "'pattern', 'format' and 'minLength'/'maxLength' are supported one at a time");
    }
    if (has_format) {
      if (obj["format"].get_string().get(text) != simdjson::SUCCESS) return fail(path + ".format", "must be a string");
      auto p = format_pattern(text);
      if (!p) return fail(path + ".format", "the format '" + std::string(text) + "' is not supported (date, time, date-time, uuid, ipv4, email are)");
      return string_of(*p);
    }
    if (has_pattern) {
      if (obj["pattern"].get_string().get(text) != simdjson::SUCCESS) return fail(path + ".pattern", "must be a string");
      // JSON Schema patterns search: unanchored ends match anything.
      std::string regex(text);
      const bool start = !regex.empty() && regex.front() == '^';
      const bool end = regex.size() > (start ? 1u : 0u) && regex.back() == '$' &&
                       (regex.size() < 2 || regex[regex.size() - 2] != '\\');
      if (start) regex.erase(0, 1);
      if (end) regex.pop_back();
      regex = (start ? "" : ".*") + std::string("(") + regex + ")" + (end ? "" : ".*");
      auto p = regex_pattern(regex, limits_);
      if (auto* e = std::get_if<RegexError>(&p)) return fail(path + ".pattern", e->message);
      return string_of(json_string_content(std::get<PatternRef>(p)));
    }
    const auto min = number_of(obj, "minLength", path), max = number_of(obj, "maxLength", path);
    if (min || max) {
      const double lo = min.value_or(0), hi = max.value_or(-1);
      if (lo < 0 || lo > 1000 || hi > 1000 || (max && hi < lo) || std::floor(lo) != lo || (max && std::floor(hi) != hi)) {
        return fail(path, "'minLength'/'maxLength' must be whole numbers from 0 to 1000, min <= max");
      }
      return string_of(pt::repeat(string_char(), static_cast<int>(lo), max ? static_cast<int>(hi) : -1));
    }
    return any_string();
  }

  PatternRef number_type(simdjson::dom::object obj, bool integral, const std::string& path) {
    const auto minimum = number_of(obj, "minimum", path), maximum = number_of(obj, "maximum", path);
    const auto ex_min = number_of(obj, "exclusiveMinimum", path), ex_max = number_of(obj, "exclusiveMaximum", path);
    if (!minimum && !maximum && !ex_min && !ex_max) return integral ? integer() : number();
    if (!integral) return fail(path, "bounds ('minimum', 'maximum', ...) are supported on integers only");
    double lo = -static_cast<double>(kIntegerCap), hi = static_cast<double>(kIntegerCap);
    if (minimum) lo = std::max(lo, std::ceil(*minimum));
    if (ex_min) lo = std::max(lo, std::floor(*ex_min) + 1);
    if (maximum) hi = std::min(hi, std::floor(*maximum));
    if (ex_max) hi = std::min(hi, std::ceil(*ex_max) - 1);
    lo = std::max(lo, -static_cast<double>(kIntegerCap));
    hi = std::min(hi, static_cast<double>(kIntegerCap));
    if (lo > hi) return fail(path, "the integer bounds admit no value (or lie beyond 16 digits)");
    return integer_range(static_cast<std::int64_t>(lo), static_cast<std::int64_t>(hi));
  }

  PatternRef array_type(simdjson::dom::object obj, const std::string& path, int depth) {
    const auto min = number_of(obj, "minItems", path), max = number_of(obj, "maxItems", path);
    const double lo = min.value_or(0), hi = max.value_or(-1);
    if (lo < 0 || lo > 256 || hi > 256 || (max && hi < lo) || std::floor(lo) != lo || (max && std::floor(hi) != hi)) {
      return fail(path, "'minItems'/'maxItems' must be whole numbers from 0 to 256, min <= max");
    }
    std::vector<PatternRef> prefix;
    if (element p; obj["prefixItems"].get(p) == simdjson::SUCCESS) {
      simdjson::dom::array list;
      if (p.get_array().get(list) != simdjson::SUCCESS) return fail(path + ".prefixItems", "must be a list of schemas");
      std::size_t i = 0;
      for (element s : list) prefix.push_back(compile(s, path + ".prefixItems[" + std::to_string(i++) + "]", depth - 1));
    }
    PatternRef item;
    bool more = true;
    if (element it; obj["items"].get(it) == simdjson::SUCCESS) {
      if (it.is_bool() && !it.get_bool().value_unsafe()) {
        more = false;
      } else {
        item = compile(it, path + ".items", depth - 1);
      }
    } else {
      if (!prefix.empty()) more = false;  // no more than the tuple: valid, and what was described
      item = free_value(depth - 1);
    }
    const int n_prefix = static_cast<int>(prefix.size());
    const int lo_i = static_cast<int>(lo), hi_i = max ? static_cast<int>(hi) : -1;
    if (!prefix.empty()) {
      // The tuple's items in order (the first lo of them required), then items past it.
      if (hi_i >= 0 && hi_i < n_prefix) prefix.resize(static_cast<std::size_t>(hi_i));
      if (!more && lo_i > static_cast<int>(prefix.size())) return fail(path, "'minItems' exceeds the items allowed");
      std::vector<bool> required(prefix.size());
      for (std::size_t i = 0; i < prefix.size(); ++i) required[i] = static_cast<int>(i) < lo_i;
      // Left-out tuple items can only be trailing ones: require each before a present one.
      std::vector<PatternRef> tail;
      PatternRef rest = pt::empty();
      if (more) {
        const int rest_lo = std::max(0, lo_i - n_prefix), rest_hi = hi_i < 0 ? -1 : std::max(0, hi_i - n_prefix);
        if (rest_hi != 0) rest = pt::repeat(pt::seq({comma(), item}), rest_lo, rest_hi);
      }
      // items: p0 (, p1 (, p2 ... (, rest)?)?)? with nesting so that only a suffix is left out.
      PatternRef body = rest;
      for (std::size_t i = prefix.size(); i-- > 0;) {
        PatternRef here = pt::seq({i == 0 ? pt::empty() : comma(), prefix[i], body});
        body = static_cast<int>(i) < lo_i ? here : pt::optional(here);
      }
      return pt::seq({lit("["), ws(), body, ws(), lit("]")});
    }
    if (!more) return lit("[]");
    if (lo_i == 0 && hi_i == 0) return lit("[]");
    const PatternRef items = pt::list(item, comma(), std::max(lo_i, 1), hi_i);
    if (lo_i == 0) return array_of(items);
    return pt::seq({lit("["), ws(), items, ws(), lit("]")});
  }

  PatternRef object_type(simdjson::dom::object obj, const std::string& path,
                         int depth) {
    std::set<std::string> required;
    if (element r; obj["required"].get(r) == simdjson::SUCCESS) {
      simdjson::dom::array list;
      if (r.get_array().get(list) != simdjson::SUCCESS) return fail(path + ".required", "must be a list of names");
      for (element n : list) {
        std::string_view name;
        if (n.get_string().get(name) != simdjson::SUCCESS) return fail(path + ".required", "must be a list of names");
        required.emplace(name);
      }
    }
    element additional;
    const bool has_additional = obj["additionalProperties"].get(additional) == simdjson::SUCCESS;
    const bool closed = has_additional && additional.is_bool() && !additional.get_bool().value_unsafe();
    if (strict_ && !closed) return fail(path, "strict mode needs 'additionalProperties': false on every object");
    std::vector<PatternRef> members;
    std::vector<bool> needed;
    std::set<std::string> listed;
    if (element props; obj["properties"].get(props) == simdjson::SUCCESS) {
      simdjson::dom::object list;
      if (props.get_object().get(list) != simdjson::SUCCESS) return fail(path + ".properties", "must be an object");
      for (auto m : list) {
        const std::string name(m.key);
        if (!listed.insert(name).second) return fail(path + ".properties", "'" + name + "' is listed twice");
        if (strict_ && !required.count(name)) {
          return fail(path, "strict mode needs every property in 'required' ('" + name + "' is not)");
        }
        const PatternRef value = compile(m.value, path + ".properties." + name, depth - 1);
        members.push_back(pt::seq({lit(json_quote(name)), ws(), lit(":"), ws(), value}));
        needed.push_back(required.count(name) > 0);
      }
    }
    for (const std::string& r : required) {
      if (!listed.count(r)) return fail(path + ".required", "'" + r + "' is required but not in 'properties'");
    }
    if (members.empty() && has_additional && additional.is_object()) {  // a map: any keys, one value schema
      const PatternRef value = compile(additional, path + ".additionalProperties", depth - 1);
      return object_of(pt::list(pt::seq({any_string(), ws(), lit(":"), ws(), value}), comma(), 1, -1));
    }
    if (members.empty() && !closed) return any_object(std::min(depth, kMaxFreeDepth));  // nothing listed, extra keys allowed
    return pt::seq({lit("{"), ws(), pt::members(comma(), std::move(members), std::move(needed)), ws(), lit("}")});
  }

  element root_;
  bool strict_;
  const GrammarLimits& limits_;
  pattern::NodeCount nodes_;
  int level_ = 0;
  std::vector<std::string> refs_;                            // the $refs being compiled (recursion check)
  std::map<std::pair<std::string, int>, PatternRef> compiled_refs_;  // (ref, depth) -> its pattern
  std::optional<SchemaError> error_;
};

std::variant<PatternRef, SchemaError> compile_schema(element schema, element root, bool strict, const std::string& path,
                                                     int depth, const GrammarLimits& limits) {
  SchemaCompiler c(root, strict, limits);
  PatternRef p = c.compile(schema, path, depth);
  if (auto e = c.error()) return *e;
  return p;
}

std::optional<SchemaError> too_long(std::string_view text, const char* what, const GrammarLimits& limits) {
  if (text.size() <= limits.max_source_bytes) return std::nullopt;
  return SchemaError{std::string(what) + " is " + std::to_string(text.size()) + " bytes, past the limit of " +
                     std::to_string(limits.max_source_bytes)};
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

PatternRef json_object_pattern() { return any_object(kMaxJsonDepth); }

std::variant<PatternRef, SchemaError> json_schema_pattern(std::string_view schema, bool strict,
                                                          const GrammarLimits& limits) {
  if (auto e = too_long(schema, "the schema", limits)) return *e;
  simdjson::dom::parser parser;
  element root;
  if (parser.parse(simdjson::padded_string(schema)).get(root) != simdjson::SUCCESS) {
    return SchemaError{"the schema is not valid JSON"};
  }
  return compile_schema(root, root, strict, "$", kMaxJsonDepth, limits);
}

std::variant<PatternRef, SchemaError> choice_pattern(std::string_view choices, const GrammarLimits& limits) {
  if (auto e = too_long(choices, "the choices", limits)) return *e;
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(simdjson::padded_string(choices)).get_array().get(list) != simdjson::SUCCESS || list.size() == 0) {
    return SchemaError{"the choices must be a non-empty list of strings"};
  }
  std::vector<PatternRef> alts;
  pattern::NodeCount nodes;
  for (element c : list) {
    std::string_view s;
    if (c.get_string().get(s) != simdjson::SUCCESS) return SchemaError{"the choices must be strings"};
    alts.push_back(lit(s));
    if (nodes.made() > limits.max_pattern_nodes) return SchemaError{"the choices' " + nodes_past_limit(limits)};
  }
  return pt::alt(std::move(alts));
}

std::variant<PatternRef, SchemaError> tool_calls_pattern(std::string_view source, const GrammarLimits& limits) {
  if (auto e = too_long(source, "the tools' description", limits)) return *e;
  simdjson::dom::parser parser;
  element root;
  if (parser.parse(simdjson::padded_string(source)).get(root) != simdjson::SUCCESS) {
    return SchemaError{"malformed tool-call description"};
  }
  std::string_view open, close, separator, key;
  bool parallel = false;
  simdjson::dom::array tools;
  if (root["open"].get_string().get(open) || root["close"].get_string().get(close) ||
      root["separator"].get_string().get(separator) || root["key"].get_string().get(key) ||
      root["parallel"].get_bool().get(parallel) || root["tools"].get_array().get(tools) || tools.size() == 0) {
    return SchemaError{"malformed tool-call description"};
  }
  std::vector<PatternRef> calls;
  std::size_t i = 0;
  for (element t : tools) {
    std::string_view name;
    element parameters;
    if (t["name"].get_string().get(name) || t["parameters"].get(parameters)) return SchemaError{"malformed tool"};
    PatternRef args = any_object(kMaxJsonDepth);
    if (!parameters.is_null()) {
      auto compiled = compile_schema(parameters, parameters, false, "$", kMaxJsonDepth, limits);
      if (auto* e = std::get_if<SchemaError>(&compiled)) {
        return SchemaError{"tools[" + std::to_string(i) + "].function.parameters: " + e->message};
      }
      args = std::get<PatternRef>(compiled);
    }
    calls.push_back(pt::seq({lit(open), lit("{\"name\": " + json_quote(name) + ", " + json_quote(key) + ": "), args, lit("}"),
                             lit(close)}));
    ++i;
  }
  PatternRef one = pt::alt(std::move(calls));
  if (!parallel) return one;
  return pt::list(one, lit(separator), 1, -1);
}

}  // namespace tiergate::engine
