#include "engine/grammar_pattern.h"

#include <algorithm>

namespace tiergate::engine {
namespace pattern {

namespace {

thread_local NodeCount* innermost_count = nullptr;

PatternRef make(Pattern p) {
  NodeCount::note_node();
  return std::make_shared<const Pattern>(std::move(p));
}

int utf8_length(std::uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void encode(std::uint32_t cp, unsigned char* out) {
  switch (utf8_length(cp)) {
    case 1: out[0] = static_cast<unsigned char>(cp); break;
    case 2:
      out[0] = static_cast<unsigned char>(0xC0 | (cp >> 6));
      out[1] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
      break;
    case 3:
      out[0] = static_cast<unsigned char>(0xE0 | (cp >> 12));
      out[1] = static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3F));
      out[2] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
      break;
    default:
      out[0] = static_cast<unsigned char>(0xF0 | (cp >> 18));
      out[1] = static_cast<unsigned char>(0x80 | ((cp >> 12) & 0x3F));
      out[2] = static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3F));
      out[3] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
  }
}

// The byte-range sequences whose concatenations are exactly the UTF-8 encodings of [lo, hi]:
// split the range where the encoded length changes, then where a trailing continuation byte does
// not run over its whole 0x80..0xBF span, until each piece is a product of per-byte ranges.
void utf8_sequences(std::uint32_t lo, std::uint32_t hi, std::vector<PatternRef>& out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {  // surrogates encode nothing
    if (lo < 0xD800) utf8_sequences(lo, 0xD7FF, out);
    if (hi > 0xDFFF) utf8_sequences(0xE000, hi, out);
    return;
  }
  for (std::uint32_t edge : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= edge && hi > edge) {
      utf8_sequences(lo, edge, out);
      utf8_sequences(edge + 1, hi, out);
      return;
    }
  }
  const int n = utf8_length(lo);
  for (int i = 1; i < n; ++i) {
    const std::uint32_t m = (1u << (6 * i)) - 1;  // the low i continuation bytes
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  unsigned char a[4], b[4];
  encode(lo, a);
  encode(hi, b);
  std::vector<PatternRef> bytes;
  for (int i = 0; i < n; ++i) bytes.push_back(byte_range(a[i], b[i]));
  out.push_back(seq(std::move(bytes)));
}

}  // namespace

NodeCount::NodeCount() : outer_(innermost_count) { innermost_count = this; }
NodeCount::~NodeCount() { innermost_count = outer_; }

void NodeCount::note_node() {
  for (NodeCount* c = innermost_count; c; c = c->outer_) ++c->made_;
}

PatternRef empty() { return make(Pattern{}); }

PatternRef literal(std::string_view text) {
  if (text.empty()) return empty();
  if (text.size() == 1) return byte_range(static_cast<unsigned char>(text[0]), static_cast<unsigned char>(text[0]));
  Pattern p;
  p.kind = Pattern::Kind::kLiteral;
  p.text = text;
  return make(std::move(p));
}

PatternRef byte_set(const std::bitset<256>& bytes) {
  Pattern p;
  p.kind = Pattern::Kind::kBytes;
  p.bytes = bytes;
  return make(std::move(p));
}

PatternRef byte_range(unsigned char lo, unsigned char hi) {
  std::bitset<256> b;
  for (unsigned v = lo; v <= hi; ++v) b.set(v);
  return byte_set(b);
}

PatternRef seq(std::vector<PatternRef> items) {
  if (items.empty()) return empty();
  if (items.size() == 1) return items.front();
  Pattern p;
  p.kind = Pattern::Kind::kSeq;
  p.items = std::move(items);
  return make(std::move(p));
}

PatternRef alt(std::vector<PatternRef> items) {
  if (items.size() == 1) return items.front();
  Pattern p;
  p.kind = Pattern::Kind::kAlt;  // no items: matches nothing
  p.items = std::move(items);
  return make(std::move(p));
}

