#include "qos/config_parser.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "qos/utf8.h"

namespace tiergate::qos {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// Byte offset of the first byte that does not start a well-formed UTF-8 sequence (overlongs,
// surrogates and code points past U+10FFFF count as ill-formed), or nullopt when all is well.
std::optional<std::size_t> first_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t length = utf8_sequence(s, i);
    if (length == 0) return i;
    i += length;
  }
  return std::nullopt;
}

std::string line_and_column(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

bool is_identifier(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
  });
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

std::string member_path(const std::string& base, std::string_view key) {
  return is_identifier(key) ? base + "." + std::string(key) : base + "[" + quote(key) + "]";
}

std::string index_path(const std::string& base, std::size_t index) {
  return base + "[" + std::to_string(index) + "]";
}

// "a string \"50\"", "an object", ...: what was found, for messages.
std::string describe(element value) {
  std::string shown = simdjson::to_string(value);
  if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
  switch (value.type()) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::STRING: return "the string " + shown;
    case element_type::BOOL: return "the boolean " + shown;
    case element_type::NULL_VALUE: return "null";
    default: return "the number " + shown;
  }
}

bool is_number(element value) {
  const element_type t = value.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

double number_of(element value) {
  switch (value.type()) {
    case element_type::INT64: return static_cast<double>(value.get_int64().value_unsafe());
    case element_type::UINT64: return static_cast<double>(value.get_uint64().value_unsafe());
    default: return value.get_double().value_unsafe();
  }
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Walks the parsed document, recording every problem; builds the Config only if none were found.
class Validator {
 public:
  explicit Validator(std::vector<ConfigError>& errors) : errors_(errors) {}

  std::shared_ptr<const Config> run(element root) {
    simdjson::dom::object top;
    if (root.get_object().get(top) != simdjson::SUCCESS) {
      error("$", "the document must be a JSON object, found " + describe(root),
            "start from config/qos_config.json.template");
      return nullptr;
    }
    const auto fields = unique_fields(top, "$");
    for (const auto& [key, value] : fields) {
      if (std::find(std::begin(kTopLevelKeys), std::end(kTopLevelKeys), key) ==
          std::end(kTopLevelKeys)) {
        error(member_path("$", key), "unknown top-level key " + quote(key), suggest_key(key));
      }
    }

    const bool enabled = read_enable(fields);
    const std::vector<std::string> group_names = read_group_names(fields, enabled);
    std::vector<Group> groups = read_group_map(fields, group_names, enabled);
    std::optional<std::string> default_group = read_default_group(fields, group_names);
    const TokenWeights weights = read_weights(fields);
    read_group_limits(fields, groups);

    if (!errors_.empty()) return nullptr;
    return std::make_shared<const Config>(enabled, std::move(groups), std::move(default_group),
                                          weights);
  }

 private:
  // An object's members in document order (so messages follow the file), looked up by key.
  class Fields {
   public:
    using Item = std::pair<std::string, element>;
    bool add(std::string key, element value) {
      if (find(key) != end()) return false;
      items_.emplace_back(std::move(key), value);
      return true;
    }
    std::vector<Item>::const_iterator find(std::string_view key) const {
      return std::find_if(items_.begin(), items_.end(), [&](const Item& i) { return i.first == key; });
    }
    std::vector<Item>::const_iterator begin() const { return items_.begin(); }
    std::vector<Item>::const_iterator end() const { return items_.end(); }

   private:
    std::vector<Item> items_;
  };

  void error(std::string path, std::string message, std::string fix) {
    errors_.push_back({std::move(path), std::move(message), std::move(fix)});
  }

  // The object's members by key; a repeated key is an error (JSON parsers disagree on which copy
  // wins, so an operator's intent is unknowable).
  Fields unique_fields(simdjson::dom::object object, const std::string& path) {
    Fields fields;
    for (auto field : object) {
      const std::string key(field.key);
      if (!fields.add(key, field.value)) {
        error(member_path(path, key), "key " + quote(key) + " appears more than once",
              "keep one copy of it");
      }
    }
    return fields;
  }

  void reject_unknown(const Fields& fields, const std::string& path,
                      std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : fields) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string expected;
        for (std::string_view name : allowed) expected += (expected.empty() ? "" : ", ") + quote(name);
        error(member_path(path, key), "unknown key " + quote(key), "use only " + expected);
      }
    }
  }

  static std::string suggest_key(std::string_view key) {
    std::string_view best;
    std::size_t best_distance = 4;  // only suggest near misses
    for (std::string_view candidate : kTopLevelKeys) {
      const std::size_t d = edit_distance(key, candidate);
      if (d < best_distance) {
        best = candidate;
        best_distance = d;
      }
    }
    std::string all;
    for (std::string_view name : kTopLevelKeys) all += (all.empty() ? "" : ", ") + std::string(name);
    if (!best.empty()) return "did you mean " + quote(best) + "? allowed keys: " + all;
    return "remove it; allowed keys: " + all;
  }

  bool read_enable(const Fields& fields) {
    auto it = fields.find("enable_user_qos");
    if (it == fields.end()) {
      error("$", "missing required key \"enable_user_qos\"",
            "add \"enable_user_qos\": true (or false for one FCFS queue)");
      return true;  // validate the rest as if enabled, so every problem is reported
    }
    const element value = it->second;
    if (value.type() == element_type::BOOL) return value.get_bool().value_unsafe();
    // LMDeploy's own template wrote 0/1.
    if (is_number(value) && (number_of(value) == 0 || number_of(value) == 1)) {
      return number_of(value) == 1;
    }
    error("$.enable_user_qos", "must be true or false, found " + describe(value),
          "write true or false");
    return true;
  }

  std::vector<std::string> read_group_names(const Fields& fields, bool enabled) {
    std::vector<std::string> names;
    auto it = fields.find("user_groups");
    if (it == fields.end()) {
      if (enabled) {
        error("$", "missing required key \"user_groups\"",
              "add \"user_groups\": [\"Platinum\", \"Gold\", \"Silver\", \"Bronze\"] "
              "(highest priority first)");
      }
      return names;
    }
    simdjson::dom::array array;
    if (it->second.get_array().get(array) != simdjson::SUCCESS) {
      error("$.user_groups", "must be an array of group names, found " + describe(it->second),
            "write [\"Platinum\", \"Gold\", ...], highest priority first");
      return names;
    }
    std::size_t index = 0;
    for (element item : array) {
      const std::string path = index_path("$.user_groups", index++);
      std::string_view name;
      if (item.get_string().get(name) != simdjson::SUCCESS || name.empty()) {
        error(path, "a group name must be a non-empty string, found " + describe(item),
              "write the group's name in quotes");
        continue;
      }
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        error(path, "group " + quote(name) + " is listed twice", "list each group once");
        continue;
      }
      names.emplace_back(name);
    }
    if (enabled && index == 0) {
      error("$.user_groups", "the list of groups is empty", "name at least one group");
    }
    return names;
  }

  std::vector<Group> read_group_map(const Fields& fields, const std::vector<std::string>& names,
                                    bool enabled) {
    std::vector<Group> groups;
    for (const std::string& name : names) groups.push_back(Group{name, {}, {}});
    auto it = fields.find("user_group_map");
    if (it == fields.end()) {
      if (enabled) {
        error("$", "missing required key \"user_group_map\"",
              "add \"user_group_map\" with one list of {\"id\", \"quota_pct\"} per group");
      }
      return groups;
    }
    simdjson::dom::object map;
    if (it->second.get_object().get(map) != simdjson::SUCCESS) {
      error("$.user_group_map", "must be an object keyed by group name, found " + describe(it->second),
            "write {\"Gold\": [{\"id\": \"user1\", \"quota_pct\": 100}], ...}");
      return groups;
    }
    std::map<std::string, std::string> seen_ids;  // id → path where first seen
    const Fields members = unique_fields(map, "$.user_group_map");
    for (const auto& [group_name, list] : members) {
      const std::string group_path = member_path("$.user_group_map", group_name);
      auto group = std::find_if(groups.begin(), groups.end(),
                                [&](const Group& g) { return g.name == group_name; });
      if (group == groups.end()) {
        error(group_path, "group " + quote(group_name) + " is not listed in \"user_groups\"",
              "add it to \"user_groups\" at its priority, or remove it here");
        continue;
      }
      group->users = read_users(list, group_path, seen_ids);
    }
    for (const std::string& name : names) {
      if (members.find(name) == members.end()) {
        error("$.user_group_map", "group " + quote(name) + " from \"user_groups\" has no entry",
              "add \"" + name + "\": [{\"id\": \"...\", \"quota_pct\": ...}]");
      }
    }
    return groups;
  }

  std::vector<UserQuota> read_users(element list, const std::string& group_path,
                                    std::map<std::string, std::string>& seen_ids) {
    std::vector<UserQuota> users;
    simdjson::dom::array array;
    if (list.get_array().get(array) != simdjson::SUCCESS) {
      error(group_path, "must be an array of {\"id\", \"quota_pct\"} objects, found " + describe(list),
            "write [{\"id\": \"user1\", \"quota_pct\": 100}]");
      return users;
    }
    std::size_t index = 0;
    for (element entry : array) {
      const std::string path = index_path(group_path, index++);
      simdjson::dom::object object;
      if (entry.get_object().get(object) != simdjson::SUCCESS) {
        error(path, "a user entry must be an object, found " + describe(entry),
              "write {\"id\": \"user1\", \"quota_pct\": 50}");
        continue;
      }
      const Fields fields = unique_fields(object, path);
      reject_unknown(fields, path, {"id", "quota_pct"});
      UserQuota user;
      bool valid = true;
      auto id = fields.find("id");
      std::string_view id_text;
      if (id == fields.end()) {
        error(path, "missing \"id\"", "add \"id\": \"<user id>\" (or \"default\" for unknown users)");
        valid = false;
      } else if (id->second.get_string().get(id_text) != simdjson::SUCCESS || id_text.empty()) {
        error(path + ".id", "must be a non-empty string, found " + describe(id->second),
              "write the user id in quotes");
        valid = false;
      } else {
        user.id = std::string(id_text);
      }
      auto quota = fields.find("quota_pct");
      if (quota == fields.end()) {
        error(path, "missing \"quota_pct\"", "add \"quota_pct\": <a number from 0 to 100>");
        valid = false;
      } else if (!is_number(quota->second) || !std::isfinite(number_of(quota->second)) ||
                 number_of(quota->second) < 0) {
        error(path + ".quota_pct", "must be a non-negative number, found " + describe(quota->second),
              "write a number such as 50 (0 makes the user a scavenger)");
        valid = false;
      } else {
        user.quota_pct = number_of(quota->second);
      }
      // "default" may appear once per group; real ids once in the whole file. Checked even when
      // the quota is bad, so that both problems are reported at once.
      if (!user.id.empty()) {
        const std::string key = user.id == kDefaultUserId ? group_path + "#default" : user.id;
        if (auto [seen, inserted] = seen_ids.emplace(key, path + ".id"); !inserted) {
          error(path + ".id", "user " + quote(user.id) + " is already listed at " + seen->second,
                "a user belongs to exactly one group: keep one entry");
          continue;
        }
      }
      if (!valid) continue;
      users.push_back(std::move(user));
    }
    return users;
  }

  std::optional<std::string> read_default_group(const Fields& fields,
                                                const std::vector<std::string>& names) {
    auto it = fields.find("default_group");
    if (it == fields.end()) return std::nullopt;
    std::string_view name;
    if (it->second.get_string().get(name) != simdjson::SUCCESS) {
      error("$.default_group", "must be a group name, found " + describe(it->second),
            "write the name of a group from \"user_groups\"");
      return std::nullopt;
    }
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      error("$.default_group", "group " + quote(name) + " is not listed in \"user_groups\"",
            "use one of the groups in \"user_groups\"");
      return std::nullopt;
    }
    return std::string(name);
  }

  std::optional<double> read_non_negative(const Fields& fields, const std::string& path,
                                          std::string_view key, bool positive) {
    auto it = fields.find(key);
    if (it == fields.end()) return std::nullopt;
    const element value = it->second;
    const bool ok = is_number(value) && std::isfinite(number_of(value)) &&
                    (positive ? number_of(value) > 0 : number_of(value) >= 0);
    if (!ok) {
      error(member_path(path, key),
            std::string("must be a ") + (positive ? "positive" : "non-negative") +
                " number, found " + describe(value),
            "write a number such as " + std::string(positive ? "1" : "0"));
      return std::nullopt;
    }
    return number_of(value);
  }

  TokenWeights read_weights(const Fields& fields) {
    TokenWeights weights;
    auto it = fields.find("token_weights");
    if (it == fields.end()) return weights;
    const std::string path = "$.token_weights";
    simdjson::dom::object object;
    if (it->second.get_object().get(object) != simdjson::SUCCESS) {
      error(path, "must be an object, found " + describe(it->second),
            "write {\"input\": 1, \"output\": 2}");
      return weights;
    }
    const Fields members = unique_fields(object, path);
    reject_unknown(members, path, {"input", "output"});
    if (auto v = read_non_negative(members, path, "input", false)) weights.input = *v;
    if (auto v = read_non_negative(members, path, "output", false)) weights.output = *v;
    if (weights.input == 0 && weights.output == 0) {
      error(path, "both weights are 0, so no service would ever be counted",
            "give at least one of \"input\" and \"output\" a positive weight");
    }
    return weights;
  }

  // An integer member: positive, or non-negative with allow_zero; nullopt when absent or wrong.
  std::optional<std::uint64_t> read_count(const Fields& members, const std::string& path, const char* key,
                                          bool allow_zero, const char* example) {
    auto it = members.find(key);
    if (it == members.end()) return std::nullopt;
    std::uint64_t count = 0;
    const element v = it->second;
    const bool integral = (v.type() == element_type::INT64 && v.get_int64().value_unsafe() >= 0) ||
                          v.type() == element_type::UINT64;
    if (!integral || v.get_uint64().get(count) != simdjson::SUCCESS || (count == 0 && !allow_zero) ||
        count > (std::uint64_t{1} << 40)) {
      error(member_path(path, key), std::string("must be a ") + (allow_zero ? "non-negative" : "positive") +
                                  " integer, found " + describe(v),
            std::string("write ") + example);
      return std::nullopt;
    }
    return count;
  }

  void read_group_limits(const Fields& fields, std::vector<Group>& groups) {
    auto it = fields.find("group_limits");
    if (it == fields.end()) return;
    const std::string path = "$.group_limits";
    simdjson::dom::object object;
    if (it->second.get_object().get(object) != simdjson::SUCCESS) {
      error(path, "must be an object keyed by group name, found " + describe(it->second),
            "write {\"Bronze\": {\"max_queued\": 1000, \"max_queue_wait_s\": 60}}");
      return;
    }
    for (const auto& [name, value] : unique_fields(object, path)) {
      const std::string group_path = member_path(path, name);
      auto group = std::find_if(groups.begin(), groups.end(),
                                [&](const Group& g) { return g.name == name; });
      if (group == groups.end()) {
        error(group_path, "group " + quote(name) + " is not listed in \"user_groups\"",
              "use one of the groups in \"user_groups\"");
        continue;
      }
      simdjson::dom::object limits;
      if (value.get_object().get(limits) != simdjson::SUCCESS) {
        error(group_path, "must be an object, found " + describe(value),
              "write {\"max_queued\": 1000, \"max_queue_wait_s\": 60, \"retry_after_s\": 1}");
        continue;
      }
      const Fields members = unique_fields(limits, group_path);
      reject_unknown(members, group_path,
                     {"max_queued", "max_queue_wait_s", "retry_after_s", "lower_groups_step_tokens"});
      if (auto count = read_count(members, group_path, "max_queued", false, "a whole number of requests such as 1000")) {
        group->limits.max_queued = static_cast<std::size_t>(*count);
      }
      if (auto tokens = read_count(members, group_path, "lower_groups_step_tokens", true,
                                   "a whole number of tokens such as 0 (lower groups pause) or 64")) {
        group->limits.lower_groups_step_tokens = static_cast<std::int64_t>(*tokens);
      }
      group->limits.max_queue_wait_s = read_non_negative(members, group_path, "max_queue_wait_s", true);
      if (auto v = read_non_negative(members, group_path, "retry_after_s", false)) {
        group->limits.retry_after_s = *v;
      }
    }
  }

  std::vector<ConfigError>& errors_;
};

}  // namespace

