#include "kernels/cuda/device.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace tiergate::kernels::cuda {

void check_cuda(int code, const char* expr, const char* file, int line) {
  if (code == cudaSuccess) return;
  std::fprintf(stderr, "%s:%d: CUDA call failed: %s: %s\n", file, line, expr,
               cudaGetErrorString(static_cast<cudaError_t>(code)));
  std::abort();
}

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why) *why = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device on this machine";
    return false;
  }
  return true;
}

DeviceInfo device_info() {
  DeviceInfo info;
  int device = 0;
  TG_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  TG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.major = prop.major;
  info.minor = prop.minor;
  TG_CUDA_CHECK(cudaMemGetInfo(&info.free_memory, &info.total_memory));
  return info;
}

void memcpy_async(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)));
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) TG_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes, void* stream, std::size_t offset) {
  if (offset + bytes > bytes_) check_cuda(cudaErrorInvalidValue, "upload past end", __FILE__, __LINE__);
  if (bytes == 0) return;
  TG_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(ptr_) + offset, host, bytes, cudaMemcpyHostToDevice,
                                static_cast<cudaStream_t>(stream)));
}

void DeviceBuffer::download(void* host, std::size_t bytes, void* stream, std::size_t offset) const {
  if (offset + bytes > bytes_) check_cuda(cudaErrorInvalidValue, "download past end", __FILE__, __LINE__);
  if (bytes == 0) return;
  TG_CUDA_CHECK(cudaMemcpyAsync(host, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost,
                                static_cast<cudaStream_t>(stream)));
  TG_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void DeviceBuffer::zero(void* stream) {
  if (ptr_) TG_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, bytes_, static_cast<cudaStream_t>(stream)));
}

Stream::Stream() {
  cudaStream_t s = nullptr;
  TG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void Stream::synchronize() const {
  TG_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
}

Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void Graph::begin_capture(void* stream) {
  TG_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
}

Graph Graph::end_capture(void* stream) {
  cudaGraph_t graph = nullptr;
  TG_CUDA_CHECK(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph));
  cudaGraphExec_t exec = nullptr;
  TG_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  TG_CUDA_CHECK(cudaGraphDestroy(graph));
  Graph g;
  g.exec_ = exec;
  return g;
}

void Graph::launch(void* stream) const {
  TG_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream)));
}

}  // namespace tiergate::kernels::cuda
