// The HTTPS (or, when asked, plain HTTP) server: Boost.Beast over Asio and OpenSSL, TLS 1.2/1.3
// only, HTTP/1.1 keep-alive, one session per connection on its own strand with read and idle
// timeouts, header and body limits (413), a cap on connections, SSE streaming with a bounded write
// queue, cancellation when a streaming client goes away, graceful shutdown on SIGTERM/SIGINT
// (stop accepting, let running requests finish within a deadline) and QoS reload on SIGHUP.
// Beast headers stay inside http_server.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/api.h"

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
  std::size_t threads = 2;
  std::chrono::seconds read_timeout{30};
  std::chrono::seconds shutdown_deadline{30};
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Api& api);
  ~HttpServer();
  // Binds and listens (throws std::runtime_error with the reason), then serves until a signal or
  // stop(). Calls on_listening with the bound port once accepting.
  void run(const std::function<void(std::uint16_t port)>& on_listening = {});
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tiergate::gateway
