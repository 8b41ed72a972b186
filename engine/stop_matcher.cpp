#include "engine/stop_matcher.h"

#include <algorithm>

namespace tiergate::engine {

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result r;
  held_ += text;
  if (stops_.empty()) {
    r.emit.swap(held_);
    return r;
  }
  // The earliest complete stop string wins.
  std::size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    r.emit = held_.substr(0, first);
    r.stopped = true;
    held_.clear();
    return r;
  }
  // Hold back the longest suffix that is a prefix of some stop string.
  std::size_t hold = 0;
  for (const std::string& s : stops_) {
    for (std::size_t len = std::min(s.size() - 1, held_.size()); len > hold; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  r.emit = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return r;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace tiergate::engine
