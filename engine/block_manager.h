// The paged KV cache's bookkeeping: a pool of fixed-size blocks (ids 0..num_blocks-1) with
// reference counts, one block table per sequence, copy-on-write for shared blocks (n > 1 forks a
// prompt) and a prefix cache that maps the hash chain of a full, computed block to the block that
// holds its KV. It owns no KV memory: the executor writes the KV where the tables say and performs
// the block copies returned here. Engine-thread only; scarcity is a return value (nullopt), never
// an exception; broken invariants abort.
//
// Block states:
//   free    (ref 0, not cached)  --allocate-->           active (ref 1)
//   active  (ref n)              --fork-->               active (ref n+1)
//   active  (ref 1)              --release, full+hashed-> cached (ref 0, evictable, still hit-able)
//   active  (ref 1)              --release, otherwise--> free
//   cached                       --prefix hit-->         active (ref 1)
//   cached                       --evicted (LRU) for an allocation--> active (ref 1), hash dropped
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer.h"

namespace tiergate::engine {

using BlockId = std::int32_t;
using SequenceId = std::uint64_t;

struct BlockCopy {
  BlockId from;
  BlockId to;
};

struct BlockManagerStats {
  std::size_t total_blocks = 0;
  std::size_t free_blocks = 0;     // never used or released without a hash
  std::size_t cached_blocks = 0;   // ref 0 but kept for prefix hits (evictable)
  std::size_t active_blocks = 0;   // ref >= 1
  std::size_t allocated_slots = 0; // slots in the blocks of all sequences' tables (shared ones once)
  std::size_t used_slots = 0;      // of those, holding a token
  std::uint64_t prefix_hit_tokens = 0;
  std::uint64_t prefix_query_tokens = 0;
};

class BlockManager {
 public:
  BlockManager(std::size_t num_blocks, std::size_t block_size);

  std::size_t block_size() const { return block_size_; }
  std::size_t num_blocks() const { return blocks_.size(); }
  // Blocks an allocation could take now: free plus evictable cached ones.
  std::size_t available_blocks() const { return free_.size() + lru_.size(); }
  std::size_t blocks_needed(std::size_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // Gives a new sequence slots for its prompt, reusing cached blocks for the longest prefix of
  // full blocks whose KV is already computed (never the block holding the last prompt token, which
  // must be computed to get logits). Returns how many leading tokens are already computed, or
  // nullopt (nothing changed) when the pool cannot hold the prompt. reuse_prefix false: no cached
  // block is reused (every prompt token is computed, e.g. to score it for echo with logprobs).
  std::optional<std::size_t> allocate(SequenceId seq, std::span<const TokenId> prompt, bool reuse_prefix = true);

  // Slots for tokens appended to a sequence (generated tokens). Returns the block copies the
  // executor must perform first (copy-on-write of a shared last block), or nullopt (nothing
  // changed) when the pool is out of blocks.
  std::optional<std::vector<BlockCopy>> append(SequenceId seq, std::span<const TokenId> tokens);

  // The executor has written KV for the first `tokens` tokens: full blocks among them enter the
  // prefix cache.
  void mark_computed(SequenceId seq, std::size_t tokens);

  // The child shares every block of the parent (copy-on-write later).
  void fork(SequenceId parent, SequenceId child);

  // Releases the sequence's blocks (finished, cancelled or preempted for recomputation).
  void release(SequenceId seq);

  bool has(SequenceId seq) const { return sequences_.count(seq) != 0; }
  const std::vector<BlockId>& block_table(SequenceId seq) const;
  std::size_t num_tokens(SequenceId seq) const;
  std::size_t num_computed(SequenceId seq) const;
  int ref_count(BlockId block) const { return blocks_.at(static_cast<std::size_t>(block)).ref; }

  BlockManagerStats stats() const;
  // Aborts if the pool's bookkeeping is inconsistent (for tests and debug builds).
  void check_invariants() const;

 private:
  struct Block {
    int ref = 0;
    std::optional<std::uint64_t> hash;  // set while the block is in the prefix cache
    std::list<BlockId>::iterator lru;   // valid while cached (ref 0 with a hash)
  };
  struct Sequence {
    std::vector<BlockId> table;
    std::vector<TokenId> tokens;
    std::size_t computed = 0;
    std::vector<std::uint64_t> block_hashes;  // hash chain of its full, computed blocks
  };

  std::optional<BlockId> take_block();
  void drop_ref(BlockId block);
  std::uint64_t chain_hash(std::uint64_t parent, std::span<const TokenId> tokens) const;
  Sequence& sequence(SequenceId seq);

  std::size_t block_size_;
  std::vector<Block> blocks_;
  std::vector<BlockId> free_;
  std::list<BlockId> lru_;  // cached blocks, least recently released first
  std::unordered_map<std::uint64_t, BlockId> cache_;
  std::unordered_map<BlockId, std::vector<TokenId>> cached_tokens_;  // guards against hash collisions
  std::unordered_map<SequenceId, Sequence> sequences_;
  std::uint64_t prefix_hit_tokens_ = 0;
  std::uint64_t prefix_query_tokens_ = 0;
};

}  // namespace tiergate::engine
