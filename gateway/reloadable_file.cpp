#include "gateway/reloadable_file.h"

#include <sys/stat.h>

namespace tiergate::gateway {

ReloadableFile::ReloadableFile(std::string path, Load load)
    : path_(std::move(path)), load_(std::move(load)), seen_(stamp()) {}

ReloadableFile::Stamp ReloadableFile::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return {};
  return {true, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_size), static_cast<std::uint64_t>(st.st_ino)};
}

std::string ReloadableFile::reload() {
  std::lock_guard serial(reload_mutex_);
  return reload_locked();
}

std::optional<std::string> ReloadableFile::reload_if_changed() {
  std::lock_guard serial(reload_mutex_);
  const Stamp now = stamp();
  {
    std::lock_guard lock(mutex_);
    if (now == seen_) return std::nullopt;
  }
  return reload_locked();
}

std::string ReloadableFile::reload_locked() {
  const Stamp before = stamp();  // what is read below, or older: a write during the load is seen next time
  std::string problems = load_();
  std::lock_guard lock(mutex_);
  seen_ = before;
  if (problems.empty()) {
    status_.ok = true;
    status_.error.clear();
    ++status_.reloads;
  } else {
    status_.ok = false;
    status_.error = problems;
    ++status_.failures;
  }
  return problems;
}

ReloadableFile::Status ReloadableFile::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

}  // namespace tiergate::gateway
