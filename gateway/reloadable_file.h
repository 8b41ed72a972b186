// A file the running server re-reads (the QoS config, the API keys): on SIGHUP, on an admin route
// and when it changes on disk. Remembers what the file looked like at the last look (modification
// time, size, inode) and the outcome of the last reload, for /admin/qos and /metrics. A reload's
// parse and swap run under reload_mutex(), so two reloads racing (signal, poll, admin route) can
// never apply an older parse after a newer one. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace tiergate::gateway {

class ReloadableFile {
 public:
  struct Status {
    bool ok = true;           // the last attempt was accepted (or none was made)
    std::string error;        // the last rejection's message, kept until a good reload
    std::uint64_t reloads = 0;    // accepted reloads since start
    std::uint64_t failures = 0;   // rejected reloads since start
  };

  explicit ReloadableFile(std::string path);

  const std::string& path() const { return path_; }
  // True when the file differs from the last look (which it records). A missing file counts as a
  // state of its own, so deleting it and writing it back are both noticed.
  bool changed();
  void record_success();
  void record_failure(std::string error);
  Status status() const;
  std::mutex& reload_mutex() { return reload_mutex_; }

 private:
  struct Stamp {
    bool exists = false;
    std::int64_t mtime_ns = 0;
    std::int64_t size = 0;
    std::uint64_t inode = 0;
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp() const;

  const std::string path_;
  std::mutex reload_mutex_;
  mutable std::mutex mutex_;
  Stamp seen_;
  Status status_;
};

}  // namespace tiergate::gateway
