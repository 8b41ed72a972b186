// Re-reads the QoS config file and hands each good parse to the admission queue (or whoever
// `apply` feeds). Reloads come from SIGHUP, the admin route and the file watcher on different
// threads; they are serialised, parse and apply together, so the config in force is always the
// file's latest good content: an older parse can never be applied after a newer one. A bad file
// changes nothing and its errors are returned. Thread-safe.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "qos/config.h"

namespace tiergate::qos {

class ConfigReloader {
 public:
  using Apply = std::function<void(std::shared_ptr<const Config>)>;
  ConfigReloader(std::string path, Apply apply);

  // Reads and applies the file; returns "" or the errors (file, JSON path, fix), in which case the
  // config in force stays.
  std::string reload();
  // Reloads when the file's modification time changed since the last look; returns what reload()
  // returned then, nullopt when the file had not changed.
  std::optional<std::string> reload_if_changed();
  const std::string& path() const { return path_; }
  std::string last_error() const;  // of the latest reload ("" after a good one)

  // Tests: runs on a reload's thread when it finds another reload under way, just before it waits
  // for it; without it a test cannot know that a second reload really queued behind the first.
  // Set before any reload starts.
  void on_wait_for_test(std::function<void()> hook) { on_wait_ = std::move(hook); }

 private:
  const std::string path_;
  Apply apply_;
  mutable std::mutex mutex_;
  std::filesystem::file_time_type mtime_{};
  std::string last_error_;
  std::function<void()> on_wait_;
};

}  // namespace tiergate::qos
