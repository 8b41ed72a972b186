// gateway/qos_check_command.*: exit codes and output of `tiergate qos check FILE`.
#include "gateway/qos_check_command.h"

#include <gtest/gtest.h>

#include <sstream>

#include "tests/temp_file.h"

namespace tiergate::gateway {
namespace {

struct CheckRun {
  int code;
  std::string out, err;
};

CheckRun check(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = run_qos_check(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(QosCheckCommand, GoodFilePrintsSummaryAndExitsZero) {
  const CheckRun r = check({TIERGATE_SOURCE_DIR "/config/qos_config.json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(": OK"), std::string::npos);
  EXPECT_NE(r.out.find("[4] Bronze"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty());
}

TEST(QosCheckCommand, BadFileListsEveryProblemAndExitsOne) {
  const testing::TempFile file("qos_config.json", R"({"enable_user_qos": true, "user_groups": ["A", "B"],
      "user_group_map": {"A": [{"id": "x", "quota_pct": -3}], "B": [{"id": "x", "quota_pct": 1}]}})");
  const std::string& path = file.path();
  const CheckRun r = check({path});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find(path + ": $.user_group_map.A[0].quota_pct: must be a non-negative number"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ": $.user_group_map.B[0].id: user \"x\" is already listed"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 problems"), std::string::npos) << r.err;
}

TEST(QosCheckCommand, UsageErrorExitsTwo) {
  EXPECT_EQ(check({}).code, 2);
  EXPECT_EQ(check({"a", "b"}).code, 2);
}

}  // namespace
}  // namespace tiergate::gateway
