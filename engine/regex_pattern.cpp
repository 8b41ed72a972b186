#include "engine/regex_pattern.h"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "engine/unicode.h"

namespace tiergate::engine {
namespace {

using Ranges = std::vector<std::pair<std::uint32_t, std::uint32_t>>;

constexpr std::uint32_t kMaxCodepoint = 0x10FFFF;
constexpr int kMaxCount = 1000;  // {n,m} beyond this is refused (each count is a copy)

Ranges normalise(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (auto [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}

Ranges complement(const Ranges& in) {
  Ranges out;
  std::uint32_t next = 0;
  for (auto [lo, hi] : normalise(in)) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.emplace_back(next, kMaxCodepoint);
  return out;
}

Ranges digits() { return {{'0', '9'}}; }
Ranges word() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
Ranges space() { return {{'\t', '\r'}, {' ', ' '}}; }

class Parser {
 public:
  Parser(std::string_view text, const GrammarLimits& limits) : text_(text), limits_(limits) {}

  std::variant<PatternRef, RegexError> run() {
    if (peek() == '^') ++at_;
    PatternRef p = alternation();
    if (error_) return *error_;
    if (at_ < text_.size()) {
      fail("an unbalanced ')'");
      return *error_;
    }
    return p;
  }

 private:
  std::optional<RegexError> error_;
  std::string_view text_;
  const GrammarLimits& limits_;
  pattern::NodeCount nodes_;
  int depth_ = 0;
  std::size_t at_ = 0;

  PatternRef fail(std::string what) {
    if (!error_) error_ = RegexError{what + " at offset " + std::to_string(at_) + " of the regular expression"};
    at_ = text_.size();
    return pattern::empty();
  }
  char peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }
  bool done() const { return at_ >= text_.size() || error_.has_value(); }

  std::uint32_t codepoint() {
    const DecodedCodepoint d = decode_utf8(text_, at_);
    at_ += d.length;
    if (d.codepoint == kInvalidCodepoint) {
      fail("invalid UTF-8");
      return 0;
    }
    return d.codepoint;
  }

  PatternRef alternation() {
    std::vector<PatternRef> branches{concatenation()};
    while (!done() && peek() == '|') {
      ++at_;
      branches.push_back(concatenation());
    }
    return pattern::alt(std::move(branches));
  }

  PatternRef concatenation() {
    std::vector<PatternRef> items;
    while (!done() && peek() != '|' && peek() != ')') {
      if (nodes_.made() > limits_.max_pattern_nodes) {
        return fail("a pattern past the limit of " + std::to_string(limits_.max_pattern_nodes) + " nodes");
      }
      if (peek() == '$' && at_ + 1 == text_.size()) {  // the end anchor: the whole output matches anyway
        ++at_;
        break;
      }
      items.push_back(quantified(atom()));
    }
    return pattern::seq(std::move(items));
  }

  int number() {
    int n = 0;
    std::size_t digits_read = 0;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
      n = std::min(n * 10 + (text_[at_] - '0'), kMaxCount + 1);
      ++at_;
      ++digits_read;
    }
    return digits_read == 0 ? -1 : n;
  }

  // One quantifier (and its lazy `?`) per atom: `a**` and `a{2}{3}` are Python's "multiple
  // repeat", and refusing them keeps a run of 100,000 quantifiers from nesting 100,000 deep.
  PatternRef quantified(PatternRef atom) {
    for (bool repeated = false;; repeated = true) {
      int min = 1, max = 1;
      const char c = peek();
      if (c == '*') {
        min = 0, max = -1;
        ++at_;
      } else if (c == '+') {
        min = 1, max = -1;
        ++at_;
      } else if (c == '?') {
        min = 0, max = 1;
        ++at_;
      } else if (c == '{') {
        const std::size_t start = at_++;
        min = number();
        max = min;
        if (peek() == ',') {
          ++at_;
          max = peek() == '}' ? -1 : number();
        }
        if (min < 0 || peek() != '}' || (max >= 0 && max < min)) {
          at_ = start;
          return fail("a malformed {n,m} quantifier");
        }
        ++at_;
        if (min > kMaxCount || max > kMaxCount) return fail("a count above " + std::to_string(kMaxCount));
      } else {
        return atom;
      }
      if (repeated) {
        --at_;
        return fail("a quantifier after a quantifier (multiple repeat)");
      }
      if (peek() == '?') ++at_;  // lazy: the same language
      if (peek() == '+') return fail("a possessive quantifier");
      atom = pattern::repeat(std::move(atom), min, max);
    }
  }

  PatternRef atom() {
    const char c = peek();
    switch (c) {
      case '(': return group();
      case '[': return char_class();
      case '.':
        ++at_;
        return pattern::utf8_class(complement({{'\n', '\n'}}));
      case '\\': {
        Ranges r;
        if (auto single = escape(r, false)) return pattern::utf8_class({{*single, *single}});
        return pattern::utf8_class(r);
      }
      case '^': return fail("'^' that is not at the start");
      case '$': return fail("'$' that is not at the end");
      case '*':
      case '+':
      case '?':
      case '{': return fail("a quantifier with nothing to repeat");
      default: {
        const std::size_t start = at_;
        codepoint();
        return pattern::literal(text_.substr(start, at_ - start));
      }
    }
  }

  PatternRef group() {
    if (depth_ >= limits_.max_nesting) {
      return fail("groups nested past the limit of " + std::to_string(limits_.max_nesting) + " levels");
    }
    ++at_;
    if (peek() == '?') {
      ++at_;
      const char kind = peek();
      if (kind == ':') {
        ++at_;
      } else if (kind == 'P' || kind == '<') {  // a named group: (?P<name>...) or (?<name>...)
        if (kind == 'P') ++at_;
        if (peek() != '<') return fail("a group construct this subset lacks");
        const std::size_t close = text_.find('>', at_);
        if (close == std::string_view::npos || text_[at_ + 1] == '=' || text_[at_ + 1] == '!') {
          return fail("lookbehind, which is not regular");
        }
        at_ = close + 1;
      } else if (kind == '=' || kind == '!') {
        return fail("lookahead, which is not regular");
      } else {
        return fail("an inline flag or group construct this subset lacks");
      }
    }
    ++depth_;
    PatternRef inner = alternation();
    --depth_;
    if (error_) return inner;
    if (peek() != ')') return fail("an unclosed '('");
    ++at_;
    return inner;
  }

  // After a backslash: a single code point (returned) or a class (into `r`). Inside a class
  // `in_class`: \b is a backspace there; classes of negated shorthands are not supported.
  std::optional<std::uint32_t> escape(Ranges& r, bool in_class) {
    ++at_;
    if (at_ >= text_.size()) {
      fail("a trailing backslash");
      return 0;
    }
    const char c = text_[at_++];
    auto hex = [&](int n) -> std::uint32_t {
      std::uint32_t v = 0;
      for (int i = 0; i < n; ++i) {
        const char h = peek();
        const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) {
          fail("a malformed hexadecimal escape");
          return 0;
        }
        v = v * 16 + static_cast<std::uint32_t>(d);
        ++at_;
      }
      return v;
    };
    switch (c) {
      case 'd': r = digits(); return std::nullopt;
      case 'w': r = word(); return std::nullopt;
      case 's': r = space(); return std::nullopt;
      case 'D':
      case 'W':
      case 'S':
        if (in_class) {
          fail("a negated class shorthand inside [...]");
          return 0;
        }
        r = complement(c == 'D' ? digits() : c == 'W' ? word() : space());
        return std::nullopt;
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0': return 0;
      case 'x': return hex(2);
      case 'u': return hex(4);
      case 'b':
        if (in_class) return '\b';
        fail("\\b (a word boundary), which is not regular");
        return 0;
      case 'B':
      case 'A':
      case 'Z':
      case 'z':
      case 'G':
        fail(std::string("the anchor \\") + c);
        return 0;
      default:
        if (c >= '1' && c <= '9') {
          fail("a backreference, which is not regular");
          return 0;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          fail(std::string("the unknown escape \\") + c);
          return 0;
        }
        --at_;
        return codepoint();  // an escaped punctuation or non-ASCII character stands for itself
    }
  }

