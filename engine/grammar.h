// Constrained decoding: a request's GrammarSpec compiled, once, into an automaton over the
// tokenizer's vocabulary. The spec becomes a byte Pattern (engine/json_schema_pattern.h,
// engine/regex_pattern.h), then a Thompson NFA, then a DFA built lazily, state by state, as
// generations reach them (RE2's way); each DFA state reached by a generation gets its token mask,
// computed once by walking the vocabulary trie (engine/token_trie.h) through the DFA, so a step's
// mask costs a lookup (llama.cpp's grammar sampler instead re-checks candidates against its
// stacks every step; XGrammar precomputes masks per state, as here). GrammarCache keeps compiled
// grammars by spec, so the same schema compiles once.
//
// Budgets (engine/grammar_limits.h): compile() refuses a spec that passes a compile-time limit,
// and computes the start state's mask within the compile's time. At run time the DFA stops
// growing at `max_dfa_states` or `max_grammar_bytes` (a generation that needs more ends there: its
// mask then allows only the end tokens, and a transition past the limit is kDead), and a state's
// mask is computed in slices (prepare_mask with a work budget, resumed where it stopped), so that
// the engine thread spends a bounded time per step on one tenant's grammar (engine/engine.cpp).
//
// Thread-safety: a Grammar is shared by the requests using it; its lazy parts are guarded by a
// mutex, so any thread may use it (the engine thread does, between steps). Compilation errors are
// values (GrammarError), for the gateway's 400.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/grammar_limits.h"
#include "engine/grammar_pattern.h"
#include "engine/grammar_spec.h"
#include "engine/token_trie.h"

namespace tiergate::engine {

struct GrammarError {
  std::string message;
  bool busy = false;  // not the spec's fault: GrammarCache had no compile slot free; try again
};

class Grammar {
 public:
  using State = std::int32_t;
  static constexpr State kDead = -1;  // no match can continue (a token the grammar does not allow)
  static constexpr State kEnded = -2;  // an end-of-generation token ended a complete match

  static std::variant<std::shared_ptr<const Grammar>, GrammarError> compile(const GrammarSpec& spec,
                                                                            std::shared_ptr<const TokenTrie> vocab,
                                                                            const GrammarLimits& limits = {});
  Grammar(Nfa nfa, std::shared_ptr<const TokenTrie> vocab, const GrammarLimits& limits = {});

  State start() const { return 0; }
  // The state after `token`: kEnded for an end-of-generation token where the match may end,
  // kDead where the grammar does not allow the token.
  State next(State state, TokenId token) const;
  bool accepting(State state) const;
  // Accepting with nothing allowed to follow: the generation is over.
  bool complete(State state) const;
  // [mask_words(vocab)] the tokens allowed in `state` (bit t % 32 of word t / 32): those whose bytes
  // continue a match, and the end-of-generation tokens where the match may end. When the
  // vocabulary can write nothing that continues (it lacks a byte the grammar needs), or the
  // grammar has passed its memory budget, the end tokens are allowed, so that the generation stops
  // rather than go astray. Computes what prepare_mask has not yet (unbounded). Valid as long as
  // the grammar.
  const std::vector<std::uint32_t>& mask(State state) const;
  // Works on `state`'s mask for at most about `budget` units (one unit: a DFA transition taken or
  // one NFA state visited making a new one), takes what it spent from `budget`, and says whether
  // the mask is ready. A later call resumes where this one stopped.
  bool prepare_mask(State state, std::size_t& budget) const;

