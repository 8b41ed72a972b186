// A tokenizer's vocabulary as a trie over the tokens' bytes, the index constrained decoding walks
// to find every token a grammar state allows in one pass (tokens sharing a prefix share the walk).
// Control tokens have no bytes and are not in it; the end-of-generation tokens are listed apart.
// Built once per tokenizer; immutable; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

namespace tiergate::engine {

class TokenTrie {
 public:
  explicit TokenTrie(const Tokenizer& tokenizer);

  struct Node {
    std::int32_t first_edge = 0, edges = 0;    // into edge_byte / edge_node
    std::int32_t first_token = 0, tokens = 0;  // into tokens(): the tokens whose bytes end here
  };
  static constexpr std::int32_t kRoot = 0;

  const std::vector<Node>& nodes() const { return nodes_; }
  unsigned char edge_byte(std::int32_t edge) const { return edge_byte_[static_cast<std::size_t>(edge)]; }
  std::int32_t edge_node(std::int32_t edge) const { return edge_node_[static_cast<std::size_t>(edge)]; }
  TokenId token(std::int32_t i) const { return tokens_[static_cast<std::size_t>(i)]; }

  std::size_t vocab_size() const { return bytes_.size(); }
  const std::string& bytes(TokenId token) const { return bytes_[static_cast<std::size_t>(token)]; }
  const std::vector<TokenId>& end_tokens() const { return end_tokens_; }
  bool is_end(TokenId token) const { return is_end_[static_cast<std::size_t>(token)] != 0; }

 private:
  std::vector<Node> nodes_;
  std::vector<unsigned char> edge_byte_;
  std::vector<std::int32_t> edge_node_;
  std::vector<TokenId> tokens_;
  std::vector<std::string> bytes_;  // [vocab] each token's bytes (empty: a control token)
  std::vector<TokenId> end_tokens_;
  std::vector<char> is_end_;
};

}  // namespace tiergate::engine
