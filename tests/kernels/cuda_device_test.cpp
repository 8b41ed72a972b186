// kernels/cuda/device: availability, buffers, and the ordering of transfers with the kernels of
// the (non-blocking) stream they are enqueued on. The ordering tests hold the stream with a host
// callback that sleeps, so that a copy not ordered on the stream (a plain cudaMemcpy on the
// legacy default stream, which a non-blocking stream does not wait for) runs first and shows.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "kernels/cuda/batch_ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "tests/kernels/gpu_test_support.h"

namespace tiergate::kernels::cuda {
namespace {

TEST(CudaDevice, ReportsAvailabilityWithAReason) {
  std::string why;
  const bool available = device_available(&why);
  EXPECT_EQ(available, why.empty()) << why;
}

TEST(CudaDevice, BufferRoundTripsAndZeroes) {
  TG_REQUIRE_GPU();
  Stream stream;
  std::vector<std::int32_t> host(1000);
  std::iota(host.begin(), host.end(), -500);
  DeviceBuffer buffer(host.size() * sizeof(std::int32_t));
  buffer.upload(host.data(), host.size() * sizeof(std::int32_t), stream.handle());
  std::vector<std::int32_t> back(host.size());
  buffer.download(back.data(), back.size() * sizeof(std::int32_t), stream.handle());
  EXPECT_EQ(back, host);
  buffer.zero(stream.handle());
  buffer.download(back.data(), back.size() * sizeof(std::int32_t), stream.handle());
  EXPECT_EQ(back, std::vector<std::int32_t>(host.size(), 0));
  // Offsets address inside the buffer.
  const std::int32_t seven[2] = {7, 7};
  buffer.upload(seven, sizeof(seven), stream.handle(), 10 * sizeof(std::int32_t));
  std::int32_t got[3] = {};
  buffer.download(got, sizeof(got), stream.handle(), 9 * sizeof(std::int32_t));
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(got[1], 7);
  EXPECT_EQ(got[2], 7);
}

// Enqueues a host callback that holds `stream` for `ms` milliseconds: work enqueued on the
// stream after it starts only after it.
void hold(const Stream& stream, int ms) {
  static int held_ms;
  held_ms = ms;
  ASSERT_EQ(cudaLaunchHostFunc(
                static_cast<cudaStream_t>(stream.handle()),
                [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(held_ms)); }, nullptr),
            cudaSuccess);
}

constexpr std::size_t kFloats = std::size_t{1} << 20;

std::vector<float> download_all(const DeviceBuffer& b, const Stream& stream) {
  std::vector<float> out(kFloats);
  b.download(out.data(), kFloats * sizeof(float), stream.handle());
  return out;
}

TEST(CudaDevice, UploadRunsAfterTheKernelsEnqueuedBeforeIt) {
  TG_REQUIRE_GPU();
  Stream stream;
  DeviceBuffer buffer(kFloats * sizeof(float));
  hold(stream, 200);
  ASSERT_TRUE(fill_constant(buffer.as<float>(), kFloats, 2.0f, stream.handle()).ok());
  const std::vector<float> three(kFloats, 3.0f);
  buffer.upload(three.data(), kFloats * sizeof(float), stream.handle());  // must land after the fill
  EXPECT_EQ(download_all(buffer, stream), three);
}

// A kernel enqueued right after an upload of 64 MiB reads the uploaded values: the copy is
// ordered before it, not merely staged (pageable memory) with its DMA still in flight.
TEST(CudaDevice, KernelsEnqueuedAfterAnUploadReadIt) {
  TG_REQUIRE_GPU();
  Stream stream;
  const std::size_t n = 16 * kFloats;
  DeviceBuffer x(n * sizeof(float)), y(n * sizeof(float));
  ASSERT_TRUE(fill_constant(x.as<float>(), n, 1.0f, stream.handle()).ok());
  ASSERT_TRUE(fill_constant(y.as<float>(), n, 0.0f, stream.handle()).ok());
  std::vector<float> four(n, 4.0f);
  y.upload(four.data(), n * sizeof(float), stream.handle());
  ASSERT_TRUE(add_inplace(x.as<float>(), y.as<float>(), n, stream.handle()).ok());
  std::vector<float> got(n);
  x.download(got.data(), n * sizeof(float), stream.handle());
  EXPECT_EQ(got, std::vector<float>(n, 5.0f));
}

TEST(CudaDevice, DownloadAndZeroWaitForTheStream) {
  TG_REQUIRE_GPU();
  Stream stream;
  DeviceBuffer buffer(kFloats * sizeof(float));
  hold(stream, 200);
  ASSERT_TRUE(fill_constant(buffer.as<float>(), kFloats, 6.0f, stream.handle()).ok());
  EXPECT_EQ(download_all(buffer, stream), std::vector<float>(kFloats, 6.0f));  // not what was there before
  hold(stream, 200);
  ASSERT_TRUE(fill_constant(buffer.as<float>(), kFloats, 7.0f, stream.handle()).ok());
  buffer.zero(stream.handle());  // after the fill, not before it
  EXPECT_EQ(download_all(buffer, stream), std::vector<float>(kFloats, 0.0f));
}

TEST(CudaDevice, BufferMovesOwnership) {
  TG_REQUIRE_GPU();
  DeviceBuffer a(256);
  void* p = a.get();
  DeviceBuffer b(std::move(a));
  EXPECT_EQ(b.get(), p);
  EXPECT_EQ(a.get(), nullptr);
  EXPECT_EQ(b.bytes(), 256u);
}

// The executor sizes its KV pool from device_info().free_memory: it must be what is really left,
// so an allocation shows in it (this test assumes no other process frees memory meanwhile).
TEST(CudaDevice, FreeMemoryAccountsForOurAllocations) {
  TG_REQUIRE_GPU();
  const DeviceInfo info = device_info();
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.sm_count, 0);
  EXPECT_GE(info.major, 8) << "tiergate's CUDA kernels are built for sm_80 and sm_90";
  ASSERT_GT(info.free_memory, 0u);
  ASSERT_LE(info.free_memory, info.total_memory);
  const std::size_t bytes = std::size_t{256} << 20;
  ASSERT_GT(info.free_memory, 2 * bytes) << "too little free device memory for this test";
  std::size_t free_with = 0;
  {
    DeviceBuffer held(bytes);
    free_with = device_info().free_memory;
    EXPECT_LE(free_with + bytes, info.free_memory) << "a 256 MiB buffer does not show in free memory";
  }
  EXPECT_GE(device_info().free_memory, free_with + bytes) << "freeing a 256 MiB buffer does not show";
}

}  // namespace
}  // namespace tiergate::kernels::cuda
