// tools/qos_sim/workload.*: JSONL parsing and its errors.
#include "tools/qos_sim/workload.h"

#include <gtest/gtest.h>

namespace tiergate::qos_sim {
namespace {

TEST(Workload, ParsesAndSortsByArrival) {
  const auto requests = parse_workload(
      "{\"t\": 2, \"user\": \"b\", \"prompt\": 5, \"output\": 6}\n\n"
      "{\"t\": 1.5, \"user\": \"a\", \"prompt\": 3, \"output\": 4}\n", "w.jsonl");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].user, "a");
  EXPECT_EQ(requests[0].id, 2u);
  EXPECT_DOUBLE_EQ(requests[0].arrival_s, 1.5);
  EXPECT_EQ(requests[1].prompt_tokens, 5);
  EXPECT_EQ(requests[1].output_tokens, 6);
}

TEST(Workload, BadLinesNameTheLineAndField) {
  auto error_of = [](const std::string& text) {
    try {
      parse_workload(text, "w.jsonl");
    } catch (const WorkloadError& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT_EQ(error_of("{\"t\": 0, \"user\": \"a\", \"prompt\": 1, \"output\": 1}\nnope\n"),
            "w.jsonl:2: not a JSON object");
  EXPECT_EQ(error_of("{\"t\": 0, \"user\": \"a\", \"prompt\": 0, \"output\": 1}"),
            "w.jsonl:1: \"prompt\" must be a positive integer");
  EXPECT_EQ(error_of("{\"t\": -1, \"user\": \"a\", \"prompt\": 1, \"output\": 1}"),
            "w.jsonl:1: \"t\" must be a non-negative number of seconds");
  EXPECT_EQ(error_of("{\"t\": 0, \"user\": 3, \"prompt\": 1, \"output\": 1}"),
            "w.jsonl:1: \"user\" must be a non-empty string");
}

TEST(Workload, ShippedSamplesLoad) {
  for (const char* name : {"bronze_flood", "gold_lengths", "silver_unknowns"}) {
    const auto requests = load_workload(std::string(TIERGATE_SOURCE_DIR "/tools/workloads/") + name + ".jsonl");
    EXPECT_GT(requests.size(), 500u) << name;
  }
}

}  // namespace
}  // namespace tiergate::qos_sim
