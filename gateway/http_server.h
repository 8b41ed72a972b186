// The HTTPS (or, when asked, plain HTTP) server: Boost.Beast over Asio and OpenSSL, TLS 1.2/1.3
// only. One session per connection on its own strand; every phase has a timer (TLS handshake,
// keep-alive idle, reading a request, each write), so no client holds a connection by doing
// nothing. Connections are capped server-wide and per client address. HTTP/1.1 keep-alive and
// pipelining; HTTP/1.0 gets close-delimited streams; `Expect: 100-continue` is answered; oversized
// headers get 431, bodies 413, malformed requests 400. Requests with a body are handed to a worker
// pool (JSON parsing, chat templates and tokenization never run on a network thread). SSE
// streaming with a bounded write queue; cancellation when a client goes away; graceful shutdown on
// SIGTERM/SIGINT (stop accepting, let running requests finish within a deadline) and file reloads
// on SIGHUP. Beast headers stay inside http_server.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "gateway/request_handler.h"

namespace tiergate::gateway {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8443;  // 0 = any free port
  bool tls = true;
  std::string cert_file;
  std::string key_file;
  std::size_t max_body_bytes = 4u << 20;
  std::size_t max_header_bytes = 16u << 10;
  std::size_t max_connections = 4096;
  // Per client address (IPv6: per /64). 0 = no cap: behind a load balancer, where every connection
  // comes from the balancer.
  std::size_t max_connections_per_client = 256;
  std::size_t threads = 2;         // network threads
  std::size_t worker_threads = 2;  // request preparation (parsing, templating, tokenizing)
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};   // kept alive, no request begun
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};   // a request's headers and body
  std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};  // each write (answer, event)
  std::chrono::seconds shutdown_deadline{30};
  bool handle_signals = true;  // SIGTERM/SIGINT stop, SIGHUP reloads (tests turn it off)
};

// The handler must let go of every sink it was given before the server is destroyed (a sink holds
// its connection, which refers to the server): the engine service's shutdown() does so.
class HttpServer {
 public:
  HttpServer(ServerOptions options, RequestHandler& handler);
  ~HttpServer();
  // Binds and listens (throws std::runtime_error with the reason), then serves until a signal or
  // stop(). Calls on_listening with the bound port once accepting.
  void run(const std::function<void(std::uint16_t port)>& on_listening = {});
  // Any thread, any time after construction: begins the graceful shutdown.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tiergate::gateway
