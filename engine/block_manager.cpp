#include "engine/block_manager.h"

#include <algorithm>
#include <unordered_set>

#include "kernels/check.h"
#include "kernels/mix64.h"

namespace tiergate::engine {

BlockManager::BlockManager(std::size_t num_blocks, std::size_t block_size)
    : block_size_(block_size), blocks_(num_blocks) {
  TG_CHECK(block_size > 0);
  free_.reserve(num_blocks);
  // Hand out low ids first (pop from the back).
  for (std::size_t b = num_blocks; b-- > 0;) free_.push_back(static_cast<BlockId>(b));
}

std::uint64_t BlockManager::chain_hash(std::uint64_t parent, std::span<const TokenId> tokens) const {
  std::uint64_t h = kernels::mix64(parent ^ 0x9e3779b97f4a7c15ull);
  for (TokenId t : tokens) h = kernels::mix64(h ^ static_cast<std::uint32_t>(t));
  return h;
}

BlockManager::Sequence& BlockManager::sequence(SequenceId seq) {
  auto it = sequences_.find(seq);
  TG_CHECK(it != sequences_.end());
  return it->second;
}

std::optional<BlockId> BlockManager::take_block() {
  BlockId b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();  // evict the least recently released cached block
    lru_.pop_front();
    Block& evicted = blocks_[static_cast<std::size_t>(b)];
    cache_.erase(*evicted.hash);
    cached_tokens_.erase(b);
    evicted.hash.reset();
  } else {
    return std::nullopt;
  }
  Block& block = blocks_[static_cast<std::size_t>(b)];
  TG_CHECK(block.ref == 0);
  block.ref = 1;
  return b;
}

void BlockManager::drop_ref(BlockId b) {
  Block& block = blocks_[static_cast<std::size_t>(b)];
  TG_CHECK(block.ref > 0);
  if (--block.ref > 0) return;
  if (block.hash) {
    lru_.push_back(b);
    block.lru = std::prev(lru_.end());
  } else {
    free_.push_back(b);
  }
}

std::optional<std::size_t> BlockManager::allocate(SequenceId seq, std::span<const TokenId> prompt, bool reuse_prefix) {
  TG_CHECK(!has(seq));
  TG_CHECK(!prompt.empty());
  const std::size_t needed = blocks_needed(prompt.size());
  // Longest run of cached full blocks, stopping before the block of the last prompt token.
  const std::size_t max_hits = reuse_prefix ? (prompt.size() - 1) / block_size_ : 0;
  std::vector<BlockId> hits;
  std::vector<std::uint64_t> hashes;
  std::size_t hits_in_lru = 0;
  std::uint64_t parent = 0;
  for (std::size_t i = 0; i < max_hits; ++i) {
    const auto chunk = prompt.subspan(i * block_size_, block_size_);
    const std::uint64_t h = chain_hash(parent, chunk);
    auto it = cache_.find(h);
    if (it == cache_.end()) break;
    const auto& stored = cached_tokens_.at(it->second);
    if (!std::equal(stored.begin(), stored.end(), chunk.begin(), chunk.end())) break;
    hits.push_back(it->second);
    hashes.push_back(h);
    if (blocks_[static_cast<std::size_t>(it->second)].ref == 0) ++hits_in_lru;
    parent = h;
  }
  const std::size_t fresh = needed - hits.size();
  if (available_blocks() < fresh + hits_in_lru) return std::nullopt;

  Sequence s;
  for (BlockId b : hits) {  // claim the hits before fresh blocks could evict them
    Block& block = blocks_[static_cast<std::size_t>(b)];
    if (block.ref++ == 0) lru_.erase(block.lru);
    s.table.push_back(b);
  }
  for (std::size_t i = 0; i < fresh; ++i) s.table.push_back(*take_block());
  s.tokens.assign(prompt.begin(), prompt.end());
  s.computed = hits.size() * block_size_;
  s.block_hashes = std::move(hashes);
  prefix_query_tokens_ += prompt.size();
  prefix_hit_tokens_ += s.computed;
  sequences_.emplace(seq, std::move(s));
  return hits.size() * block_size_;
}

std::optional<std::vector<BlockCopy>> BlockManager::append(SequenceId seq, std::span<const TokenId> tokens) {
  Sequence& s = sequence(seq);
  const std::size_t have = s.tokens.size();
  const std::size_t new_blocks = blocks_needed(have + tokens.size()) - s.table.size();
  // Writing into a partly filled last block that another sequence shares needs a private copy.
  const bool copy_last = !tokens.empty() && have % block_size_ != 0 &&
                         blocks_[static_cast<std::size_t>(s.table.back())].ref > 1;
  if (available_blocks() < new_blocks + (copy_last ? 1 : 0)) return std::nullopt;

  std::vector<BlockCopy> copies;
  if (copy_last) {
    const BlockId shared = s.table.back();
    const BlockId mine = *take_block();
    copies.push_back({shared, mine});
    drop_ref(shared);
    s.table.back() = mine;
  }
  for (std::size_t i = 0; i < new_blocks; ++i) s.table.push_back(*take_block());
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  return copies;
}

