// A throwaway redis-server for the tests: started on a free loopback port with no persistence,
// stopped (SIGKILL) when the object goes; restartable on the same port to test outages. Optionally
// with a password (--requirepass), TLS only (a certificate the test made, e.g. with
// make_test_certificate) or any other arguments (--maxmemory ...). Where redis-server is missing the tests skip, unless CI=true or
// TIERGATE_REQUIRE_MODEL is set (tools/test.sh), where tools/bootstrap.sh must have installed it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tiergate::gateway {

// A self-signed certificate (its own CA) for 127.0.0.1, as `dir`/`name`.crt and .key; false
// where openssl cannot make one.
inline bool make_test_certificate(const std::string& dir, const std::string& name) {
  const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
                              " -addext subjectAltName=IP:127.0.0.1 -keyout '" + dir + "/" + name + ".key' -out '" +
                              dir + "/" + name + ".crt' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

class RedisServer {
 public:
  struct Options {
    std::string password{};                  // --requirepass
    std::string tls_cert{}, tls_key{};       // TLS only (no plain port) with this certificate
    std::vector<std::string> extra{};
  };

  static bool available() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }
  static bool required() {
    const char* ci = std::getenv("CI");
    const char* require = std::getenv("TIERGATE_REQUIRE_MODEL");
    return (ci && std::string(ci) == "true") || (require && std::string(require) != "0" && *require);
  }

  RedisServer() : RedisServer(Options{}) {}
  explicit RedisServer(Options options) : options_(std::move(options)), port_(free_port()) { start(); }
  ~RedisServer() { stop(); }

  int port() const { return port_; }
  // Without the password (the tests put it in where they mean to).
  std::string url() const {
    return (options_.tls_cert.empty() ? "redis://" : "rediss://") + std::string("127.0.0.1:") + std::to_string(port_) + "/0";
  }

  // Starts it (empty: nothing persists) and waits, bounded, until it accepts connections.
  void start() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {"redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--logfile", "/dev/null"};
    if (options_.tls_cert.empty()) {
      args.insert(args.end(), {"--port", port});
    } else {
      args.insert(args.end(), {"--port", "0", "--tls-port", port, "--tls-cert-file", options_.tls_cert, "--tls-key-file",
                               options_.tls_key, "--tls-ca-cert-file", options_.tls_cert, "--tls-auth-clients", "no"});
    }
    if (!options_.password.empty()) args.insert(args.end(), {"--requirepass", options_.password});
    args.insert(args.end(), options_.extra.begin(), options_.extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
    for (int i = 0; i < 200 && pid_ > 0 && !accepting(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);  // a crash, not a shutdown: nothing is saved anyway
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void pause() { kill(pid_, SIGSTOP); }  // Redis slow: connected, never answering
  void resume() { kill(pid_, SIGCONT); }
  bool running() const { return pid_ > 0 && accepting(); }

 private:
  static int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }
  bool accepting() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
  }

  Options options_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace tiergate::gateway

#define TIERGATE_NEED_REDIS()                                                                   \
  do {                                                                                          \
    if (!::tiergate::gateway::RedisServer::available()) {                                       \
      if (::tiergate::gateway::RedisServer::required()) FAIL() << "redis-server not installed (tools/bootstrap.sh installs it)"; \
      GTEST_SKIP() << "redis-server not installed (tools/bootstrap.sh installs it)";            \
    }                                                                                           \
  } while (0)
