// A file the running server re-reads (the QoS config, the API keys) on SIGHUP, on an admin route
// and when it changes on disk. It decides when and keeps the outcome; `load` does the reading and
// applying and returns "" or the errors (file, place, fix), in which case what is in force stays.
// Reloads are serialised (signal, poll and admin route run on different threads), so an older
// read can never be applied after a newer one. The outcome of the last attempt and the counts feed
// /admin/qos and /metrics. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace tiergate::gateway {

class ReloadableFile {
 public:
  using Load = std::function<std::string()>;
  struct Status {
    bool ok = true;               // the last attempt was accepted (or none was made)
    std::string error;            // the last rejection's message, kept until a good reload
    std::uint64_t reloads = 0;    // accepted reloads since start
    std::uint64_t failures = 0;   // rejected reloads since start
  };

  ReloadableFile(std::string path, Load load);

  const std::string& path() const { return path_; }
  // Loads now; returns load's errors ("" when accepted).
  std::string reload();
  // Loads when the file differs from the last look (modification time, size, inode; a missing file
  // is a state of its own, so deleting it and writing it back are both noticed); nullopt otherwise.
  std::optional<std::string> reload_if_changed();
  Status status() const;

 private:
  struct Stamp {
    bool exists = false;
    std::int64_t mtime_ns = 0;
    std::int64_t size = 0;
    std::uint64_t inode = 0;
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp() const;
  std::string reload_locked();  // reload_mutex_ held

  const std::string path_;
  const Load load_;
  std::mutex reload_mutex_;  // one reload at a time
  mutable std::mutex mutex_;  // seen_ and status_
  Stamp seen_;
  Status status_;
};

}  // namespace tiergate::gateway