PatternRef repeat(PatternRef item, int min, int max) {
  if (min == 1 && max == 1) return item;
  Pattern p;
  p.kind = Pattern::Kind::kRepeat;
  p.items = {std::move(item)};
  p.min = min;
  p.max = max;
  return make(std::move(p));
}

PatternRef optional(PatternRef item) { return repeat(std::move(item), 0, 1); }

PatternRef list(PatternRef item, PatternRef separator, int min, int max) {
  Pattern p;
  p.kind = Pattern::Kind::kList;
  p.items = {std::move(item), std::move(separator)};
  p.min = min;
  p.max = max;
  return make(std::move(p));
}

PatternRef members(PatternRef separator, std::vector<PatternRef> members, std::vector<bool> required) {
  Pattern p;
  p.kind = Pattern::Kind::kMembers;
  p.items.push_back(std::move(separator));
  for (PatternRef& m : members) p.items.push_back(std::move(m));
  p.required = std::move(required);
  return make(std::move(p));
}

PatternRef utf8_class(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& ranges) {
  std::vector<PatternRef> out;
  // ASCII as one byte set: the common case stays a single edge.
  std::bitset<256> ascii;
  for (auto [lo, hi] : ranges) {
    for (std::uint32_t c = lo; c <= std::min<std::uint32_t>(hi, 0x7F); ++c) ascii.set(c);
    if (hi > 0x7F) utf8_sequences(std::max<std::uint32_t>(lo, 0x80), std::min<std::uint32_t>(hi, 0x10FFFF), out);
  }
  if (ascii.any()) out.insert(out.begin(), byte_set(ascii));
  return alt(std::move(out));
}

}  // namespace pattern

namespace {

class NfaBuilder {
 public:
  NfaBuilder(std::size_t max_states, std::chrono::steady_clock::time_point deadline)
      : max_states_(max_states), deadline_(deadline) {}

  struct Frag {
    std::int32_t start, end;
  };

  std::int32_t add() {
    if (nfa_.states.size() >= max_states_) {
      overflow_ = true;
      return 0;
    }
    // The clock is read once every 4096 states: cheap, and often enough to stop within a millisecond.
    if (nfa_.states.size() % 4096 == 4095 && std::chrono::steady_clock::now() > deadline_) {
      overflow_ = late_ = true;
      return 0;
    }
    nfa_.states.emplace_back();
    return static_cast<std::int32_t>(nfa_.states.size() - 1);
  }
  void eps(std::int32_t from, std::int32_t to) {
    if (!overflow_) nfa_.states[static_cast<std::size_t>(from)].epsilon.push_back(to);
  }

  Frag build(const Pattern& p) {
    if (overflow_) return {0, 0};
    switch (p.kind) {
      case Pattern::Kind::kEmpty: {
        const std::int32_t s = add();
        return {s, s};
      }
      case Pattern::Kind::kBytes: {
        const std::int32_t s = add(), e = add();
        if (overflow_) return {0, 0};
        for (unsigned v = 0; v < 256;) {
          if (!p.bytes.test(v)) {
            ++v;
            continue;
          }
          unsigned w = v;
          while (w + 1 < 256 && p.bytes.test(w + 1)) ++w;
          nfa_.states[static_cast<std::size_t>(s)].edges.push_back(
              {static_cast<unsigned char>(v), static_cast<unsigned char>(w), e});
          v = w + 1;
        }
        return {s, e};
      }
      case Pattern::Kind::kLiteral: {
        const std::int32_t s = add();
        std::int32_t at = s;
        for (char c : p.text) {
          const std::int32_t next = add();
          if (overflow_) return {0, 0};
          const auto b = static_cast<unsigned char>(c);
          nfa_.states[static_cast<std::size_t>(at)].edges.push_back({b, b, next});
          at = next;
        }
        return {s, at};
      }
      case Pattern::Kind::kSeq: {
        Frag f = build(*p.items.front());
        for (std::size_t i = 1; i < p.items.size(); ++i) {
          const Frag g = build(*p.items[i]);
          eps(f.end, g.start);
          f.end = g.end;
        }
        return f;
      }
      case Pattern::Kind::kAlt: {
        const std::int32_t s = add(), e = add();
        for (const PatternRef& item : p.items) {
          const Frag f = build(*item);
          eps(s, f.start);
          eps(f.end, e);
        }
        return {s, e};
      }
      case Pattern::Kind::kRepeat: return repeat(*p.items[0], nullptr, p.min, p.max);
      case Pattern::Kind::kList: return repeat(*p.items[0], p.items[1].get(), p.min, p.max);
      case Pattern::Kind::kMembers: return members(p);
    }
    return {0, 0};
  }

