#include "gateway/reloadable_file.h"

#include <sys/stat.h>

namespace tiergate::gateway {

ReloadableFile::ReloadableFile(std::string path) : path_(std::move(path)), seen_(stamp()) {}

ReloadableFile::Stamp ReloadableFile::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return {};
  return {true, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_size), static_cast<std::uint64_t>(st.st_ino)};
}

bool ReloadableFile::changed() {
  const Stamp now = stamp();
  std::lock_guard lock(mutex_);
  if (now == seen_) return false;
  seen_ = now;
  return true;
}

void ReloadableFile::record_success() {
  std::lock_guard lock(mutex_);
  status_.ok = true;
  status_.error.clear();
  ++status_.reloads;
}

void ReloadableFile::record_failure(std::string error) {
  std::lock_guard lock(mutex_);
  status_.ok = false;
  status_.error = std::move(error);
  ++status_.failures;
}

ReloadableFile::Status ReloadableFile::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

}  // namespace tiergate::gateway
