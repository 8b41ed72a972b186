// The admin routes (/admin/qos, /admin/qos/reload, /admin/keys/reload) and the reloads of the
// files the server re-reads: a bad file is rejected with its errors logged, returned to the admin
// route and shown in /admin/qos and /metrics; what is in force stays.
#include <cstdio>

#include "gateway/api.h"
#include "gateway/private_file.h"
#include "qos/config_parser.h"
#include "qos/config_writer.h"
#include "qos/usage_report.h"

namespace tiergate::gateway {
namespace {

HttpResponse json_error(int status, const std::string& message, const std::string& param) {
  return HttpResponse{status, "application/json", ApiError{status, message, "invalid_request_error", param, ""}.to_json(), {}};
}

std::string status_json(const ReloadableFile& file) {
  const ReloadableFile::Status s = file.status();
  return "{\"path\": " + qos::json_string(file.path()) + ", \"ok\": " + (s.ok ? "true" : "false") +
         ", \"error\": " + (s.ok ? std::string("null") : qos::json_string(s.error)) +
         ", \"reloads\": " + std::to_string(s.reloads) + ", \"failures\": " + std::to_string(s.failures) + "}";
}

}  // namespace

engine::RequestId Api::admin(const HttpRequest&, const std::string& route,
                             const std::function<engine::RequestId(HttpResponse)>& answer) {
  if (route == "/admin/qos/reload") {
    const std::string problems = reload_qos();
    if (!problems.empty()) return answer(json_error(400, problems, "qos_config"));
    return answer(HttpResponse{200, "application/json", "{\"reloaded\": true}", {}});
  }
  if (route == "/admin/keys/reload") {
    if (options_.api_keys_path.empty()) return answer(json_error(400, "this server has no API-keys file", "api_keys"));
    const std::string problems = reload_keys();
    if (!problems.empty()) return answer(json_error(400, problems, "api_keys"));
    return answer(HttpResponse{200, "application/json",
                               "{\"reloaded\": true, \"keys\": " + std::to_string(keys()->size()) + "}", {}});
  }
  const auto config = service_.queue().config();
  return answer(HttpResponse{200, "application/json",
                             "{\"config\": " + qos::to_json(*config) + ", \"usage\": " +
                                 qos::to_json(service_.queue().usage()) + ", \"reload\": " + reload_status_json() + "}",
                             {}});
}

std::string Api::reload_status_json() const {
  std::string out = "{\"qos_config\": " + status_json(qos_file_);
  if (!options_.api_keys_path.empty()) out += ", \"api_keys\": " + status_json(keys_file_);
  return out + "}";
}

std::string Api::reload_qos() {
  std::lock_guard serial(qos_file_.reload_mutex());
  qos::ConfigParseResult parsed = qos::load_config_file(options_.qos_config_path);
  if (!parsed.ok()) {
    const std::string problems = parsed.describe();
    std::fprintf(stderr, "tiergate: QoS reload rejected, the old config stays in force:\n%s", problems.c_str());
    qos_file_.record_failure(problems);
    return problems;
  }
  service_.reload(parsed.config);
  qos_file_.record_success();
  std::fprintf(stderr, "tiergate: QoS config reloaded from %s\n", options_.qos_config_path.c_str());
  return "";
}

std::string Api::reload_keys() {
  std::lock_guard serial(keys_file_.reload_mutex());
  std::shared_ptr<const ApiKeyStore> loaded;
  try {
    loaded = ApiKeyStore::load(options_.api_keys_path);
  } catch (const std::exception& e) {
    const std::string problem = std::string(e.what()) + " (the keys in force stay)";
    std::fprintf(stderr, "tiergate: API-keys reload rejected: %s\n", problem.c_str());
    keys_file_.record_failure(problem);
    return problem;
  }
  if (auto warning = readable_by_others_warning(options_.api_keys_path, "API keys")) {
    std::fprintf(stderr, "%s\n", warning->c_str());
  }
  {
    std::lock_guard lock(keys_mutex_);
    keys_ = std::move(loaded);
  }
  keys_file_.record_success();
  std::fprintf(stderr, "tiergate: API keys reloaded from %s (%zu keys)\n", options_.api_keys_path.c_str(), keys()->size());
  return "";
}

void Api::reload_files() {
  reload_qos();
  if (!options_.api_keys_path.empty()) reload_keys();
}

void Api::reload_changed_files() {
  if (qos_file_.changed()) reload_qos();
  if (!options_.api_keys_path.empty() && keys_file_.changed()) reload_keys();
}

}  // namespace tiergate::gateway
