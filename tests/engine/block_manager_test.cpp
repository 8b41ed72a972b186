// engine/block_manager.*: block accounting, copy-on-write and the prefix cache, with unit tests
// for each transition and a rapidcheck property that drives random operation sequences against a
// model of the KV memory the executor would write.
#include "engine/block_manager.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace tiergate::engine {
namespace {

std::vector<TokenId> tokens(std::initializer_list<int> ids) { return {ids.begin(), ids.end()}; }

std::vector<TokenId> range(int from, int count) {
  std::vector<TokenId> v;
  for (int i = 0; i < count; ++i) v.push_back(from + i);
  return v;
}

TEST(BlockManager, AllocatesWholeBlocksAndReleasesThem) {
  BlockManager bm(8, 4);
  ASSERT_EQ(bm.allocate(1, range(0, 10)), 0u);
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_EQ(bm.available_blocks(), 5u);
  const BlockManagerStats st = bm.stats();
  EXPECT_EQ(st.allocated_slots, 12u);
  EXPECT_EQ(st.used_slots, 10u);  // waste is at most one partial block
  bm.release(1);
  EXPECT_EQ(bm.available_blocks(), 8u);
  bm.check_invariants();
}

TEST(BlockManager, ScarcityIsAValueAndChangesNothing) {
  BlockManager bm(2, 4);
  ASSERT_TRUE(bm.allocate(1, range(0, 8)));
  EXPECT_FALSE(bm.allocate(2, range(0, 1)));
  EXPECT_FALSE(bm.has(2));
  EXPECT_FALSE(bm.append(1, tokens({9})));
  EXPECT_EQ(bm.num_tokens(1), 8u);
  bm.check_invariants();
}

TEST(BlockManager, AppendGrowsIntoNewBlocks) {
  BlockManager bm(4, 4);
  ASSERT_TRUE(bm.allocate(1, range(0, 4)));
  auto copies = bm.append(1, tokens({4}));
  ASSERT_TRUE(copies);
  EXPECT_TRUE(copies->empty());
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  bm.check_invariants();
}

TEST(BlockManager, ForkSharesBlocksAndCopiesOnWrite) {
  BlockManager bm(8, 4);
  ASSERT_TRUE(bm.allocate(1, range(0, 6)));
  bm.mark_computed(1, 6);
  bm.fork(1, 2);
  EXPECT_EQ(bm.block_table(1), bm.block_table(2));
  EXPECT_EQ(bm.ref_count(bm.block_table(1)[1]), 2);
  // The last block is partly filled and shared: the first writer gets a private copy.
  auto copies = bm.append(2, tokens({100}));
  ASSERT_TRUE(copies);
  ASSERT_EQ(copies->size(), 1u);
  EXPECT_EQ((*copies)[0].from, bm.block_table(1)[1]);
  EXPECT_EQ((*copies)[0].to, bm.block_table(2)[1]);
  EXPECT_EQ(bm.block_table(1)[0], bm.block_table(2)[0]);  // the full block stays shared
  // The other sequence is now the only owner of the original: no copy.
  EXPECT_TRUE(bm.append(1, tokens({200}))->empty());
  bm.check_invariants();
}

TEST(BlockManager, PrefixCacheReusesComputedFullBlocks) {
  BlockManager bm(16, 4);
  const auto system = range(0, 12);  // three full blocks
  auto prompt_a = system;
  prompt_a.push_back(50);
  ASSERT_EQ(bm.allocate(1, prompt_a), 0u);
  // Not computed yet: nothing to reuse.
  auto prompt_b = system;
  prompt_b.push_back(60);
  ASSERT_EQ(bm.allocate(2, prompt_b), 0u);
  bm.release(2);
  bm.mark_computed(1, prompt_a.size());
  ASSERT_EQ(bm.allocate(3, prompt_b), 12u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(bm.block_table(3)[static_cast<std::size_t>(i)], bm.block_table(1)[static_cast<std::size_t>(i)]);
  EXPECT_NE(bm.block_table(3)[3], bm.block_table(1)[3]);
  // After both finish the blocks stay cached and still hit.
  bm.release(1);
  bm.release(3);
  EXPECT_EQ(bm.stats().cached_blocks, 3u);
  ASSERT_EQ(bm.allocate(4, prompt_a), 12u);
  EXPECT_EQ(bm.stats().prefix_hit_tokens, 24u);
  bm.check_invariants();
}

TEST(BlockManager, NeverReusesTheBlockOfTheLastPromptToken) {
  BlockManager bm(8, 4);
  ASSERT_TRUE(bm.allocate(1, range(0, 8)));
  bm.mark_computed(1, 8);
  bm.release(1);
  // An identical prompt reuses only the first block: the last token must be computed for logits.
  EXPECT_EQ(bm.allocate(2, range(0, 8)), 4u);
  bm.check_invariants();
}

TEST(BlockManager, CachedBlocksAreEvictedWhenThePoolRunsOut) {
  BlockManager bm(3, 4);
  ASSERT_TRUE(bm.allocate(1, range(0, 9)));
  bm.mark_computed(1, 9);
  bm.release(1);
  EXPECT_EQ(bm.stats().cached_blocks, 2u);
  EXPECT_EQ(bm.available_blocks(), 3u);
  ASSERT_EQ(bm.allocate(2, range(100, 12)), 0u);  // takes the free block and evicts both
  EXPECT_EQ(bm.stats().cached_blocks, 0u);
  bm.release(2);
  EXPECT_EQ(bm.allocate(3, range(0, 9)), 0u);  // the old prefix is gone
  bm.check_invariants();
}

// ---- property: random operations against a model of KV memory ----

struct Slot {
  TokenId token = -1;
  std::size_t position = 0;
  bool operator==(const Slot&) const = default;
};

RC_GTEST_PROP(BlockManagerProperty, AccountingCopyOnWriteAndPrefixHits, ()) {
  const auto block_size = *rc::gen::element<std::size_t>(1, 2, 4, 16);
  const auto num_blocks = *rc::gen::inRange<std::size_t>(1, 40);
  BlockManager bm(num_blocks, block_size);
  std::map<BlockId, std::vector<Slot>> kv;  // what the executor has written
  std::map<SequenceId, std::vector<TokenId>> seqs;
  SequenceId next_seq = 1;
  // A few shared prefixes make prefix hits likely.
  const std::vector<std::vector<TokenId>> prefixes = {range(0, 40), range(100, 40), range(0, 20)};

  auto write = [&](SequenceId s, std::size_t from, std::size_t to) {
    const auto& table = bm.block_table(s);
    for (std::size_t pos = from; pos < to; ++pos) {
      const BlockId b = table[pos / block_size];
      RC_ASSERT(bm.ref_count(b) == 1);  // copy-on-write: never write a shared block
      auto& slots = kv[b];
      slots.resize(block_size);
      slots[pos % block_size] = Slot{seqs[s][pos], pos};
    }
    bm.mark_computed(s, to);
  };

  const auto steps = *rc::gen::inRange(1, 120);
  for (int step = 0; step < steps; ++step) {
    const int op = *rc::gen::inRange(0, 6);
    if (op <= 1 || seqs.empty()) {
      const auto& base = prefixes[*rc::gen::inRange<std::size_t>(0, prefixes.size())];
      std::vector<TokenId> prompt(base.begin(), base.begin() + *rc::gen::inRange<long>(1, static_cast<long>(base.size()) + 1));
      const auto extra = *rc::gen::inRange(0, 6);
      for (int i = 0; i < extra; ++i) prompt.push_back(*rc::gen::inRange(1000, 1004));
      const SequenceId s = next_seq++;
      const auto before = bm.stats();
      const auto cached = bm.allocate(s, prompt);
      if (!cached) {
        const auto after = bm.stats();
        RC_ASSERT(after.free_blocks == before.free_blocks && after.cached_blocks == before.cached_blocks);
        continue;
      }
      seqs[s] = prompt;
      RC_ASSERT(*cached % block_size == 0);
      RC_ASSERT(*cached < prompt.size());
      // Prefix hits return identical KV.
      const auto& table = bm.block_table(s);
      for (std::size_t pos = 0; pos < *cached; ++pos) {
        RC_ASSERT(kv[table[pos / block_size]][pos % block_size] == (Slot{prompt[pos], pos}));
      }
      // The first prefill chunk now; the rest in later steps, so that other sequences run in
      // between (chunked prefill).
      write(s, *cached, *rc::gen::inRange<std::size_t>(*cached, prompt.size() + 1));
    } else {
      auto it = std::next(seqs.begin(), *rc::gen::inRange<long>(0, static_cast<long>(seqs.size())));
      const SequenceId s = it->first;
      const std::size_t computed = bm.num_computed(s);
      if (op <= 4 && computed < it->second.size()) {  // continue its prefill first
        write(s, computed, *rc::gen::inRange<std::size_t>(computed + 1, it->second.size() + 1));
      } else if (op == 2 || op == 3) {  // decode one token
        const TokenId t = *rc::gen::inRange(2000, 2004);
        const auto copies = bm.append(s, std::vector<TokenId>{t});
        if (!copies) continue;
        for (const BlockCopy& c : *copies) kv[c.to] = kv[c.from];
        it->second.push_back(t);
        write(s, it->second.size() - 1, it->second.size());
      } else if (op == 4) {  // n > 1: fork a computed sequence
        const SequenceId child = next_seq++;
        bm.fork(s, child);
        seqs[child] = it->second;
      } else {  // finish, cancel or preempt
        bm.release(s);
        seqs.erase(it);
      }
    }
    bm.check_invariants();
    const BlockManagerStats st = bm.stats();
    RC_ASSERT(st.free_blocks + st.cached_blocks + st.active_blocks == st.total_blocks);
    // Waste is bounded by one partial block per sequence.
    RC_ASSERT(st.allocated_slots - st.used_slots <= seqs.size() * (block_size - 1));
    // Every computed token of every sequence is where its table says, with the right content.
    for (const auto& [s, toks] : seqs) {
      const auto& table = bm.block_table(s);
      for (std::size_t pos = 0; pos < bm.num_computed(s); ++pos) {
        RC_ASSERT(kv[table[pos / block_size]][pos % block_size] == (Slot{toks[pos], pos}));
      }
    }
  }
  for (const auto& [s, toks] : seqs) bm.release(s);
  bm.check_invariants();
  RC_ASSERT(bm.stats().active_blocks == 0u);
  RC_ASSERT(bm.available_blocks() == num_blocks);
}

}  // namespace
}  // namespace tiergate::engine