void BlockManager::mark_computed(SequenceId seq, std::size_t tokens) {
  Sequence& s = sequence(seq);
  TG_CHECK(tokens <= s.tokens.size());
  s.computed = std::max(s.computed, tokens);
  const std::size_t full = s.computed / block_size_;
  for (std::size_t i = s.block_hashes.size(); i < full; ++i) {
    const std::uint64_t parent = i == 0 ? 0 : s.block_hashes[i - 1];
    const auto chunk = std::span<const TokenId>(s.tokens).subspan(i * block_size_, block_size_);
    const std::uint64_t h = chain_hash(parent, chunk);
    s.block_hashes.push_back(h);
    const BlockId b = s.table[i];
    Block& block = blocks_[static_cast<std::size_t>(b)];
    if (block.hash || cache_.count(h)) continue;  // already cached (here or in another block)
    block.hash = h;
    cache_[h] = b;
    cached_tokens_[b].assign(chunk.begin(), chunk.end());
  }
}

void BlockManager::fork(SequenceId parent, SequenceId child) {
  TG_CHECK(!has(child));
  Sequence copy = sequence(parent);
  for (BlockId b : copy.table) ++blocks_[static_cast<std::size_t>(b)].ref;
  sequences_.emplace(child, std::move(copy));
}

void BlockManager::release(SequenceId seq) {
  auto it = sequences_.find(seq);
  TG_CHECK(it != sequences_.end());
  // Tail first, so that shared prefixes are the last to be evicted.
  const auto& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) drop_ref(*b);
  sequences_.erase(it);
}

const std::vector<BlockId>& BlockManager::block_table(SequenceId seq) const {
  auto it = sequences_.find(seq);
  TG_CHECK(it != sequences_.end());
  return it->second.table;
}

std::size_t BlockManager::num_tokens(SequenceId seq) const {
  auto it = sequences_.find(seq);
  TG_CHECK(it != sequences_.end());
  return it->second.tokens.size();
}

std::size_t BlockManager::num_computed(SequenceId seq) const {
  auto it = sequences_.find(seq);
  TG_CHECK(it != sequences_.end());
  return it->second.computed;
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats st;
  st.total_blocks = blocks_.size();
  st.free_blocks = free_.size();
  st.cached_blocks = lru_.size();
  st.active_blocks = blocks_.size() - free_.size() - lru_.size();
  std::unordered_map<BlockId, std::size_t> filled;  // shared blocks count once, at their fullest
  for (const auto& [id, s] : sequences_) {
    for (std::size_t i = 0; i < s.table.size(); ++i) {
      const std::size_t used = std::min(block_size_, s.tokens.size() - i * block_size_);
      std::size_t& f = filled[s.table[i]];
      f = std::max(f, used);
    }
  }
  st.allocated_slots = filled.size() * block_size_;
  for (const auto& [b, used] : filled) st.used_slots += used;
  st.prefix_hit_tokens = prefix_hit_tokens_;
  st.prefix_query_tokens = prefix_query_tokens_;
  return st;
}

void BlockManager::check_invariants() const {
  std::vector<int> refs(blocks_.size(), 0);
  for (const auto& [id, s] : sequences_) {
    TG_CHECK(s.table.size() == blocks_needed(s.tokens.size()));
    TG_CHECK(s.computed <= s.tokens.size());
    for (BlockId b : s.table) ++refs[static_cast<std::size_t>(b)];
  }
  std::size_t active = 0;
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    TG_CHECK(blocks_[b].ref == refs[b]);
    if (refs[b] > 0) ++active;
  }
  std::unordered_set<BlockId> seen;
  for (BlockId b : free_) {
    TG_CHECK(blocks_[static_cast<std::size_t>(b)].ref == 0 && !blocks_[static_cast<std::size_t>(b)].hash);
    TG_CHECK(seen.insert(b).second);
  }
  for (BlockId b : lru_) {
    TG_CHECK(blocks_[static_cast<std::size_t>(b)].ref == 0 && blocks_[static_cast<std::size_t>(b)].hash);
    TG_CHECK(seen.insert(b).second);
  }
  TG_CHECK(free_.size() + lru_.size() + active == blocks_.size());
  for (const auto& [h, b] : cache_) TG_CHECK(blocks_[static_cast<std::size_t>(b)].hash == h);
  TG_CHECK(cache_.size() == cached_tokens_.size());
}

}  // namespace tiergate::engine
