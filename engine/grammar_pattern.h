// The language of a constrained output as a pattern over bytes (a regular expression tree) and its
// Thompson NFA. JSON schemas (engine/json_schema_pattern.h), regular expressions
// (engine/regex_pattern.h), choices and tool calls all become a Pattern; engine/grammar.h turns
// the NFA into a lazily built DFA whose states carry token masks. Patterns are immutable and may
// share sub-patterns (a $ref used twice is one node); compiling expands each use. Pure functions,
// but for NodeCount, which counts the nodes a thread makes while it lives (the compile budget).
//
// UTF-8: bytes, not characters, are the alphabet, so "any character" is the alternation of the
// well-formed UTF-8 byte sequences (utf8_class), and a token holding half a character is matched
// byte by byte like any other.
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tiergate::engine {

struct Pattern;
using PatternRef = std::shared_ptr<const Pattern>;

struct Pattern {
  enum class Kind {
    kEmpty,    // matches ""
    kBytes,    // one byte of `bytes`
    kLiteral,  // the bytes of `text`, in order: one node however long
    kSeq,      // items in order
    kAlt,      // one of items
    kRepeat,   // items[0], min..max times (max -1: unbounded)
    kList,     // items[0] repeated min..max times, items[1] between two of them
    kMembers,  // items[1..] in order, each present or (unless required) left out, items[0] between
               // two present ones: a JSON object's properties, linear in size however many are optional
  };
  Kind kind = Kind::kEmpty;
  std::bitset<256> bytes;
  std::string text;            // kLiteral
  std::vector<PatternRef> items;
  std::vector<bool> required;  // kMembers: per member (items[i + 1])
  int min = 0, max = -1;
};

namespace pattern {
PatternRef empty();
PatternRef literal(std::string_view text);
PatternRef byte_set(const std::bitset<256>& bytes);
PatternRef byte_range(unsigned char lo, unsigned char hi);
PatternRef seq(std::vector<PatternRef> items);
PatternRef alt(std::vector<PatternRef> items);
PatternRef repeat(PatternRef item, int min, int max);
PatternRef optional(PatternRef item);
PatternRef list(PatternRef item, PatternRef separator, int min, int max);
PatternRef members(PatternRef separator, std::vector<PatternRef> members, std::vector<bool> required);
// Any Unicode scalar value in one of the inclusive code point ranges, UTF-8 encoded (surrogates
// excluded).
PatternRef utf8_class(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& ranges);

// Counts the nodes this thread makes while it lives (nested counts each see them). Compilers of
// client input check `made()` against their budget as they go, so that a spec whose pattern would
// be too large stops growing at the limit rather than after it.
class NodeCount {
 public:
  NodeCount();
  ~NodeCount();
  NodeCount(const NodeCount&) = delete;
  NodeCount& operator=(const NodeCount&) = delete;
  std::size_t made() const { return made_; }
  static void note_node();  // every node made on this thread

 private:
  std::size_t made_ = 0;
  NodeCount* outer_;
};
}  // namespace pattern

// Thompson NFA: state 0 starts, `accept` accepts. Edges read one byte in [lo, hi].
struct Nfa {
  struct Edge {
    unsigned char lo, hi;
    std::int32_t to;
  };
  struct State {
    std::vector<Edge> edges;
    std::vector<std::int32_t> epsilon;
  };
  std::vector<State> states;
  std::int32_t accept = 0;
};

enum class NfaFailure {
  kTooManyStates,  // it would pass `max_states`
  kTooSlow,        // it was not done by `deadline`
};
// Builds while it stays within both; the pattern's nesting bounds the recursion.
std::variant<Nfa, NfaFailure> compile_nfa(const PatternRef& pattern, std::size_t max_states,
                                          std::chrono::steady_clock::time_point deadline =
                                              std::chrono::steady_clock::time_point::max());

}  // namespace tiergate::engine
