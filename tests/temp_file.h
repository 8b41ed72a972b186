// A scratch file for one test: under GoogleTest's TempDir(), named for the running test, this
// process and a per-process counter, so that tests ctest runs in parallel (and other checkouts'
// runs on the same machine, which share /tmp) never write, truncate or map each other's files.
// Removed when the object goes; a mapping of it stays valid (Linux keeps unlinked files alive).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>

namespace tiergate::testing {

class TempFile {
 public:
  // `suffix` ends the name (e.g. "model.gguf"); `content` is written as is, in binary.
  TempFile(std::string_view suffix, std::string_view content) : path_(unique_path(suffix)) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc).write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }

  // A fresh path (nothing written there) with the same naming, for files a test lets the code create.
  static std::string unique_path(std::string_view suffix) {
    static std::atomic<unsigned> counter{0};
    std::string test = "no_test";
    if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
      test = std::string(info->test_suite_name()) + "." + info->name();
    }
    std::replace(test.begin(), test.end(), '/', '_');  // parameterised names hold slashes
    return ::testing::TempDir() + "tiergate." + test + "." + std::to_string(::getpid()) + "." +
           std::to_string(counter++) + "." + std::string(suffix);
  }

 private:
  std::string path_;
};

}  // namespace tiergate::testing
