// qos/config_reloader.*: reloads from several threads never apply an older parse after a newer one.
#include "qos/config_reloader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

namespace tiergate::qos {
namespace {

using namespace std::chrono_literals;

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
  bool first_inside = false, release_first = false, second_waiting = false;
  int applies = 0;
  std::shared_ptr<const Config> in_force;
  ConfigReloader reloader(path, [&](std::shared_ptr<const Config> config) {
    std::unique_lock lock(m);
    if (applies++ == 0) {  // the first reload stalls between its parse and its apply
      first_inside = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release_first; });
    }
    in_force = std::move(config);
    cv.notify_all();
  });
  reloader.on_wait_for_test([&] {
    std::lock_guard lock(m);
    second_waiting = true;
    cv.notify_all();
  });
  std::thread first([&] { reloader.reload(); });
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return first_inside; })) << "the first reload never applied";
  }
  // The operator writes a newer file and reloads while the first reload is still applying. Either
  // this reload waits for the first (it then parses the newer file and applies it last), or it
  // overtakes it and is overwritten by the older parse: the defect. The first is released only
  // once the second has done one or the other.
  write(path, config_with_quota(2));
  std::thread second([&] { reloader.reload(); });
  {
    std::unique_lock lock(m);
    const bool raced = cv.wait_for(lock, 60s, [&] { return second_waiting || applies > 1; });
    release_first = true;
    cv.notify_all();
    lock.unlock();
    if (!raced) {
      first.join();
      second.join();
      FAIL() << "in 60 s the second reload neither waited for the first nor applied";
    }
  }
  first.join();
  second.join();
  ASSERT_TRUE(in_force);
  EXPECT_EQ(in_force->groups()[0].users[0].quota_pct, 2) << "an older parse was applied after a newer one";
  EXPECT_EQ(applies, 2);
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
