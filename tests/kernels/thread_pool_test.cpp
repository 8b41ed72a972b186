// kernels/cpu/thread_pool.h: every item runs exactly once, in contiguous chunks, call after call;
// the chunks are shared out as threads come free, so one slow chunk does not hold back the rest.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace tiergate::kernels::cpu {
namespace {

RC_GTEST_PROP(ThreadPoolProperty, EveryItemRunsExactlyOnceInContiguousChunks, ()) {
  const auto threads = *rc::gen::inRange<std::size_t>(1, 5);
  ThreadPool pool(threads);
  RC_ASSERT(pool.size() == threads);
  const auto sizes = *rc::gen::container<std::vector<std::size_t>>(*rc::gen::inRange<std::size_t>(1, 6),
                                                                    rc::gen::inRange<std::size_t>(0, 3000));
  for (std::size_t n : sizes) {  // several calls on one pool
    std::vector<std::atomic<int>> runs(n);
    std::mutex mutex;
    std::vector<std::pair<std::size_t, std::size_t>> chunks;
    pool.parallel_for(n, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) runs[i].fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(mutex);
      chunks.emplace_back(begin, end);
    });
    for (std::size_t i = 0; i < n; ++i) RC_ASSERT(runs[i].load() == 1);
    for (const auto& [begin, end] : chunks) RC_ASSERT(begin < end && end <= n);
    if (n == 0) RC_ASSERT(chunks.empty());
  }
}

TEST(ThreadPool, WhileOneChunkIsHeldUpTheOtherThreadRunsTheRest) {
  // The chunk holding item 0 blocks until three quarters of the items have run elsewhere. With one
  // fixed half per thread that never happens (the wait gives up after 10 s); with shared chunks
  // the other thread takes everything after the held chunk.
  ThreadPool pool(2);
  for (int round = 0; round < 20; ++round) {
    constexpr std::size_t kItems = 64;
    std::atomic<std::size_t> done{0};
    bool waited_out = true;
    std::size_t done_at_deadline = 0;
    pool.parallel_for(kItems, [&](std::size_t begin, std::size_t end) {
      if (begin != 0) {
        done.fetch_add(end - begin);
        return;
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (done.load() < kItems * 3 / 4) {
        if (std::chrono::steady_clock::now() > deadline) {
          waited_out = false;
          done_at_deadline = done.load();
          break;
        }
      }
      done.fetch_add(end);
    });
    ASSERT_TRUE(waited_out) << "round " << round << ": the other thread stopped at " << done_at_deadline << " of " << kItems
                            << " items while item 0's chunk waited";
    EXPECT_EQ(done.load(), kItems);
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu
