// The HTTP API, independent of the transport: routes a parsed request to its handler (auth,
// validation, QoS submission, response building) and answers through a ResponseSink that the
// session implements. Handlers never throw to the caller; one boundary turns any escaped
// exception into a JSON 500 (DESIGN.md §7). Owns the reloadable files (QoS config, API keys).
// Thread-safe: the server calls it from its worker and network threads.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/grammar.h"
#include "gateway/api_keys.h"
#include "gateway/chat_sessions.h"
#include "gateway/engine_service.h"
#include "gateway/histogram.h"
#include "gateway/openai_protocol.h"
#include "gateway/reloadable_file.h"
#include "gateway/request_handler.h"
#include "qos/config_reloader.h"

namespace tiergate::gateway {

class FleetSync;

struct ApiOptions {
  std::string model_name;
  std::string qos_config_path;
  ChatSessions::Limits sessions;
  // In a fleet (serve --redis-url): the fleet sync (its state in /health, /metrics, /admin/qos) and
  // the store that shares interactive sessions between replicas. Both absent for a lone replica.
  const FleetSync* fleet = nullptr;
  std::shared_ptr<SessionBackend> shared_sessions;
  std::string api_keys_path;          // re-read on SIGHUP, POST /admin/keys/reload and change; "" = fixed keys
  bool metrics_without_key = false;   // /metrics answers without a key (then without per-user series)
  std::size_t metrics_max_users = 100;  // users with series of their own; the rest are summed
};

// Who is reading /metrics, and so what it may show.
enum class MetricsView {
  kFull,    // an admin key: everything, per-user series for the top users, the rest summed
  kPublic,  // no key, where the operator allowed it: server and group figures, no user ids
  kTenant,  // any other key: server figures and the series of the users the key may act for
};

class DashboardRoutes;

class Api : public RequestHandler {
 public:
  Api(EngineService& service, std::shared_ptr<const ApiKeyStore> keys, ApiOptions options);
  ~Api();

  // Handles one request. Returns the engine request id when a generation started (the session
  // cancels it if the client goes away), 0 otherwise.
  engine::RequestId handle(const HttpRequest& request, std::shared_ptr<ResponseSink> sink) override;
  void cancel(engine::RequestId id) override { service_.cancel(id); }
  // Re-reads the QoS config file; a bad file leaves the config in force. Returns the error text.
  std::string reload_qos();
  // Re-reads the API-keys file; a bad file leaves the keys in force. Returns the error text.
  std::string reload_keys();
  void reload_files() override;
  void reload_changed_files() override;  // the server polls once a second
  void set_transport(const TransportStatsSource* transport) override;

  std::string metrics(MetricsView view, const ApiKey* key = nullptr) const;
  // Graceful stop (the server calls these): waiting requests are answered 503 at once, running
  // ones when the deadline passes; new ones are refused with 503 from the first call on.
  void begin_shutdown() override { service_.stop_waiting(); }
  void stop_running() override { service_.stop_running(); }

 private:
  std::shared_ptr<const ApiKeyStore> keys() const;
  engine::RequestId admin(const HttpRequest& request, const std::string& route, const std::function<engine::RequestId(HttpResponse)>& answer);
  HttpResponse admin_qos() const;  // GET /admin/qos
  std::string reload_status_json() const;
  std::string load_keys();  // keys_file_'s loader: parse, then swap in
  engine::RequestId handle_unguarded(const HttpRequest& request, std::shared_ptr<ResponseSink> sink,
                                     const std::string& route);
  engine::RequestId generate(const HttpRequest& request, const ApiKey& key, Endpoint endpoint, bool qos_route,
                             std::shared_ptr<ResponseSink> sink, const std::string& route);
  void count(const std::string& route, int status);
  // Interactive sessions: record the finished turn (interactive_mode) or end the session.
  // `answer` runs once the session is stored where the next turn will look (then the client may send it).
  void end_interactive(const GenerationRequest& request, const std::string& user, std::size_t tokens,
                       const std::string& reply, std::function<void()> answer);

  EngineService& service_;
  mutable std::mutex keys_mutex_;
  std::shared_ptr<const ApiKeyStore> keys_;  // swapped whole on reload
  ApiOptions options_;
  ChatSessions sessions_;  // interactive_qos conversations, bounded by options_.sessions
  engine::GrammarCache grammars_;  // compiled output constraints (response_format, guided_*, tools)
  qos::ConfigReloader qos_reloader_;  // parses and applies the QoS config, serialised
  std::atomic<std::int64_t> qos_loaded_at_unix_ms_{0};  // when the config in force was read
  ReloadableFile qos_file_;   // when to reload it, and the outcome
  ReloadableFile keys_file_;
  std::unique_ptr<DashboardRoutes> dashboard_;
  mutable std::mutex transport_mutex_;
  const TransportStatsSource* transport_ = nullptr;
  Histogram ttft_;               // request received → first output
  Histogram inter_token_;        // between successive outputs of one choice, per token
  mutable std::mutex metrics_mutex_;
  // (route template, status) → count; a path that matches no route counts as "unmatched", so the
  // map is bounded by the route table times the statuses.
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
};

}  // namespace tiergate::gateway
