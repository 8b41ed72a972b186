#include "kernels/cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tiergate::kernels::cpu {
namespace {

void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

constexpr int kSpinsBeforeSleep = 1 << 16;
constexpr std::size_t kChunksPerThread = 4;  // enough to even out a late thread, few enough to stay cheap

}  // namespace

ThreadPool::ThreadPool(std::size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) {
  if (workers_.empty() || n < 2) {
    if (n > 0) fn(0, n);
    return;
  }
  job_ = &fn;
  job_size_ = n;
  job_grain_ = std::max<std::size_t>(1, n / (size() * kChunksPerThread));
  next_.store(0, std::memory_order_relaxed);
  pending_.store(workers_.size(), std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks();
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void ThreadPool::run_chunks() {
  for (;;) {
    const std::size_t begin = next_.fetch_add(job_grain_, std::memory_order_relaxed);
    if (begin >= job_size_) return;
    (*job_)(begin, std::min(job_size_, begin + job_grain_));
  }
}

void ThreadPool::worker() {
  std::uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed)) {
      if (++spins < kSpinsBeforeSleep) {
        cpu_relax();
        continue;
      }
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(); });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunks();
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace tiergate::kernels::cpu
