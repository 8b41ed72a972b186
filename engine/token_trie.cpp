#include "engine/token_trie.h"

#include <algorithm>

namespace tiergate::engine {

TokenTrie::TokenTrie(const Tokenizer& tokenizer) {
  const std::size_t vocab = tokenizer.vocab_size();
  bytes_.resize(vocab);
  is_end_.assign(vocab, 0);
  std::vector<TokenId> order;
  for (std::size_t t = 0; t < vocab; ++t) {
    const auto id = static_cast<TokenId>(t);
    if (tokenizer.is_end_of_generation(id)) {
      end_tokens_.push_back(id);
      is_end_[t] = 1;
      continue;
    }
    bytes_[t] = tokenizer.token_bytes(id);
    if (!bytes_[t].empty()) order.push_back(id);
  }
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) { return bytes(a) < bytes(b); });
  // Children per node while building, flattened into CSR below.
  std::vector<std::vector<std::pair<unsigned char, std::int32_t>>> children(1);
  std::vector<std::vector<TokenId>> ends(1);
  for (TokenId id : order) {
    std::int32_t node = kRoot;
    for (char ch : bytes(id)) {
      const auto c = static_cast<unsigned char>(ch);
      auto& kids = children[static_cast<std::size_t>(node)];
      // Sorted input: a child for this byte, if any, is the last one added.
      if (kids.empty() || kids.back().first != c) {
        kids.emplace_back(c, static_cast<std::int32_t>(children.size()));
        children.emplace_back();
        ends.emplace_back();
      }
      node = children[static_cast<std::size_t>(node)].back().second;
    }
    ends[static_cast<std::size_t>(node)].push_back(id);
  }
  nodes_.resize(children.size());
  for (std::size_t n = 0; n < children.size(); ++n) {
    Node& node = nodes_[n];
    node.first_edge = static_cast<std::int32_t>(edge_byte_.size());
    node.edges = static_cast<std::int32_t>(children[n].size());
    for (const auto& [c, child] : children[n]) {
      edge_byte_.push_back(c);
      edge_node_.push_back(child);
    }
    node.first_token = static_cast<std::int32_t>(tokens_.size());
    node.tokens = static_cast<std::int32_t>(ends[n].size());
    tokens_.insert(tokens_.end(), ends[n].begin(), ends[n].end());
  }
}

}  // namespace tiergate::engine
