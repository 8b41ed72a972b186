#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/cuda/device.h"
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
  std::vector<std::int32_t> host(1000);
  std::iota(host.begin(), host.end(), -500);
  DeviceBuffer buffer(host.size() * sizeof(std::int32_t));
  buffer.upload(host.data(), host.size() * sizeof(std::int32_t));
  std::vector<std::int32_t> back(host.size());
  buffer.download(back.data(), back.size() * sizeof(std::int32_t));
  EXPECT_EQ(back, host);
  buffer.zero();
  buffer.download(back.data(), back.size() * sizeof(std::int32_t));
  EXPECT_EQ(back, std::vector<std::int32_t>(host.size(), 0));
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

TEST(CudaDevice, DescribesTheDevice) {
  TG_REQUIRE_GPU();
  const DeviceInfo info = device_info();
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.sm_count, 0);
  EXPECT_GE(info.major, 8) << "tiergate's CUDA kernels are built for sm_80 and sm_90";
  EXPECT_GT(info.total_memory, info.free_memory / 2);
}

}  // namespace
}  // namespace tiergate::kernels::cuda
