// Finds stop strings in streamed text across token boundaries and decides what may be emitted:
// text that could still turn out to be the start of a stop string is held back, and a stop string
// itself is never emitted. One per sequence; engine-thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tiergate::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  struct Result {
    std::string emit;      // safe to send now
    bool stopped = false;  // a stop string was found; nothing after it may be sent
  };
  Result push(std::string_view text);
  // At the end of generation: whatever was held back (no stop string can complete any more).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace tiergate::engine
