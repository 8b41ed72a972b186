// HTTP request handling end to end: the bytes go over a loopback socket to the real server (plain
// HTTP), through the transport's parser, the router, authentication, body parsing, templating and
// tokenizing, to the stand-in engine and back. Each input is one connection: sent, write side
// shut, the answer read to the close. The server must answer or close within its timeouts (a hang
// is a finding), keep running, and every answer must start with an HTTP/1.x status line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "gateway/api.h"
#include "gateway/api_keys.h"
#include "gateway/engine_service.h"
#include "gateway/http_server.h"
#include "qos/config_parser.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace tiergate;

// The seeds carry "Authorization: Bearer tg-fuzz-admin" (admin, any user) or "tg-fuzz-alice".
struct Harness {
  Harness() {
    const engine::Model& model = fuzz::model();
    engine::EngineConfig config;
    config.threads = 1;
    service = std::make_unique<gateway::EngineService>(
        model, config, qos::load_config_or_throw(TIERGATE_SOURCE_DIR "/config/qos_config.json"), 4);
    auto keys = gateway::ApiKeyStore::from_keys(
        {{"admin", gateway::sha256_hex("tg-fuzz-admin"), true, {}, true},
         {"alice", gateway::sha256_hex("tg-fuzz-alice"), false, {"user_id1"}, false}});
    gateway::ApiOptions options;
    options.model_name = "fuzz-model";
    options.qos_config_path = TIERGATE_SOURCE_DIR "/config/qos_config.json";
    api = std::make_unique<gateway::Api>(*service, keys, options);
    gateway::ServerOptions server_options;
    server_options.tls = false;
    server_options.port = 0;
    server_options.handle_signals = false;
    server_options.max_connections_per_client = 0;
    server_options.read_timeout = std::chrono::seconds(2);  // an input that stops mid-request
    server = std::make_unique<gateway::HttpServer>(server_options, *api);
    std::promise<std::uint16_t> bound;
    auto port_future = bound.get_future();
    thread = std::thread([this, &bound] { server->run([&](std::uint16_t p) { bound.set_value(p); }); });
    port = port_future.get();
  }

  std::unique_ptr<gateway::EngineService> service;
  std::unique_ptr<gateway::Api> api;
  std::unique_ptr<gateway::HttpServer> server;
  std::thread thread;  // runs until the process exits (libFuzzer exits without returning)
  std::uint16_t port = 0;
};

Harness& harness() {
  static Harness* h = new Harness();  // never destroyed: libFuzzer calls exit() with the server running
  return *h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint16_t port = harness().port;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TG_CHECK(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  TG_CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed early (e.g. after a 431): fine
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    TG_CHECK(left.count() > 0);  // neither an answer nor a close: the server hung on this input
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[16384];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    if (answer.size() < (1u << 20)) answer.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  TG_CHECK(answer.empty() || answer.rfind("HTTP/1.", 0) == 0);
  return 0;
}
