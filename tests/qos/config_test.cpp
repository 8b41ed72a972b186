// qos/config.* and qos/config_parser.*: the LMDeploy format as-is, extensions, resolution rules and
// every class of error the parser must name.
#include <gtest/gtest.h>

#include <fstream>

#include "qos/config.h"
#include "qos/config_parser.h"
#include "qos/config_summary.h"
#include "qos/config_writer.h"

namespace tiergate::qos {
namespace {

constexpr const char* kLmdeployTemplate = R"({
  "enable_user_qos": true,
  "user_groups": ["Platinum", "Gold", "Silver", "Bronze"],
  "user_group_map": {
    "Platinum": [{"id": "user_id0", "quota_pct": 100}, {"id": "default", "quota_pct": 0}],
    "Gold": [{"id": "user_id1", "quota_pct": 50}, {"id": "user_id2", "quota_pct": 50}],
    "Silver": [{"id": "user_id3", "quota_pct": 5}, {"id": "default", "quota_pct": 95}],
    "Bronze": [{"id": "user_id4", "quota_pct": 30}, {"id": "user_id5", "quota_pct": 30},
               {"id": "user_id6", "quota_pct": 40}, {"id": "default", "quota_pct": 0}]
  }
})";

ConfigParseResult parse(std::string_view text) { return parse_config(text, "qos_config.json"); }

// The single error a bad file produced, or a failure naming what was produced instead.
ConfigError only_error(std::string_view text) {
  ConfigParseResult result = parse(text);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.config, nullptr);
  EXPECT_EQ(result.errors.size(), 1u) << result.describe();
  return result.errors.empty() ? ConfigError{} : result.errors.front();
}

TEST(ConfigParser, AcceptsLmdeployTemplateAsIs) {
  ConfigParseResult result = parse(kLmdeployTemplate);
  ASSERT_TRUE(result.ok()) << result.describe();
  const Config& config = *result.config;
  EXPECT_TRUE(config.enable_user_qos());
  ASSERT_EQ(config.groups().size(), 4u);
  EXPECT_EQ(config.groups()[0].name, "Platinum");
  EXPECT_EQ(config.groups()[3].users.size(), 4u);
  EXPECT_EQ(config.weights(), TokenWeights{});
}

TEST(ConfigParser, AcceptsLmdeployIntegerEnableFlag) {
  std::string text = kLmdeployTemplate;
  text.replace(text.find("true"), 4, "1");
  ConfigParseResult result = parse(text);
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_TRUE(result.config->enable_user_qos());
}

TEST(ConfigParser, ShippedFilesAreValid) {
  for (const char* name : {"qos_config.json", "qos_config.json.template"}) {
    ConfigParseResult result = load_config_file(std::string(TIERGATE_SOURCE_DIR "/config/") + name);
    EXPECT_TRUE(result.ok()) << result.describe();
  }
}

TEST(ConfigResolution, KnownUsersGetTheirGroupAndNormalisedShare) {
  auto config = parse(kLmdeployTemplate).config;
  ASSERT_TRUE(config);
  auto gold = config->resolve("user_id1");
  ASSERT_TRUE(gold);
  EXPECT_EQ(gold->group, 1u);
  EXPECT_FALSE(gold->unknown);
  EXPECT_DOUBLE_EQ(gold->share, 0.5);
  auto bronze = config->resolve("user_id6");
  ASSERT_TRUE(bronze);
  EXPECT_EQ(bronze->group, 3u);
  EXPECT_DOUBLE_EQ(bronze->share, 0.4);
}

TEST(ConfigResolution, UnknownUsersGoToLowestGroupWithPositiveDefault) {
  auto config = parse(kLmdeployTemplate).config;
  ASSERT_TRUE(config);
  // Bronze's default has quota 0, Silver's 95: Silver takes unknown users.
  auto unknown = config->resolve("somebody_else");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->group, 2u);
  EXPECT_TRUE(unknown->unknown);
  EXPECT_DOUBLE_EQ(unknown->share, 0.95);
  // The literal id "default" is not a way into the default entry's share under another name.
  auto literal = config->resolve("default");
  ASSERT_TRUE(literal);
  EXPECT_TRUE(literal->unknown);
}

TEST(ConfigResolution, DefaultGroupExtensionWins) {
  std::string text = kLmdeployTemplate;
  text.insert(text.rfind('}'), ", \"default_group\": \"Bronze\"");
  auto config = parse(text).config;
  ASSERT_TRUE(config);
  auto unknown = config->resolve("stranger");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->group, 3u);
  EXPECT_DOUBLE_EQ(unknown->share, 0.0);  // Bronze's default is a scavenger entry
}