  PatternRef char_class() {
    ++at_;
    bool negate = false;
    if (peek() == '^') {
      negate = true;
      ++at_;
    }
    Ranges ranges;
    bool first = true;
    while (at_ < text_.size() && !error_ && (peek() != ']' || first)) {
      first = false;
      auto item = [&](Ranges& shorthand) -> std::optional<std::uint32_t> {
        if (peek() == '\\') return escape(shorthand, true);
        if (peek() == '[' && at_ + 1 < text_.size() && text_[at_ + 1] == ':') {
          fail("a POSIX class [:...:]");
          return 0;
        }
        return codepoint();
      };
      Ranges shorthand;
      const auto lo = item(shorthand);
      if (!lo) {
        ranges.insert(ranges.end(), shorthand.begin(), shorthand.end());
        continue;
      }
      if (peek() == '-' && at_ + 1 < text_.size() && text_[at_ + 1] != ']') {
        ++at_;
        Ranges bad;
        const auto hi = item(bad);
        if (!hi || *hi < *lo) return fail("a bad range in [...]");
        ranges.emplace_back(*lo, *hi);
      } else {
        ranges.emplace_back(*lo, *lo);
      }
    }
    if (error_) return pattern::empty();
    if (peek() != ']') return fail("an unclosed '['");
    ++at_;
    return pattern::utf8_class(negate ? complement(ranges) : normalise(ranges));
  }
};

}  // namespace

