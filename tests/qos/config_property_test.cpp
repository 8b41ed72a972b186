// Properties of qos/config_parser.* and qos/config_writer.*: any valid config survives a round
// trip through its JSON text; every malformed mutation of a valid file is rejected with a located
// message; arbitrary byte damage never crashes the parser.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "qos/config_parser.h"
#include "qos/config_writer.h"

namespace tiergate::qos {
namespace {

// Names built from pieces that stress escaping and UTF-8: quotes, backslashes, control
// characters, accents, CJK, emoji. The index suffix keeps names unique.
std::string name_gen(const std::string& prefix, std::size_t index) {
  static const char* const kPieces[] = {"a", "Z", "_", "-", " ", "\"", "\\", "\xC3\xA9",
                                        "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\n", "/", "\t"};
  const auto count = *rc::gen::inRange(0, 4);
  std::string name = prefix;
  for (int i = 0; i < count; ++i) name += kPieces[*rc::gen::inRange<std::size_t>(0, std::size(kPieces))];
  return name + "#" + std::to_string(index);
}

double quota_gen() { return *rc::gen::inRange(0, 10001) / 100.0; }

Config config_gen() {
  const bool enabled = *rc::gen::weightedElement<bool>({{9, true}, {1, false}});
  const auto group_count = *rc::gen::inRange<std::size_t>(enabled ? 1 : 0, 6);
  std::vector<Group> groups;
  std::size_t user_index = 0;
  for (std::size_t g = 0; g < group_count; ++g) {
    Group group;
    group.name = name_gen("G", g);
    const auto users = *rc::gen::inRange(0, 5);
    for (int u = 0; u < users; ++u) group.users.push_back({name_gen("u", user_index++), quota_gen()});
    if (*rc::gen::arbitrary<bool>()) {
      const auto at = *rc::gen::inRange<std::size_t>(0, group.users.size() + 1);
      group.users.insert(group.users.begin() + static_cast<long>(at), UserQuota{"default", quota_gen()});
    }
    if (*rc::gen::arbitrary<bool>()) {
      if (*rc::gen::arbitrary<bool>()) group.limits.max_queued = *rc::gen::inRange<std::size_t>(1, 100000);
      if (*rc::gen::arbitrary<bool>()) group.limits.max_queue_wait_s = *rc::gen::inRange(1, 100000) / 8.0;
      group.limits.retry_after_s = *rc::gen::inRange(0, 1000) / 4.0;
    }
    groups.push_back(std::move(group));
  }
  std::optional<std::string> default_group;
  if (!groups.empty() && *rc::gen::arbitrary<bool>()) {
    default_group = groups[*rc::gen::inRange<std::size_t>(0, groups.size())].name;
  }
  TokenWeights weights;
  if (*rc::gen::arbitrary<bool>()) weights = {quota_gen(), quota_gen() + 0.5};
  return Config(enabled, std::move(groups), std::move(default_group), weights);
}

RC_GTEST_PROP(ConfigProperty, RoundTripsThroughJson, ()) {
  const Config config = config_gen();
  const std::string text = to_json(config);
  ConfigParseResult parsed = parse_config(text, "roundtrip.json");
  RC_ASSERT(parsed.ok());
  RC_ASSERT(*parsed.config == config);
  RC_ASSERT(to_json(*parsed.config) == text);
}

// Breaks a valid file in one of the ways operators break files; each must be rejected.
std::string break_config(const std::string& text, int how, const Config& config) {
  std::string t = text;
  auto replace_first = [&](const std::string& from, const std::string& to) {
    const auto at = t.find(from);
    if (at == std::string::npos) return false;
    t.replace(at, from.size(), to);
    return true;
  };
  const std::size_t body = t.find('{') + 1;
  switch (how) {
    case 0: return t + "x";                                                   // trailing garbage
    case 1: return t.substr(0, *rc::gen::inRange<std::size_t>(0, t.rfind('}')));  // truncated
    case 2: return t.insert(*rc::gen::inRange<std::size_t>(0, t.size()), "\xFF");  // invalid UTF-8
    case 3: return t.insert(body, "\"enable_user_qoss\": true, ");           // unknown key (typo)
    case 4: return t.insert(body, "\"user_groups\": [], ");                  // duplicate key
    case 5: replace_first("\"enable_user_qos\": true", "\"enable_user_qos\": \"true\"") ||
                replace_first("\"enable_user_qos\": false", "\"enable_user_qos\": 2");
            return t;                                                         // wrong type
    case 6: replace_first("\"enable_user_qos\": true,", "") ||
                replace_first("\"enable_user_qos\": false,", "");
            return t;                                                         // missing key
    default: break;
  }
  // Semantic damage needs something to damage; without it, fall back to garbage.
  std::optional<std::string> user;
  for (const Group& g : config.groups()) {
    for (const UserQuota& u : g.users) {
      if (u.id != kDefaultUserId) user = u.id;
    }
  }
  if (how == 7 && replace_first("\"quota_pct\": ", "\"quota_pct\": -1")) return t;  // negative quota
  if (how == 8 && replace_first("\"quota_pct\": ", "\"quota_pct\": \"")) {          // quota as string
    const auto at = t.find("\"quota_pct\": \"") + 14;
    t.insert(t.find('}', at), "\"");
    return t;
  }
  if (how == 9 && user) {                                                          // duplicate user
    const auto list = t.find(": [\n      {");
    t.insert(list + 3, "{\"id\": " + json_string(*user) + ", \"quota_pct\": 1}, ");
    return t;
  }
  if (how == 10 && !config.groups().empty()) {                                   // group renamed on one side
    const std::string name = json_string(config.groups()[0].name);
    replace_first("\"user_groups\": [" + name, "\"user_groups\": [" + json_string(config.groups()[0].name + "x"));
    return t;
  }
  if (how == 11) return t.insert(t.rfind('}'), ", \"token_weights\": {\"input\": -1}");
  if (how == 12) return t.insert(t.rfind('}'), ", \"group_limits\": {\"no such group\": {}}");
  return t + "]";
}

RC_GTEST_PROP(ConfigProperty, EveryMalformedMutationIsRejectedWithALocatedMessage, ()) {
  const Config config = config_gen();
  const int how = *rc::gen::inRange(0, 13);
  const std::string broken = break_config(to_json(config), how, config);
  ConfigParseResult parsed = parse_config(broken, "broken.json");
  RC_ASSERT(!parsed.ok());
  RC_ASSERT(parsed.config == nullptr);
  RC_ASSERT(!parsed.errors.empty());
  for (const ConfigError& e : parsed.errors) {
    RC_ASSERT(e.path.rfind("$", 0) == 0u);
    RC_ASSERT(!e.message.empty());
    RC_ASSERT(!e.fix.empty());
  }
  RC_ASSERT(parsed.describe().rfind("broken.json: $", 0) == 0u);
}

RC_GTEST_PROP(ConfigProperty, ArbitraryDamageNeverCrashes, ()) {
  std::string text = to_json(config_gen());
  const auto edits = *rc::gen::inRange(1, 9);
  for (int i = 0; i < edits && !text.empty(); ++i) {
    const auto at = *rc::gen::inRange<std::size_t>(0, text.size());
    switch (*rc::gen::inRange(0, 3)) {
      case 0: text.erase(at, 1); break;
      case 1: text.insert(at, 1, *rc::gen::arbitrary<char>()); break;
      default: text[at] = *rc::gen::arbitrary<char>(); break;
    }
  }
  ConfigParseResult parsed = parse_config(text, "damaged.json");
  RC_ASSERT(parsed.ok() == parsed.errors.empty());
  RC_ASSERT(parsed.ok() == (parsed.config != nullptr));
}

}  // namespace
}  // namespace tiergate::qos
