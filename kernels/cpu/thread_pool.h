// A fixed pool of worker threads for data-parallel kernels: parallel_for runs fn over [0, n) in
// contiguous chunks, which the caller and the workers take in turn from a shared counter, and
// returns when all are done. A thread that runs late (another process on its core) or draws
// costlier items (attention over later prompt positions) simply takes fewer chunks.
// Workers spin briefly between jobs, because a decode step issues hundreds of small kernels and a
// sleep/wake per kernel would cost more than the kernel. Owned by one executor; parallel_for must
// not be called concurrently or re-entrantly.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tiergate::kernels::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t threads);  // total threads, the caller included; 0 = all cores
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  std::size_t size() const { return workers_.size() + 1; }
  void parallel_for(std::size_t n, const std::function<void(std::size_t begin, std::size_t end)>& fn);

 private:
  void worker();
  void run_chunks();

  std::vector<std::thread> workers_;
  const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
  std::size_t job_size_ = 0, job_grain_ = 1;
  std::atomic<std::size_t> next_{0};  // the first item no thread has taken yet
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace tiergate::kernels::cpu