std::variant<PatternRef, RegexError> regex_pattern(std::string_view regex, const GrammarLimits& limits) {
  if (regex.size() > limits.max_source_bytes) {
    return RegexError{"the regular expression is " + std::to_string(regex.size()) + " bytes, past the limit of " +
                      std::to_string(limits.max_source_bytes)};
  }
  return Parser(regex, limits).run();
}

namespace {

// One byte of `bytes` as JSON string content: the byte itself, or its escape.
PatternRef escaped_byte_set(const std::bitset<256>& bytes) {
  std::bitset<256> plain = bytes;
  for (unsigned b = 0; b < 0x20; ++b) plain.reset(b);
  plain.reset('"');
  plain.reset('\\');
  std::vector<PatternRef> ways;
  if (plain.any()) ways.push_back(pattern::byte_set(plain));
  if (bytes.test('"')) ways.push_back(pattern::literal("\\\""));
  if (bytes.test('\\')) ways.push_back(pattern::literal("\\\\"));
  if (bytes.test('\n')) ways.push_back(pattern::literal("\\n"));
  if (bytes.test('\t')) ways.push_back(pattern::literal("\\t"));
  if (bytes.test('\r')) ways.push_back(pattern::literal("\\r"));
  return pattern::alt(std::move(ways));
}

bool needs_escape(unsigned char b) { return b < 0x20 || b == '"' || b == '\\'; }

PatternRef escape_node(const PatternRef& p, std::map<const Pattern*, PatternRef>& done) {
  if (auto it = done.find(p.get()); it != done.end()) return it->second;
  PatternRef out;
  switch (p->kind) {
    case Pattern::Kind::kEmpty: out = p; break;
    case Pattern::Kind::kBytes: {
      bool plain = true;
      for (unsigned b = 0; b < 256; ++b) plain &= !(p->bytes.test(b) && needs_escape(static_cast<unsigned char>(b)));
      out = plain ? p : escaped_byte_set(p->bytes);
      break;
    }
    case Pattern::Kind::kLiteral: {
      if (std::none_of(p->text.begin(), p->text.end(), [](char c) { return needs_escape(static_cast<unsigned char>(c)); })) {
        out = p;
        break;
      }
      std::vector<PatternRef> bytes;
      for (char c : p->text) {
        std::bitset<256> one;
        one.set(static_cast<unsigned char>(c));
        bytes.push_back(escaped_byte_set(one));
      }
      out = pattern::seq(std::move(bytes));
      break;
    }
    default: {
      Pattern copy = *p;
      for (PatternRef& item : copy.items) item = escape_node(item, done);
      out = std::make_shared<const Pattern>(std::move(copy));
    }
  }
  done[p.get()] = out;
  return out;
}

}  // namespace

PatternRef json_string_content(const PatternRef& raw) {
  std::map<const Pattern*, PatternRef> done;
  return escape_node(raw, done);
}

}  // namespace tiergate::engine
