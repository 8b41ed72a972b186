#include "qos/config_reloader.h"

#include "qos/config_parser.h"

namespace tiergate::qos {

ConfigReloader::ConfigReloader(std::string path, Apply apply) : path_(std::move(path)), apply_(std::move(apply)) {
  std::error_code ec;
  mtime_ = std::filesystem::last_write_time(path_, ec);
}

std::string ConfigReloader::reload() {
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    if (on_wait_) on_wait_();
    lock.lock();
  }
  std::error_code ec;
  mtime_ = std::filesystem::last_write_time(path_, ec);
  ConfigParseResult parsed = load_config_file(path_);
  last_error_ = parsed.ok() ? "" : parsed.describe();
  if (parsed.ok()) apply_(parsed.config);
  return last_error_;
}

std::optional<std::string> ConfigReloader::reload_if_changed() {
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(path_, ec);
  {
    std::lock_guard lock(mutex_);
    if (ec || mtime == mtime_) return std::nullopt;
  }
  return reload();
}

std::string ConfigReloader::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

}  // namespace tiergate::qos
