// A replayable workload: one request per JSONL line,
//   {"t": 0.25, "user": "user_id4", "prompt": 512, "output": 128}
// (arrival time in seconds, user id, prompt tokens, generated tokens). Parsing reports the line
// and field of the first bad line.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tiergate::qos_sim {

struct SimRequest {
  std::uint64_t id = 0;  // 1-based line order
  double arrival_s = 0;
  std::string user;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
};

class WorkloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Requests sorted by arrival (stable: equal times keep file order). Throws WorkloadError.
std::vector<SimRequest> parse_workload(std::string_view jsonl, std::string_view name);
std::vector<SimRequest> load_workload(const std::string& path);

}  // namespace tiergate::qos_sim
