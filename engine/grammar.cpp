#include "engine/grammar.h"

#include <algorithm>

#include "engine/json_schema_pattern.h"
#include "engine/regex_pattern.h"
#include "kernels/check.h"
#include "kernels/sampling.h"

namespace tiergate::engine {
namespace {

std::variant<PatternRef, GrammarError> pattern_of(const GrammarSpec& spec, const GrammarLimits& limits) {
  auto from_schema = [](std::variant<PatternRef, SchemaError> r) -> std::variant<PatternRef, GrammarError> {
    if (auto* e = std::get_if<SchemaError>(&r)) return GrammarError{e->message};
    return std::get<PatternRef>(r);
  };
  switch (spec.kind) {
    case GrammarSpec::Kind::kJsonValue: return json_object_pattern();
    case GrammarSpec::Kind::kJsonSchema: return from_schema(json_schema_pattern(spec.source, spec.strict, limits));
    case GrammarSpec::Kind::kChoice: return from_schema(choice_pattern(spec.source, limits));
    case GrammarSpec::Kind::kToolCalls: return from_schema(tool_calls_pattern(spec.source, limits));
    case GrammarSpec::Kind::kRegex: {
      auto r = regex_pattern(spec.source, limits);
      if (auto* e = std::get_if<RegexError>(&r)) return GrammarError{e->message};
      return std::get<PatternRef>(r);
    }
  }
  return GrammarError{"unknown grammar kind"};
}

GrammarError too_slow(const GrammarLimits& limits) {
  return GrammarError{"the constraint did not compile within the limit of " +
                      std::to_string(limits.max_compile_time.count()) + " ms: simplify the schema or expression"};
}

// What a std::map node holding a DFA state's NFA set costs beyond the set's payload.
constexpr std::size_t kIndexEntryBytes = 64;
// Mask work the compile does between two looks at the clock.
constexpr std::size_t kCompileSlice = 1 << 16;

}  // namespace

std::variant<std::shared_ptr<const Grammar>, GrammarError> Grammar::compile(const GrammarSpec& spec,
                                                                          std::shared_ptr<const TokenTrie> vocab,
                                                                          const GrammarLimits& limits) {
  const auto deadline = std::chrono::steady_clock::now() + limits.max_compile_time;
  auto p = pattern_of(spec, limits);
  if (auto* e = std::get_if<GrammarError>(&p)) return *e;
  auto nfa = compile_nfa(std::get<PatternRef>(p), limits.max_nfa_states, deadline);
  p = GrammarError{};  // the pattern is done with: free it before the DFA grows
  if (auto* failure = std::get_if<NfaFailure>(&nfa)) {
    if (*failure == NfaFailure::kTooSlow) return too_slow(limits);
    return GrammarError{"the constraint is too large to serve: its automaton passes the limit of " +
                        std::to_string(limits.max_nfa_states) + " states (simplify the schema or expression)"};
  }
  auto grammar = std::make_shared<const Grammar>(std::move(std::get<Nfa>(nfa)), std::move(vocab), limits);
  // The start state's mask is part of the compile (its time is the tenant's, not the engine's).
  for (;;) {
    std::size_t slice = kCompileSlice;
    if (grammar->prepare_mask(grammar->start(), slice)) break;
    if (std::chrono::steady_clock::now() > deadline) return too_slow(limits);
  }
  return grammar;
}

Grammar::Grammar(Nfa nfa, std::shared_ptr<const TokenTrie> vocab, const GrammarLimits& limits)
    : nfa_(std::move(nfa)), vocab_(std::move(vocab)), limits_(limits) {
  std::size_t held = nfa_.states.size() * (sizeof(Nfa::State) + sizeof(std::uint32_t));  // states and seen_
  for (const Nfa::State& st : nfa_.states) {
    held += st.edges.capacity() * sizeof(Nfa::Edge) + st.epsilon.capacity() * sizeof(std::int32_t);
  }
  ends_only_.assign(static_cast<std::size_t>(kernels::mask_words(static_cast<std::int32_t>(vocab_->vocab_size()))), 0);
  for (TokenId t : vocab_->end_tokens()) ends_only_[static_cast<std::size_t>(t) / 32] |= 1u << (t % 32);
  held += ends_only_.size() * sizeof(std::uint32_t);
  bytes_.store(held, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  std::vector<std::int32_t> start{0};
  closure(start);
  TG_CHECK(intern(std::move(start)) == 0);
}

std::size_t Grammar::dfa_states() const {
  std::lock_guard lock(mutex_);
  return dfa_.size();
}

void Grammar::closure(std::vector<std::int32_t>& set) const {
  // A visit stamp per NFA state, kept between calls: no allocation or clearing per transition.
  if (seen_.size() != nfa_.states.size()) seen_.assign(nfa_.states.size(), 0);
  if (++stamp_ == 0) {
    std::fill(seen_.begin(), seen_.end(), 0);
    stamp_ = 1;
  }
  pending_.assign(set.begin(), set.end());
  set.clear();
  while (!pending_.empty()) {
    const std::int32_t s = pending_.back();
    pending_.pop_back();
    if (seen_[static_cast<std::size_t>(s)] == stamp_) continue;
    seen_[static_cast<std::size_t>(s)] = stamp_;
    ++work_;
    const Nfa::State& st = nfa_.states[static_cast<std::size_t>(s)];
    // Only states that read a byte, or accept, tell DFA states apart.
    if (!st.edges.empty() || s == nfa_.accept) set.push_back(s);
    for (std::int32_t t : st.epsilon) pending_.push_back(t);
  }
  std::sort(set.begin(), set.end());
}

bool Grammar::over_budget(std::size_t more_bytes) const {
  return bytes_.load(std::memory_order_relaxed) + more_bytes > limits_.max_grammar_bytes;
}

Grammar::State Grammar::intern(std::vector<std::int32_t> set) const {
  if (auto it = index_.find(set); it != index_.end()) return it->second;
  const std::size_t cost = sizeof(DfaState) + kIndexEntryBytes + 2 * set.size() * sizeof(std::int32_t);
  if (dfa_.size() >= limits_.max_dfa_states || over_budget(cost)) {
    overflowed_ = true;  // the automaton outgrew its budget: generation under it ends
    return kDead;
  }
  auto s = std::make_unique<DfaState>();
  s->accepting = std::binary_search(set.begin(), set.end(), nfa_.accept);
  for (std::int32_t n : set) s->has_edges |= !nfa_.states[static_cast<std::size_t>(n)].edges.empty();
  s->next.fill(kUnknown);
  s->nfa = set;
  const auto id = static_cast<State>(dfa_.size());
  dfa_.push_back(std::move(s));
  index_.emplace(std::move(set), id);
  bytes_.fetch_add(cost, std::memory_order_relaxed);
  return id;
}

Grammar::State Grammar::step(State state, unsigned char byte) const {
  ++work_;
  DfaState& s = *dfa_[static_cast<std::size_t>(state)];
  if (s.next[byte] != kUnknown) return s.next[byte];
  std::vector<std::int32_t> targets;
  for (std::int32_t n : s.nfa) {
    for (const Nfa::Edge& e : nfa_.states[static_cast<std::size_t>(n)].edges) {
      if (e.lo <= byte && byte <= e.hi) targets.push_back(e.to);
    }
  }
  State next = kDead;
  if (!targets.empty()) {
    closure(targets);
    next = intern(std::move(targets));
  }
  // An overflow is not remembered as a dead transition: it is the budget, not the language.
  if (next != kDead || !overflowed_) s.next[byte] = next;
  return next;
}

Grammar::State Grammar::next(State state, TokenId token) const {
  if (state < 0) return kDead;
  std::lock_guard lock(mutex_);
  if (vocab_->is_end(token)) return dfa_[static_cast<std::size_t>(state)]->accepting ? kEnded : kDead;
  const std::string& bytes = vocab_->bytes(token);
  if (bytes.empty()) return kDead;
  for (char c : bytes) {
    state = step(state, static_cast<unsigned char>(c));
    if (state < 0) return kDead;
  }
  return state;
}

bool Grammar::accepting(State state) const {
  if (state < 0) return false;
  std::lock_guard lock(mutex_);
  return dfa_[static_cast<std::size_t>(state)]->accepting;
}

bool Grammar::complete(State state) const {
  if (state < 0) return false;
  std::lock_guard lock(mutex_);
  const DfaState& s = *dfa_[static_cast<std::size_t>(state)];
  return s.accepting && !s.has_edges;
}

const std::vector<std::uint32_t>& Grammar::mask(State state) const {
  TG_CHECK(state >= 0);
  std::lock_guard lock(mutex_);
  DfaState& s = *dfa_[static_cast<std::size_t>(state)];
  std::size_t unlimited = static_cast<std::size_t>(-1);
  advance_mask(s, state, unlimited);
  return mask_of(s);
}

bool Grammar::prepare_mask(State state, std::size_t& budget) const {
  TG_CHECK(state >= 0);
  std::lock_guard lock(mutex_);
  return advance_mask(*dfa_[static_cast<std::size_t>(state)], state, budget);
}

const std::vector<std::uint32_t>& Grammar::mask_of(const DfaState& s) const { return s.ends_only ? ends_only_ : s.mask; }

bool Grammar::advance_mask(DfaState& s, State id, std::size_t& budget) const {
  if (!s.mask.empty() || s.ends_only) return true;
  const TokenTrie& trie = *vocab_;
  const auto& nodes = trie.nodes();
  if (!s.walk) {
    const std::size_t words = ends_only_.size();
    if (over_budget(words * sizeof(std::uint32_t))) {
      overflowed_ = s.ends_only = true;
      return true;
    }
    s.walk = std::make_unique<MaskWalk>();
    s.walk->mask.assign(words, 0);
    s.walk->stack.push_back({TokenTrie::kRoot, id, nodes[TokenTrie::kRoot].first_edge});
    bytes_.fetch_add(words * sizeof(std::uint32_t), std::memory_order_relaxed);
  }
  MaskWalk& w = *s.walk;
  auto allow = [&](TokenId t) {
    w.mask[static_cast<std::size_t>(t) / 32] |= 1u << (t % 32);
    w.any = true;
  };
  // Walk the trie and the DFA together, one edge at a time: a trie node is reached in the DFA
  // state its path leads to.
  const std::size_t began = work_;
  while (!w.stack.empty()) {
    if (work_ - began >= budget) {
      budget = 0;
      return false;
    }
    MaskWalk::Frame& f = w.stack.back();
    const TokenTrie::Node& n = nodes[static_cast<std::size_t>(f.node)];
    if (f.edge == n.first_edge + n.edges) {
      w.stack.pop_back();
      continue;
    }
    const std::int32_t e = f.edge++;
    const State to = step(f.state, trie.edge_byte(e));
    if (to < 0) continue;
    const std::int32_t child = trie.edge_node(e);
    const TokenTrie::Node& c = nodes[static_cast<std::size_t>(child)];
    for (std::int32_t k = c.first_token; k < c.first_token + c.tokens; ++k) allow(trie.token(k));
    if (c.edges > 0) w.stack.push_back({child, to, c.first_edge});
  }
  if (s.accepting || !w.any) {
    for (TokenId t : trie.end_tokens()) allow(t);
  }
  s.mask = std::move(w.mask);
  s.walk.reset();
  budget -= std::min(budget, work_ - began);
  return true;
}

GrammarCache::Result GrammarCache::get(const GrammarSpec& spec, const Tokenizer& tokenizer) {
  const std::string key = spec.cache_key();
  std::shared_ptr<Compile> mine;
  std::shared_ptr<const TokenTrie> vocab;
  {
    std::unique_lock lock(mutex_);
    if (tokenizer_ != &tokenizer) {
      tokenizer_ = &tokenizer;
      vocab_ = std::make_shared<const TokenTrie>(tokenizer);
      entries_.clear();
      lru_.clear();
    }
    if (auto it = entries_.find(key); it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      Result hit = it->second.result;
      evict();  // grammars grow as they are used: the bytes are checked on every use
      return hit;
    }
    if (auto it = compiling_.find(key); it != compiling_.end()) {
      const std::shared_ptr<Compile> theirs = it->second;  // one compile per spec: wait for it
      compiled_.wait(lock, [&] { return theirs->done; });
      return theirs->result;
    }
    if (compiling_.size() >= max_compiles_) {
      return GrammarError{"another output constraint is compiling (at most " + std::to_string(max_compiles_) +
                              " at once): retry shortly",
                          true};
    }
    mine = std::make_shared<Compile>();
    compiling_.emplace(key, mine);
    vocab = vocab_;
  }
  Result result = Grammar::compile(spec, vocab, limits_);
  {
    std::lock_guard lock(mutex_);
    mine->result = result;
    mine->done = true;
    compiling_.erase(key);
    if (vocab == vocab_) {  // not compiled for a tokenizer that has since been replaced
      lru_.push_front(key);
      entries_.insert_or_assign(key, Entry{result, lru_.begin()});
      evict();
    }
  }
  compiled_.notify_all();
  return result;
}

std::size_t GrammarCache::bytes_locked() const {
  std::size_t total = 0;
  for (const auto& [key, entry] : entries_) {
    total += key.size();
    if (auto* g = std::get_if<std::shared_ptr<const Grammar>>(&entry.result)) {
      total += (*g)->bytes();
    } else {
      total += std::get<GrammarError>(entry.result).message.size();
    }
  }
  return total;
}

void GrammarCache::evict() {
  while (lru_.size() > 1 && (entries_.size() > capacity_ || bytes_locked() > max_bytes_)) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
}

std::size_t GrammarCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::size_t GrammarCache::compiles_in_flight() const {
  std::lock_guard lock(mutex_);
  return compiling_.size();
}

std::size_t GrammarCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_locked();
}

}  // namespace tiergate::engine