TEST(ConfigResolution, UnknownUsersRefusedWhenNoGroupTakesThem) {
  auto config = parse(R"({"enable_user_qos": true, "user_groups": ["A"],
                          "user_group_map": {"A": [{"id": "u", "quota_pct": 1}]}})").config;
  ASSERT_TRUE(config);
  EXPECT_FALSE(config->resolve("stranger"));
  EXPECT_FALSE(config->unknown_user_group());
}

TEST(ConfigResolution, DisabledQosPutsEveryoneInOneQueue) {
  auto config = parse(R"({"enable_user_qos": false})").config;
  ASSERT_TRUE(config);
  auto any = config->resolve("anyone");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->group, 0u);
}

TEST(ConfigResolution, AllZeroQuotasMakeEveryoneAScavenger) {
  auto config = parse(R"({"enable_user_qos": true, "user_groups": ["A"],
      "user_group_map": {"A": [{"id": "u", "quota_pct": 0}, {"id": "v", "quota_pct": 0}]}})").config;
  ASSERT_TRUE(config);
  EXPECT_DOUBLE_EQ(config->resolve("u")->share, 0.0);
}

TEST(ConfigErrors, DuplicateUserAcrossGroupsNamesBothPlaces) {
  std::string text = kLmdeployTemplate;
  text.replace(text.find("user_id4"), 8, "user_id1");
  ConfigError e = only_error(text);
  EXPECT_EQ(e.path, "$.user_group_map.Bronze[0].id");
  EXPECT_NE(e.message.find("$.user_group_map.Gold[0].id"), std::string::npos) << e.message;
}

TEST(ConfigErrors, GroupInMapButNotInUserGroups) {
  std::string text = kLmdeployTemplate;
  text.replace(text.find("\"Bronze\"]"), 9, "\"Brnze\"]");
  ConfigParseResult result = parse(text);
  ASSERT_EQ(result.errors.size(), 2u) << result.describe();
  EXPECT_EQ(result.errors[0].path, "$.user_group_map.Bronze");
  EXPECT_NE(result.errors[1].message.find("\"Brnze\""), std::string::npos);
}

TEST(ConfigErrors, NegativeAndNonNumericQuotas) {
  std::string negative = kLmdeployTemplate;
  negative.replace(negative.find("\"quota_pct\": 5}"), 15, "\"quota_pct\": -5}");
  EXPECT_EQ(only_error(negative).path, "$.user_group_map.Silver[0].quota_pct");

  std::string text = kLmdeployTemplate;
  text.replace(text.find("\"quota_pct\": 5}"), 15, "\"quota_pct\": \"5\"}");
  ConfigError e = only_error(text);
  EXPECT_EQ(e.path, "$.user_group_map.Silver[0].quota_pct");
  EXPECT_NE(e.message.find("\"5\""), std::string::npos) << e.message;
}

TEST(ConfigErrors, UnknownTopLevelKeySuggestsTheIntendedOne) {
  std::string text = kLmdeployTemplate;
  text.replace(text.find("enable_user_qos"), 15, "enable_user_qo");
  ConfigParseResult result = parse(text);
  ASSERT_FALSE(result.ok());
  // A typo must never silently disable QoS: both the unknown key and the missing one are named.
  ASSERT_EQ(result.errors.size(), 2u) << result.describe();
  EXPECT_NE(result.describe().find("did you mean \"enable_user_qos\""), std::string::npos);
}

TEST(ConfigErrors, InvalidUtf8IsLocated) {
  std::string text = kLmdeployTemplate;
  text.replace(text.find("user_id3"), 8, "user\xC3\x28id3");
  ConfigError e = only_error(text);
  EXPECT_NE(e.message.find("invalid UTF-8 at line 7, column 28"), std::string::npos) << e.message;
}

TEST(ConfigErrors, TrailingGarbageAndBrokenJson) {
  EXPECT_NE(only_error(std::string(kLmdeployTemplate) + " x").message.find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(only_error(std::string(kLmdeployTemplate) + "{}").message.find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(only_error("{\"enable_user_qos\": true,").message.find("not valid JSON"),
            std::string::npos);
  EXPECT_EQ(only_error("   ").message, "the file is empty");
  EXPECT_EQ(only_error("[1, 2]").path, "$");
}

TEST(ConfigErrors, DuplicateKeysAndEntryTypos) {
  EXPECT_EQ(only_error(R"({"enable_user_qos": false, "enable_user_qos": true})").path,
            "$.enable_user_qos");
  ConfigError e = only_error(R"({"enable_user_qos": true, "user_groups": ["A"],
      "user_group_map": {"A": [{"id": "u", "quota_pct": 1, "qouta_pct": 2}]}})");
  EXPECT_EQ(e.path, "$.user_group_map.A[0].qouta_pct");
}

TEST(ConfigErrors, EveryProblemIsReportedNotJustTheFirst) {
  ConfigParseResult result = parse(R"({"enable_user_qos": "yes", "user_groups": ["A", "A", 3],
      "user_group_map": {"A": [{"id": "", "quota_pct": -1}], "B": []},
      "token_weights": {"input": 0, "output": 0},
      "group_limits": {"A": {"max_queued": 0, "max_queue_wait_s": -1}}})");
  ASSERT_FALSE(result.ok());
  EXPECT_GE(result.errors.size(), 9u) << result.describe();
  for (const ConfigError& error : result.errors) {
    EXPECT_EQ(error.path.rfind("$", 0), 0u);
    EXPECT_FALSE(error.message.empty());
    EXPECT_FALSE(error.fix.empty());
  }
  EXPECT_EQ(result.describe().rfind("qos_config.json: $", 0), 0u);
}

