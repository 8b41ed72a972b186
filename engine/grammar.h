// Constrained decoding: a request's GrammarSpec compiled, once, into an automaton over the
// tokenizer's vocabulary. The spec becomes a byte Pattern (engine/json_schema_pattern.h,
// engine/regex_pattern.h), then a Thompson NFA, then a DFA built lazily, state by state, as
// generations reach them (RE2's way); each DFA state reached by a generation gets its token mask,
// computed once by walking the vocabulary trie (engine/token_trie.h) through the DFA, so a step's
// mask costs a lookup (llama.cpp's grammar sampler instead re-checks candidates against its
// stacks every step; XGrammar precomputes masks per state, as here). GrammarCache keeps compiled
// grammars by spec, so the same schema compiles once.
//
// Thread-safety: a Grammar is shared by the requests using it; its lazy parts are guarded by a
// mutex, so any thread may use it (the engine thread does, between steps). Compilation errors are
// values (GrammarError), for the gateway's 400.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/grammar_pattern.h"
#include "engine/grammar_spec.h"
#include "engine/token_trie.h"

namespace tiergate::engine {

struct GrammarError {
  std::string message;
};

class Grammar {
 public:
  using State = std::int32_t;
  static constexpr State kDead = -1;  // no match can continue (a token the grammar does not allow)
  static constexpr State kEnded = -2;  // an end-of-generation token ended a complete match

  static std::variant<std::shared_ptr<const Grammar>, GrammarError> compile(const GrammarSpec& spec,
                                                                            std::shared_ptr<const TokenTrie> vocab);
  Grammar(Nfa nfa, std::shared_ptr<const TokenTrie> vocab);

  State start() const { return 0; }
  // The state after `token`: kEnded for an end-of-generation token where the match may end,
  // kDead where the grammar does not allow the token.
  State next(State state, TokenId token) const;
  bool accepting(State state) const;
  // Accepting with nothing allowed to follow: the generation is over.
  bool complete(State state) const;
  // [mask_words(vocab)] the tokens allowed in `state` (bit t % 32 of word t / 32): those whose bytes
  // continue a match, and the end-of-generation tokens where the match may end. When the
  // vocabulary can write nothing that continues (it lacks a byte the grammar needs) the end tokens
  // are allowed, so that the generation stops rather than go astray. Valid as long as the grammar.
  const std::vector<std::uint32_t>& mask(State state) const;

  const TokenTrie& vocabulary() const { return *vocab_; }
  std::size_t nfa_states() const { return nfa_.states.size(); }
  std::size_t dfa_states() const;

 private:
  struct DfaState {
    std::vector<std::int32_t> nfa;  // sorted, epsilon-closed
    bool accepting = false;
    bool has_edges = false;
    std::array<State, 256> next;    // kUnknown until computed
    std::vector<std::uint32_t> mask;  // empty until computed
  };
  static constexpr State kUnknown = -3;
  static constexpr std::size_t kMaxDfaStates = 100000;

  State intern(std::vector<std::int32_t> set) const;  // caller holds mutex_
  State step(State state, unsigned char byte) const;   // caller holds mutex_
  void closure(std::vector<std::int32_t>& set) const;
  void fill_mask(DfaState& s, State id) const;          // caller holds mutex_

  Nfa nfa_;
  std::shared_ptr<const TokenTrie> vocab_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<DfaState>> dfa_;
  mutable std::map<std::vector<std::int32_t>, State> index_;
  mutable bool overflowed_ = false;
};

// Compiled grammars by spec, for one tokenizer's vocabulary (built on first use), least recently
// used dropped past `capacity`. Thread-safe.
class GrammarCache {
 public:
  explicit GrammarCache(std::size_t capacity = 64) : capacity_(capacity) {}
  std::variant<std::shared_ptr<const Grammar>, GrammarError> get(const GrammarSpec& spec, const Tokenizer& tokenizer);
  std::size_t size() const;

 private:
  std::size_t capacity_;
  mutable std::mutex mutex_;
  const Tokenizer* tokenizer_ = nullptr;
  std::shared_ptr<const TokenTrie> vocab_;
  std::list<std::string> lru_;  // most recent first
  std::unordered_map<std::string, std::pair<std::shared_ptr<const Grammar>, std::list<std::string>::iterator>> grammars_;
};

}  // namespace tiergate::engine