  const TokenTrie& vocabulary() const { return *vocab_; }
  std::size_t nfa_states() const { return nfa_.states.size(); }
  std::size_t dfa_states() const;
  // What this grammar holds (NFA, DFA tables, masks), in bytes: it grows as generations explore it.
  std::size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  // A mask being computed: the trie walk's stack, so that it resumes where its budget ran out.
  struct MaskWalk {
    struct Frame {
      std::int32_t node;  // a trie node
      State state;        // the DFA state its bytes lead to
      std::int32_t edge;  // its next edge to follow
    };
    std::vector<std::uint32_t> mask;
    std::vector<Frame> stack;
    bool any = false;
  };
  struct DfaState {
    std::vector<std::int32_t> nfa;  // sorted, epsilon-closed
    bool accepting = false;
    bool has_edges = false;
    std::array<State, 256> next;    // kUnknown until computed
    std::vector<std::uint32_t> mask;  // empty until computed
    std::unique_ptr<MaskWalk> walk;   // while the mask is being computed
    bool ends_only = false;           // the budget ran out before its mask: mask() is ends_only_
  };
  static constexpr State kUnknown = -3;

  State intern(std::vector<std::int32_t> set) const;  // caller holds mutex_
  State step(State state, unsigned char byte) const;   // caller holds mutex_
  void closure(std::vector<std::int32_t>& set) const;  // caller holds mutex_ (or is the constructor)
  bool over_budget(std::size_t more_bytes) const;       // caller holds mutex_
  bool advance_mask(DfaState& s, State id, std::size_t& budget) const;  // caller holds mutex_
  const std::vector<std::uint32_t>& mask_of(const DfaState& s) const;

  Nfa nfa_;
  std::shared_ptr<const TokenTrie> vocab_;
  GrammarLimits limits_;
  std::vector<std::uint32_t> ends_only_;  // the mask of a state the budget left without one
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<DfaState>> dfa_;
  mutable std::map<std::vector<std::int32_t>, State> index_;
  mutable bool overflowed_ = false;
  mutable std::atomic<std::size_t> bytes_{0};
  mutable std::size_t work_ = 0;                 // units spent, for prepare_mask's budget
  mutable std::vector<std::uint32_t> seen_;      // closure(): [nfa states] the visit stamp
  mutable std::uint32_t stamp_ = 0;
  mutable std::vector<std::int32_t> pending_;    // closure()'s stack, kept between calls
};

// Compiled grammars by spec, for one tokenizer's vocabulary (built on first use), least recently
// used dropped past `capacity` grammars or `max_bytes` held by all of them together (errors are
// kept too, so a spec refused once is refused again at no cost). A spec compiles outside the
// cache's lock, once at a time: a request for a spec being compiled waits for that compile rather
// than start another. At most `max_compiles` different specs compile at once; past that get()
// answers a busy GrammarError at once rather than hold its caller's thread (the gateway's few
// request workers) behind another tenant's compile. Thread-safe.
class GrammarCache {
 public:
  using Result = std::variant<std::shared_ptr<const Grammar>, GrammarError>;
  explicit GrammarCache(std::size_t capacity = 256, std::size_t max_bytes = kMaxGrammarCacheBytes,
                        GrammarLimits limits = {}, std::size_t max_compiles = 1)
      : capacity_(capacity), max_bytes_(max_bytes), limits_(limits), max_compiles_(max_compiles) {}
  Result get(const GrammarSpec& spec, const Tokenizer& tokenizer);
  std::size_t size() const;
  std::size_t bytes() const;  // what the cached grammars hold now
  std::size_t compiles_in_flight() const;

 private:
  struct Entry {
    Result result;
    std::list<std::string>::iterator lru;
  };
  struct Compile {  // one in flight
    bool done = false;
    Result result;
  };
  void evict();  // caller holds mutex_
  std::size_t bytes_locked() const;

  std::size_t capacity_;
  std::size_t max_bytes_;
  GrammarLimits limits_;
  std::size_t max_compiles_;
  mutable std::mutex mutex_;
  std::condition_variable compiled_;
  const Tokenizer* tokenizer_ = nullptr;
  std::shared_ptr<const TokenTrie> vocab_;
  std::list<std::string> lru_;  // most recent first
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, std::shared_ptr<Compile>> compiling_;
};

}  // namespace tiergate::engine