  // item{min,max}, with `separator` between two items when given. An unbounded tail is one copy
  // with a back edge (through the separator), so `item+` costs one copy, not two.
  Frag repeat(const Pattern& item, const Pattern* separator, int min, int max) {
    const std::int32_t s = add(), e = add();
    std::int32_t at = s;
    const int copies = max < 0 ? std::max(min, 1) : max;
    for (int i = 0; i < copies && !overflow_; ++i) {
      if (i >= min) eps(at, e);  // may stop before this copy
      if (i > 0 && separator) {
        const Frag sep = build(*separator);
        eps(at, sep.start);
        at = sep.end;
      }
      const Frag f = build(item);
      eps(at, f.start);
      if (max < 0 && i + 1 == copies) {  // the unbounded tail loops back
        if (separator) {
          const Frag sep = build(*separator);
          eps(f.end, sep.start);
          eps(sep.end, f.start);
        } else {
          eps(f.end, f.start);
        }
      }
      at = f.end;
    }
    eps(at, e);
    return {s, e};
  }

  // Two chains of states: none[j] (no member present yet, before member j) and some[j] (one
  // present already, so member j needs the separator first). Each member is built at most twice.
  Frag members(const Pattern& p) {
    const std::size_t n = p.items.size() - 1;
    const std::int32_t start = add(), end = add();
    std::vector<std::int32_t> some(n + 1, -1);
    for (auto& s : some) s = add();
    std::int32_t none = start;  // none[j], while reachable (only optional members before j)
    for (std::size_t j = 0; j < n && !overflow_; ++j) {
      const Pattern& member = *p.items[j + 1];
      const bool required = p.required[j];
      if (none >= 0) {
        const Frag f = build(member);
        eps(none, f.start);
        eps(f.end, some[j + 1]);
      }
      if (j > 0) {
        const Frag sep = build(*p.items[0]);
        const Frag f = build(member);
        eps(some[j], sep.start);
        eps(sep.end, f.start);
        eps(f.end, some[j + 1]);
        if (!required) eps(some[j], some[j + 1]);
      }
      if (none >= 0) {
        if (required) {
          none = -1;
        } else {
          const std::int32_t next = add();
          eps(none, next);
          none = next;
        }
      }
    }
    eps(some[n], end);
    if (none >= 0) eps(none, end);  // every member optional: none at all is fine
    return {start, end};
  }

  std::variant<Nfa, NfaFailure> finish(const PatternRef& p) {
    const Frag f = build(*p);
    if (overflow_) return late_ ? NfaFailure::kTooSlow : NfaFailure::kTooManyStates;
    // State 0 must start: build() allocated it first.
    if (f.start != 0) eps(0, f.start);
    nfa_.accept = f.end;
    return std::move(nfa_);
  }

 private:
  Nfa nfa_;
  std::size_t max_states_;
  std::chrono::steady_clock::time_point deadline_;
  bool overflow_ = false;
  bool late_ = false;
};

}  // namespace

std::variant<Nfa, NfaFailure> compile_nfa(const PatternRef& pattern, std::size_t max_states,
                                          std::chrono::steady_clock::time_point deadline) {
  NfaBuilder b(max_states, deadline);
  return b.finish(pattern);
}

}  // namespace tiergate::engine
