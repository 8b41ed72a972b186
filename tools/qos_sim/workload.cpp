#include "tools/qos_sim/workload.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace tiergate::qos_sim {

std::vector<SimRequest> parse_workload(std::string_view jsonl, std::string_view name) {
  std::vector<SimRequest> requests;
  simdjson::dom::parser parser;
  std::size_t line_number = 0;
  std::size_t start = 0;
  while (start < jsonl.size()) {
    std::size_t end = jsonl.find('\n', start);
    if (end == std::string_view::npos) end = jsonl.size();
    const std::string_view line = jsonl.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto fail = [&](const std::string& why) {
      throw WorkloadError(std::string(name) + ":" + std::to_string(line_number) + ": " + why);
    };
    simdjson::dom::object object;
    if (parser.parse(simdjson::padded_string(line)).get_object().get(object) != simdjson::SUCCESS) {
      fail("not a JSON object");
    }
    SimRequest request;
    request.id = requests.size() + 1;
    double t = 0;
    std::string_view user;
    std::int64_t prompt = 0, output = 0;
    if (object["t"].get_double().get(t) != simdjson::SUCCESS || !std::isfinite(t) || t < 0) {
      fail("\"t\" must be a non-negative number of seconds");
    }
    if (object["user"].get_string().get(user) != simdjson::SUCCESS || user.empty()) {
      fail("\"user\" must be a non-empty string");
    }
    if (object["prompt"].get_int64().get(prompt) != simdjson::SUCCESS || prompt < 1) {
      fail("\"prompt\" must be a positive integer");
    }
    if (object["output"].get_int64().get(output) != simdjson::SUCCESS || output < 1) {
      fail("\"output\" must be a positive integer");
    }
    request.arrival_s = t;
    request.user = std::string(user);
    request.prompt_tokens = prompt;
    request.output_tokens = output;
    requests.push_back(std::move(request));
  }
  std::stable_sort(requests.begin(), requests.end(),
                   [](const SimRequest& a, const SimRequest& b) { return a.arrival_s < b.arrival_s; });
  return requests;
}

std::vector<SimRequest> load_workload(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WorkloadError(path + ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_workload(text.str(), path);
}

}  // namespace tiergate::qos_sim
