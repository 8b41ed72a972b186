#include "engine/grammar.h"

#include <algorithm>

#include "engine/json_schema_pattern.h"
#include "engine/regex_pattern.h"
#include "kernels/check.h"
#include "kernels/sampling.h"

namespace tiergate::engine {
namespace {

constexpr std::size_t kMaxNfaStates = 200000;

std::variant<PatternRef, GrammarError> pattern_of(const GrammarSpec& spec) {
  auto from_schema = [](std::variant<PatternRef, SchemaError> r) -> std::variant<PatternRef, GrammarError> {
    if (auto* e = std::get_if<SchemaError>(&r)) return GrammarError{e->message};
    return std::get<PatternRef>(r);
  };
  switch (spec.kind) {
    case GrammarSpec::Kind::kJsonValue: return json_object_pattern();
    case GrammarSpec::Kind::kJsonSchema: return from_schema(json_schema_pattern(spec.source, spec.strict));
    case GrammarSpec::Kind::kChoice: return from_schema(choice_pattern(spec.source));
    case GrammarSpec::Kind::kToolCalls: return from_schema(tool_calls_pattern(spec.source));
    case GrammarSpec::Kind::kRegex: {
      auto r = regex_pattern(spec.source);
      if (auto* e = std::get_if<RegexError>(&r)) return GrammarError{e->message};
      return std::get<PatternRef>(r);
    }
  }
  return GrammarError{"unknown grammar kind"};
}

}  // namespace

std::variant<std::shared_ptr<const Grammar>, GrammarError> Grammar::compile(const GrammarSpec& spec,
                                                                          std::shared_ptr<const TokenTrie> vocab) {
  auto p = pattern_of(spec);
  if (auto* e = std::get_if<GrammarError>(&p)) return *e;
  auto nfa = compile_nfa(std::get<PatternRef>(p), kMaxNfaStates);
  if (!nfa) {
    return GrammarError{"the constraint is too large to serve (its automaton passes " + std::to_string(kMaxNfaStates) +
                        " states): simplify the schema or expression"};
  }
  return std::make_shared<const Grammar>(std::move(*nfa), std::move(vocab));
}

Grammar::Grammar(Nfa nfa, std::shared_ptr<const TokenTrie> vocab) : nfa_(std::move(nfa)), vocab_(std::move(vocab)) {
  std::vector<std::int32_t> start{0};
  closure(start);
  std::lock_guard lock(mutex_);
  TG_CHECK(intern(std::move(start)) == 0);
}

std::size_t Grammar::dfa_states() const {
  std::lock_guard lock(mutex_);
  return dfa_.size();
}

void Grammar::closure(std::vector<std::int32_t>& set) const {
  std::vector<char> seen(nfa_.states.size(), 0);
  std::vector<std::int32_t> stack(set.begin(), set.end());
  set.clear();
  while (!stack.empty()) {
    const std::int32_t s = stack.back();
    stack.pop_back();
    if (seen[static_cast<std::size_t>(s)]) continue;
    seen[static_cast<std::size_t>(s)] = 1;
    const Nfa::State& st = nfa_.states[static_cast<std::size_t>(s)];
    // Only states that read a byte, or accept, tell DFA states apart.
    if (!st.edges.empty() || s == nfa_.accept) set.push_back(s);
    for (std::int32_t t : st.epsilon) stack.push_back(t);
  }
  std::sort(set.begin(), set.end());
}

Grammar::State Grammar::intern(std::vector<std::int32_t> set) const {
  if (auto it = index_.find(set); it != index_.end()) return it->second;
  if (dfa_.size() >= kMaxDfaStates) {
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
  return id;
}

Grammar::State Grammar::step(State state, unsigned char byte) const {
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
  if (s.mask.empty()) fill_mask(s, state);
  return s.mask;
}

void Grammar::fill_mask(DfaState& s, State id) const {
  const TokenTrie& trie = *vocab_;
  const auto vocab = static_cast<std::int32_t>(trie.vocab_size());
  std::vector<std::uint32_t> m(static_cast<std::size_t>(kernels::mask_words(vocab)), 0);
  bool any = false;
  auto allow = [&](TokenId t) {
    m[static_cast<std::size_t>(t) / 32] |= 1u << (t % 32);
    any = true;
  };
  // Walk the trie and the DFA together: a trie node is reached in the DFA state its path leads to.
  std::vector<std::pair<std::int32_t, State>> stack{{TokenTrie::kRoot, id}};
  const auto& nodes = trie.nodes();
  while (!stack.empty()) {
    const auto [node, state] = stack.back();
    stack.pop_back();
    const TokenTrie::Node& n = nodes[static_cast<std::size_t>(node)];
    for (std::int32_t e = n.first_edge; e < n.first_edge + n.edges; ++e) {
      const State to = step(state, trie.edge_byte(e));
      if (to < 0) continue;
      const std::int32_t child = trie.edge_node(e);
      const TokenTrie::Node& c = nodes[static_cast<std::size_t>(child)];
      for (std::int32_t k = c.first_token; k < c.first_token + c.tokens; ++k) allow(trie.token(k));
      if (c.edges > 0) stack.emplace_back(child, to);
    }
  }
  if (s.accepting || !any) {
    for (TokenId t : trie.end_tokens()) allow(t);
  }
  s.mask = std::move(m);
}

std::variant<std::shared_ptr<const Grammar>, GrammarError> GrammarCache::get(const GrammarSpec& spec,
                                                                             const Tokenizer& tokenizer) {
  std::lock_guard lock(mutex_);
  if (tokenizer_ != &tokenizer) {
    tokenizer_ = &tokenizer;
    vocab_ = std::make_shared<const TokenTrie>(tokenizer);
    grammars_.clear();
    lru_.clear();
  }
  const std::string key = spec.cache_key();
  if (auto it = grammars_.find(key); it != grammars_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  auto compiled = Grammar::compile(spec, vocab_);
  if (auto* e = std::get_if<GrammarError>(&compiled)) return *e;
  auto grammar = std::get<std::shared_ptr<const Grammar>>(compiled);
  lru_.push_front(key);
  grammars_.emplace(key, std::make_pair(grammar, lru_.begin()));
  while (grammars_.size() > capacity_) {
    grammars_.erase(lru_.back());
    lru_.pop_back();
  }
  return grammar;
}

std::size_t GrammarCache::size() const {
  std::lock_guard lock(mutex_);
  return grammars_.size();
}

}  // namespace tiergate::engine
