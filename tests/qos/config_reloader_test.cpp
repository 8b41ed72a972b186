// qos/config_reloader.*: reloads from several threads never apply an older parse after a newer one.
#include "qos/config_reloader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <thread>

namespace tiergate::qos {
namespace {

std::string config_with_quota(int quota) {
  return R"({"enable_user_qos": true, "user_groups": ["G"], "user_group_map": {"G": [{"id": "u", "quota_pct": )" +
         std::to_string(quota) + "}]}}";
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

TEST(ConfigReloader, AnOlderParseIsNeverAppliedAfterANewerOne) {
  const std::string path = ::testing::TempDir() + "reloader_" + std::to_string(::getpid()) + ".json";
  write(path, config_with_quota(1));
  std::mutex m;
  std::condition_variable cv;
  bool first_inside = false, release_first = false;
  std::atomic<int> applies{0};
  std::shared_ptr<const Config> in_force;
  ConfigReloader reloader(path, [&](std::shared_ptr<const Config> config) {
    if (applies++ == 0) {  // the first reload stalls between its parse and its apply
      std::unique_lock lock(m);
      first_inside = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release_first; });
    }
    std::lock_guard lock(m);
    in_force = std::move(config);
  });
  std::thread first([&] { reloader.reload(); });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return first_inside; });
  }
  // The operator writes a newer file and reloads while the first reload is still applying. Either
  // this reload waits for the first (it then parses the newer file and applies it last), or it
  // would overtake it and be overwritten by the older parse: the defect.
  write(path, config_with_quota(2));
  std::thread second([&] { reloader.reload(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // room for an overtaking reload
  {
    std::lock_guard lock(m);
    release_first = true;
  }
  cv.notify_all();
  first.join();
  second.join();
  ASSERT_TRUE(in_force);
  EXPECT_EQ(in_force->groups()[0].users[0].quota_pct, 2);
  std::remove(path.c_str());
}

TEST(ConfigReloader, ABadFileChangesNothingAndSaysWhere) {
  const std::string path = ::testing::TempDir() + "reloader_bad_" + std::to_string(::getpid()) + ".json";
  write(path, config_with_quota(1));
  int applied = 0;
  ConfigReloader reloader(path, [&](std::shared_ptr<const Config>) { ++applied; });
  EXPECT_EQ(reloader.reload(), "");
  write(path, config_with_quota(-1));
  const std::string error = reloader.reload();
  EXPECT_NE(error.find(path), std::string::npos);
  EXPECT_NE(error.find("quota_pct"), std::string::npos);
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(reloader.last_error(), error);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tiergate::qos
