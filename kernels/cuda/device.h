// CUDA device basics shared by every kernel in kernels/cuda: status reporting, availability,
// and RAII owners of device memory and streams. Plain C++ header (no CUDA headers), so the engine
// and tests compile as C++ and only kernels/cuda/*.cu see the toolkit.
//
// Launchers return a Status (the data path never throws); TG_CUDA_CHECK aborts on a broken
// invariant (a failed launch of a kernel we validated is a bug). DeviceBuffer/Stream are movable,
// non-copyable owners; any thread may use them with the device it was created on.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace tiergate::kernels::cuda {

// Outcome of a launcher. ok() or a message naming what was wrong (unsupported shape, CUDA error).
struct Status {
  std::string error;
  bool ok() const { return error.empty(); }
  static Status success() { return {}; }
  static Status failure(std::string message) { return {std::move(message)}; }
};

// Whether a CUDA device is usable here; when not, `why` says why (no driver, no device, ...).
bool device_available(std::string* why = nullptr);

// Device name, SM count and memory; valid only when device_available().
struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int major = 0, minor = 0;
  std::size_t total_memory = 0;
  std::size_t free_memory = 0;
};
DeviceInfo device_info();

// Aborts with file:line and CUDA's message when `code` (a cudaError_t as int) is not success.
void check_cuda(int code, const char* expr, const char* file, int line);
#define TG_CUDA_CHECK(expr) ::tiergate::kernels::cuda::check_cuda(static_cast<int>(expr), #expr, __FILE__, __LINE__)

// Asynchronous copy on `stream` in whichever direction the pointers say (unified addressing).
// Host memory that is not pinned makes it synchronous with respect to the host.
void memcpy_async(void* dst, const void* src, std::size_t bytes, void* stream);

// Owns `bytes` of device memory (cudaMalloc), freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  std::size_t bytes() const { return bytes_; }

  // Every transfer is ordered on `stream` (a cudaStream_t as void*) with the kernels around it:
  // our streams are non-blocking, so a copy on the legacy default stream (plain cudaMemcpy) would
  // not be ordered before a kernel that reads it, nor after one that writes it.
  //
  // Enqueues host → device. Pageable host memory is staged before the call returns, so the host
  // may reuse it at once; pinned memory must stay unchanged until the stream has passed the copy.
  void upload(const void* host, std::size_t bytes, void* stream, std::size_t offset = 0);
  // Device → host after everything enqueued on `stream` so far; returns once `host` holds the data.
  void download(void* host, std::size_t bytes, void* stream, std::size_t offset = 0) const;
  // Enqueues setting every byte to 0.
  void zero(void* stream);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Owns a non-blocking CUDA stream. `handle()` is a cudaStream_t as void*.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&&) = delete;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void* handle() const { return stream_; }
  void synchronize() const;

 private:
  void* stream_ = nullptr;
};

// A CUDA graph captured from the work one thread enqueues on a stream, then replayed with one
// launch (the decode step: hundreds of small kernels at one launch's host cost). begin_capture and
// end_capture bracket the enqueueing; nothing in between may allocate, synchronise or read device
// memory from the host. Owns the instantiated graph.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(Graph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  static void begin_capture(void* stream);
  static Graph end_capture(void* stream);  // aborts when the capture was invalidated
  void launch(void* stream) const;
  explicit operator bool() const { return exec_ != nullptr; }

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace tiergate::kernels::cuda