TEST(ConfigErrors, MissingFileIsAnErrorNotAThrow) {
  ConfigParseResult result = load_config_file("/nonexistent/qos_config.json");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.describe().find("/nonexistent/qos_config.json: $: cannot open"), std::string::npos);
  EXPECT_THROW(load_config_or_throw("/nonexistent/qos_config.json"), ConfigLoadError);
}

TEST(ConfigExtensions, WeightsAndLimitsRoundTrip) {
  std::string text = R"({"enable_user_qos": true, "user_groups": ["Hi", "Lo"],
      "user_group_map": {"Hi": [{"id": "a", "quota_pct": 1}], "Lo": [{"id": "default", "quota_pct": 3}]},
      "default_group": "Lo", "token_weights": {"input": 0.5, "output": 4},
      "group_limits": {"Lo": {"max_queued": 10, "max_queue_wait_s": 2.5, "retry_after_s": 3},
                       "Hi": {"lower_groups_step_tokens": 64}}})";
  ConfigParseResult first = parse(text);
  ASSERT_TRUE(first.ok()) << first.describe();
  EXPECT_EQ(first.config->groups()[1].limits.max_queued, 10u);
  EXPECT_EQ(first.config->groups()[0].limits.lower_groups_step_tokens, 64);
  EXPECT_EQ(first.config->groups()[1].limits.lower_groups_step_tokens, 0);  // the default: lower groups pause
  EXPECT_DOUBLE_EQ(*first.config->groups()[1].limits.max_queue_wait_s, 2.5);
  EXPECT_DOUBLE_EQ(first.config->weights().input, 0.5);
  ConfigParseResult second = parse(to_json(*first.config));
  ASSERT_TRUE(second.ok()) << second.describe() << to_json(*first.config);
  EXPECT_EQ(*first.config, *second.config);
}

TEST(ConfigErrors, IsolationTokensMustBeAWholeNonNegativeNumber) {
  for (const char* bad : {"-1", "2.5", "\"64\"", "true"}) {
    ConfigParseResult result = parse(std::string(R"({"enable_user_qos": true, "user_groups": ["A"],
        "user_group_map": {"A": [{"id": "a", "quota_pct": 1}]},
        "group_limits": {"A": {"lower_groups_step_tokens": )") + bad + "}}}");
    ASSERT_FALSE(result.ok()) << bad;
    EXPECT_EQ(result.errors[0].path, "$.group_limits.A.lower_groups_step_tokens") << bad;
    EXPECT_NE(result.errors[0].fix.find("lower groups pause"), std::string::npos);
  }
}

TEST(ConfigSummary, ExplainsEachGroupsIsolation) {
  auto config = parse(R"({"enable_user_qos": true, "user_groups": ["A", "B", "C"],
      "user_group_map": {"A": [{"id": "a", "quota_pct": 1}], "B": [{"id": "b", "quota_pct": 1}],
                         "C": [{"id": "c", "quota_pct": 1}]},
      "group_limits": {"B": {"lower_groups_step_tokens": 32}}})").config;
  ASSERT_TRUE(config);
  const std::string summary = summarize(*config);
  EXPECT_NE(summary.find("waits for its first token, lower groups pause"), std::string::npos) << summary;
  EXPECT_NE(summary.find("lower groups get at most 32 tokens a step"), std::string::npos) << summary;
}

TEST(ConfigSummary, ShowsGroupsSharesAndUnknownRule) {
  auto config = parse(kLmdeployTemplate).config;
  ASSERT_TRUE(config);
  const std::string summary = summarize(*config);
  EXPECT_NE(summary.find("[1] Platinum"), std::string::npos) << summary;
  EXPECT_NE(summary.find("share  95.00%"), std::string::npos) << summary;
  EXPECT_NE(summary.find("Unknown users: group Silver"), std::string::npos) << summary;
}

}  // namespace
}  // namespace tiergate::qos
