// The HTTP API, independent of the transport: routes a parsed request to its handler (auth,
// validation, QoS submission, response building) and answers through a ResponseSink that the
// session implements. Handlers never throw to the caller; one boundary turns any escaped
// exception into a JSON 500 (DESIGN.md §7). Thread-safe.
#pragma once

#include <atomic>
#include <filesystem>
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
#include "qos/config_reloader.h"

namespace tiergate::gateway {

struct HttpRequest {
  std::string method;
  std::string target;
  std::string authorization;  // the Authorization header, as sent
  std::string body;
  std::string cookie;         // the Cookie header, as sent (dashboard sessions)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// How a handler answers. Any thread may call it; the session serialises the calls onto its own
// strand in call order. begin_stream's headers are held until the first stream() event, so a
// respond() that follows begin_stream() directly replaces them (an error refused after all).
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void respond(HttpResponse response) = 0;
  virtual void begin_stream(HttpResponse headers) = 0;  // text/event-stream, chunked
  virtual void stream(std::string event) = 0;
  virtual void end_stream() = 0;
};

class FleetSync;

struct ApiOptions {
  std::string model_name;
  std::string qos_config_path;
  ChatSessions::Limits sessions;
  // In a fleet (serve --redis-url): the fleet sync (its state in /health, /metrics, /admin/qos) and
  // the store that shares interactive sessions between replicas. Both absent for a lone replica.
  const FleetSync* fleet = nullptr;
  std::shared_ptr<SessionBackend> shared_sessions;
};

class DashboardRoutes;

class Api {
 public:
  Api(EngineService& service, std::shared_ptr<const ApiKeyStore> keys, ApiOptions options);
  ~Api();

  // Handles one request. Returns the engine request id when a generation started (the session
  // cancels it if the client goes away), 0 otherwise.
  engine::RequestId handle(const HttpRequest& request, std::shared_ptr<ResponseSink> sink);
  void cancel(engine::RequestId id) { service_.cancel(id); }
  // Re-reads the QoS config file; a bad file leaves the config in force. Returns the error text.
  std::string reload_qos();
  // Reloads when the file's modification time changed since the last look (the server polls).
  void reload_qos_if_changed();

  std::string metrics() const;
  // Graceful stop (the server calls these): waiting requests are answered 503 at once, running
  // ones when the deadline passes; new ones are refused with 503 from the first call on.
  void stop_waiting() { service_.stop_waiting(); }
  void stop_running() { service_.stop_running(); }

 private:
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
  std::shared_ptr<const ApiKeyStore> keys_;
  ApiOptions options_;
  ChatSessions sessions_;  // interactive_qos conversations, bounded by options_.sessions
  engine::GrammarCache grammars_;  // compiled output constraints (response_format, guided_*, tools)
  qos::ConfigReloader qos_reloader_;
  std::atomic<std::int64_t> qos_loaded_at_unix_ms_{0};  // when the config in force was read
  std::unique_ptr<DashboardRoutes> dashboard_;
  Histogram ttft_;               // request received → first output
  Histogram inter_token_;        // between successive outputs of one choice, per token
  mutable std::mutex metrics_mutex_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;  // (route, status) → count
};

}  // namespace tiergate::gateway