std::string ConfigParseResult::describe() const {
  std::string out;
  for (const ConfigError& e : errors) {
    out += file + ": " + e.path + ": " + e.message + " (fix: " + e.fix + ")\n";
  }
  return out;
}

ConfigParseResult parse_config(std::string_view json_text, std::string_view file_name) {
  ConfigParseResult result;
  result.file = std::string(file_name);
  if (auto bad = first_invalid_utf8(json_text)) {
    result.errors.push_back({"$", "invalid UTF-8 at " + line_and_column(json_text, *bad) +
                                      " (byte offset " + std::to_string(*bad) + ")",
                             "save the file as UTF-8"});
    return result;
  }
  if (json_text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    result.errors.push_back({"$", "the file is empty", "start from config/qos_config.json.template"});
    return result;
  }
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(json_text);
  element root;
  if (auto code = parser.parse(padded).get(root); code != simdjson::SUCCESS) {
    result.errors.push_back({"$", std::string("not valid JSON: ") + simdjson::error_message(code),
                             "check brackets, commas and quotes (e.g. with `python3 -m json.tool`)"});
    return result;
  }
  result.config = Validator(result.errors).run(root);
  return result;
}

ConfigParseResult load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigParseResult result;
    result.file = path;
    result.errors.push_back({"$", "cannot open the file for reading",
                             "check the path given to --qos-config-path and its permissions"});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

std::shared_ptr<const Config> load_config_or_throw(const std::string& path) {
  ConfigParseResult result = load_config_file(path);
  if (!result.ok()) throw ConfigLoadError("invalid QoS config:\n" + result.describe());
  return result.config;
}

}  // namespace tiergate::qos
