// The admin routes (/admin/qos, /admin/qos/reload, /admin/keys/reload) and the reloads of the
// files the server re-reads: a bad file is rejected with its errors logged, returned to the admin
// route and shown in /admin/qos and /metrics; what is in force stays.
#include <cstdio>

#include "gateway/admin_qos_report.h"
#include "gateway/api.h"
#include "gateway/fleet_sync.h"
#include "gateway/private_file.h"
#include "qos/config_writer.h"

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

// Every reload's outcome goes to the log: what was reloaded, or why it was rejected.
std::string log_reload(const char* what, const std::string& path, std::string problems) {
  if (problems.empty()) {
    std::fprintf(stderr, "tiergate: %s reloaded from %s\n", what, path.c_str());
  } else {
    std::fprintf(stderr, "tiergate: %s reload rejected, what is in force stays:\n%s\n", what, problems.c_str());
  }
  return problems;
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
  return answer(admin_qos());
}

HttpResponse Api::admin_qos() const {
  return HttpResponse{200, "application/json",
                      admin_qos_report(service_,
                                       {options_.qos_config_path, qos_loaded_at_unix_ms_.load(), qos_file_.status().error},
                                       reload_status_json(),
                                       options_.fleet ? options_.fleet->usage_json() : std::string()),
                      {}};
}

std::string Api::reload_status_json() const {
  std::string out = "{\"qos_config\": " + status_json(qos_file_);
  if (!options_.api_keys_path.empty()) out += ", \"api_keys\": " + status_json(keys_file_);
  return out + "}";
}

std::string Api::reload_qos() { return log_reload("QoS config", options_.qos_config_path, qos_file_.reload()); }

std::string Api::load_keys() {
  std::shared_ptr<const ApiKeyStore> loaded;
  try {
    loaded = ApiKeyStore::load(options_.api_keys_path);
  } catch (const std::exception& e) {
    return std::string(e.what()) + " (the keys in force stay)";
  }
  if (auto warning = readable_by_others_warning(options_.api_keys_path, "API keys")) {
    std::fprintf(stderr, "%s\n", warning->c_str());
  }
  std::lock_guard lock(keys_mutex_);
  keys_ = std::move(loaded);
  return "";
}

std::string Api::reload_keys() { return log_reload("API-keys file", options_.api_keys_path, keys_file_.reload()); }

void Api::reload_files() {
  reload_qos();
  if (!options_.api_keys_path.empty()) reload_keys();
}

void Api::reload_changed_files() {
  if (auto problems = qos_file_.reload_if_changed()) log_reload("QoS config", options_.qos_config_path, *problems);
  if (options_.api_keys_path.empty()) return;
  if (auto problems = keys_file_.reload_if_changed()) log_reload("API-keys file", options_.api_keys_path, *problems);
}

}  // namespace tiergate::gateway
