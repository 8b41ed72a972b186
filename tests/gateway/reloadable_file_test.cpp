#include "gateway/reloadable_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tiergate::gateway {
namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

TEST(ReloadableFile, NoticesEveryKindOfChange) {
  const std::string path = ::testing::TempDir() + "reloadable_" + std::to_string(::getpid()) + ".json";
  write(path, "one");
  ReloadableFile file(path);
  EXPECT_FALSE(file.changed());
  write(path, "two");  // same size; a different modification time (nanoseconds)
  std::filesystem::last_write_time(path, std::filesystem::last_write_time(path) + std::chrono::seconds(1));
  EXPECT_TRUE(file.changed());
  EXPECT_FALSE(file.changed());  // a look records what it saw
  write(path + ".new", "three");
  std::filesystem::rename(path + ".new", path);  // replaced by rename: another inode
  EXPECT_TRUE(file.changed());
  std::filesystem::remove(path);
  EXPECT_TRUE(file.changed());
  EXPECT_FALSE(file.changed());
  write(path, "back");
  EXPECT_TRUE(file.changed());
  std::filesystem::remove(path);
}

TEST(ReloadableFile, KeepsTheLastOutcome) {
  ReloadableFile file("/nonexistent/qos.json");
  EXPECT_TRUE(file.status().ok);
  file.record_failure("bad quota");
  file.record_failure("worse quota");
  EXPECT_FALSE(file.status().ok);
  EXPECT_EQ(file.status().error, "worse quota");
  EXPECT_EQ(file.status().failures, 2u);
  file.record_success();
  EXPECT_TRUE(file.status().ok);
  EXPECT_EQ(file.status().error, "");
  EXPECT_EQ(file.status().reloads, 1u);
}

}  // namespace
}  // namespace tiergate::gateway
