// gateway/reloadable_file.*: when a reload happens, and what it records.
#include "gateway/reloadable_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/temp_file.h"

namespace tiergate::gateway {
namespace {

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

TEST(ReloadableFile, ReloadsOnEveryKindOfChangeAndOnlyThen) {
  const testing::TempFile file("reloadable.json", "one");
  int loads = 0;
  ReloadableFile watched(file.path(), [&] {
    ++loads;
    return std::string();
  });
  EXPECT_FALSE(watched.reload_if_changed());
  write(file.path(), "two");  // same size; another modification time
  std::filesystem::last_write_time(file.path(), std::filesystem::last_write_time(file.path()) + std::chrono::seconds(1));
  EXPECT_EQ(watched.reload_if_changed(), std::optional<std::string>(""));
  EXPECT_FALSE(watched.reload_if_changed());  // a load records what it read
  write(file.path() + ".new", "three");
  std::filesystem::rename(file.path() + ".new", file.path());  // replaced by rename: another inode
  EXPECT_TRUE(watched.reload_if_changed());
  std::filesystem::remove(file.path());
  EXPECT_TRUE(watched.reload_if_changed());
  EXPECT_FALSE(watched.reload_if_changed());
  write(file.path(), "back");
  EXPECT_TRUE(watched.reload_if_changed());
  EXPECT_EQ(loads, 4);
  EXPECT_EQ(watched.reload(), "");  // an explicit reload loads whatever the stamp says
  EXPECT_EQ(loads, 5);
}

TEST(ReloadableFile, KeepsTheLastOutcome) {
  std::string next_problem;
  ReloadableFile file("/nonexistent/qos.json", [&] { return next_problem; });
  EXPECT_TRUE(file.status().ok);
  next_problem = "bad quota";
  EXPECT_EQ(file.reload(), "bad quota");
  next_problem = "worse quota";
  file.reload();
  EXPECT_FALSE(file.status().ok);
  EXPECT_EQ(file.status().error, "worse quota");
  EXPECT_EQ(file.status().failures, 2u);
  next_problem.clear();
  EXPECT_EQ(file.reload(), "");
  EXPECT_TRUE(file.status().ok);
  EXPECT_EQ(file.status().error, "");
  EXPECT_EQ(file.status().reloads, 1u);
}

}  // namespace
}  // namespace tiergate::gateway
