// What the HTTP transport (http_server.cpp) and the API (api.h) agree on: a parsed request, a
// response, the sink a handler answers through, and the handler interface the server calls. The
// server owns connections, timeouts and framing; a handler sees neither sockets nor threads, so a
// test can drive the server with a handler of its own. No Beast types here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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

// How a handler answers one request. Any thread may call it; the session serialises the calls onto
// its own strand in call order. begin_stream's headers are held until the first stream() event, so
// a respond() that follows begin_stream() directly replaces them (an error refused after all).
// A sink belongs to one request: whatever it is told after that request's answer ended (a late
// choice, a second respond) is dropped, never sent as the answer to the connection's next request.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void respond(HttpResponse response) = 0;
  virtual void begin_stream(HttpResponse headers) = 0;  // text/event-stream, chunked
  virtual void stream(std::string event) = 0;
  virtual void end_stream() = 0;
};

// Counters the transport keeps, for /metrics.
struct TransportStats {
  std::size_t connections = 0;        // open now
  std::size_t sessions = 0;           // connection objects alive: open ones, and closed ones a request still holds
  std::size_t requests_in_flight = 0; // read, not yet fully answered
  std::uint64_t refused_total_limit = 0;       // connections closed at accept: server-wide cap
  std::uint64_t refused_per_client_limit = 0;  // ... the client address's cap
  std::uint64_t accept_errors = 0;             // accept() failures (e.g. out of file descriptors)
  // Connections closed by a timer, by phase.
  std::uint64_t timeouts_handshake = 0;
  std::uint64_t timeouts_idle = 0;   // kept alive without a new request
  std::uint64_t timeouts_read = 0;   // a request's headers and body too slow (slowloris)
  std::uint64_t timeouts_write = 0;  // a client that stopped reading its answer
};

class TransportStatsSource {
 public:
  virtual ~TransportStatsSource() = default;
  virtual TransportStats transport_stats() const = 0;
};

// The server's view of the API. handle() may run on a worker thread (never on a network thread):
// it parses, renders and tokenizes. Thread-safe.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Returns the id of a generation it started (the server cancels it when the client goes away),
  // 0 otherwise.
  virtual std::uint64_t handle(const HttpRequest& request, std::shared_ptr<ResponseSink> sink) = 0;
  virtual void cancel(std::uint64_t id) = 0;
  // SIGHUP: re-read every reloadable file (QoS config, API keys).
  virtual void reload_files() {}
  // Called about once a second: reload the files whose contents changed.
  virtual void reload_changed_files() {}
  // SIGTERM/SIGINT or stop(): the server has stopped accepting and waits (its shutdown deadline) for
  // the requests in flight to be answered; queued ones should be answered now (503 / final event).
  virtual void begin_shutdown() {}
  // The shutdown deadline passed: the running ones should be answered too; the server then gives
  // their sessions a moment to write that before it stops.
  virtual void stop_running() {}
  // The server registers itself while it runs (nullptr when it stops).
  virtual void set_transport(const TransportStatsSource* /*transport*/) {}
};

}  // namespace tiergate::gateway
