// gateway/http_server.*: the transport with a handler of the test's own (no engine, no model),
// over plain HTTP on loopback, spoken to with blocking POSIX sockets. Threaded: the server runs on
// its own threads; TSan runs this binary (`tools/test.sh tsan`).
#include "gateway/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tiergate::gateway {
namespace {

using namespace std::chrono_literals;

// Answers by path: /ping at once; /hold keeps the sink and answers when the test says; /block
// blocks its (worker) thread until released and returns a generation id.
class FakeHandler : public RequestHandler {
 public:
  std::uint64_t handle(const HttpRequest& request, std::shared_ptr<ResponseSink> sink) override {
    if (request.target == "/ping") {
      sink->respond(HttpResponse{200, "text/plain", "pong", {}});
      return 0;
    }
    if (request.target == "/hsts") {
      sink->respond(HttpResponse{200, "text/plain", "pinned", {{"Strict-Transport-Security", "max-age=60"}}});
      return 0;
    }
    if (request.target == "/hold") {
      std::lock_guard lock(mutex_);
      held_.push_back(sink);
      changed_.notify_all();
      return 0;
    }
    if (request.target == "/block") {
      std::unique_lock lock(mutex_);
      ++blocked_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
      sink->respond(HttpResponse{200, "text/plain", "unblocked", {}});
      return 42;
    }
    sink->respond(HttpResponse{404, "text/plain", "no", {}});
    return 0;
  }
  void cancel(std::uint64_t id) override {
    std::lock_guard lock(mutex_);
    cancelled_.push_back(id);
    changed_.notify_all();
  }

  // Sinks hold their sessions; like the engine at shutdown, the handler lets go before the server goes.
  void drop_held() {
    std::lock_guard lock(mutex_);
    held_.clear();
  }

  std::shared_ptr<ResponseSink> wait_held(std::size_t n) {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(changed_.wait_for(lock, 10s, [&] { return held_.size() >= n; }));
    return held_.size() >= n ? held_[n - 1] : nullptr;
  }
  void wait_blocked() {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(changed_.wait_for(lock, 10s, [&] { return blocked_ > 0; }));
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  bool wait_cancelled(std::uint64_t id) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] {
      return std::find(cancelled_.begin(), cancelled_.end(), id) != cancelled_.end();
    });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::shared_ptr<ResponseSink>> held_;
  int blocked_ = 0;
  bool released_ = false;
  std::vector<std::uint64_t> cancelled_;
};

class RunningServer {
 public:
  RunningServer(RequestHandler& handler, ServerOptions options) {
    options.tls = false;
    options.port = 0;
    options.handle_signals = false;
    server_ = std::make_unique<HttpServer>(options, handler);
    std::promise<std::uint16_t> bound;
    auto port = bound.get_future();
    thread_ = std::thread([this, &bound] { server_->run([&](std::uint16_t p) { bound.set_value(p); }); });
    port_ = port.get();
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  ~Client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(const std::string& data) { ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size())); }
  void get(const std::string& path) { send("GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n"); }
  void post(const std::string& path) { send("POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"); }
  // Reads until `marker` has arrived (or `within` passes): what arrived.
  std::string read_until(const std::string& marker, std::chrono::milliseconds within = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (buffer_.find(marker) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
    return buffer_;
  }
  bool nothing_within(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) == 0;
  }

 private:
  int fd_ = -1;
  std::string buffer_;
};

TEST(HttpServer, AnswersPipelinedRequestsOnOneConnection) {
  FakeHandler handler;
  RunningServer server(handler, {});
  Client c(server.port());
  c.send("GET /ping HTTP/1.1\r\nHost: t\r\n\r\nGET /ping HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string got = c.read_until("no", 10s);
  EXPECT_EQ(got.find("HTTP/1.1 200"), 0u) << got;
  const auto second = got.find("pong", got.find("pong") + 4);
  EXPECT_NE(second, std::string::npos) << got;
  EXPECT_NE(got.find("HTTP/1.1 404", second), std::string::npos) << got;
}

// Issue 23, hole 6: Strict-Transport-Security means something only over TLS; on plain HTTP
// (--insecure-http, perhaps behind a proxy that terminates TLS for a whole domain) the transport
// drops it, so the handlers need not know which transport they answer on.
TEST(HttpServer, PlainHttpDropsStrictTransportSecurity) {
  FakeHandler handler;
  RunningServer server(handler, {});
  Client c(server.port());
  c.get("/hsts");
  const std::string got = c.read_until("pinned");
  ASSERT_NE(got.find("pinned"), std::string::npos) << got;
  EXPECT_EQ(got.find("Strict-Transport-Security"), std::string::npos) << got;
}

// Issue 11, hole 9: a sink belongs to one request. Whatever it is told after its request was
// answered (a late choice, a second respond) must never become the next request's answer.
TEST(HttpServer, ALateAnswerNeverReachesTheNextRequest) {
  FakeHandler handler;
  RunningServer server(handler, {});
  Client c(server.port());
  c.get("/hold");
  auto first = handler.wait_held(1);
  ASSERT_TRUE(first);
  first->respond(HttpResponse{200, "text/plain", "first", {}});
  ASSERT_NE(c.read_until("first").find("first"), std::string::npos);
  c.get("/hold");  // the next request on the same connection: held, not yet answered
  auto second = handler.wait_held(2);
  ASSERT_TRUE(second);
  first->respond(HttpResponse{200, "text/plain", "LATE-RESPOND", {}});
  first->stream("LATE-EVENT");
  first->end_stream();
  EXPECT_TRUE(c.nothing_within(300ms));  // the late words went nowhere
  second->respond(HttpResponse{200, "text/plain", "second", {}});
  const std::string all = c.read_until("second");
  EXPECT_NE(all.find("second"), std::string::npos);
  EXPECT_EQ(all.find("LATE"), std::string::npos) << all;
  first.reset();
  second.reset();
  handler.drop_held();
}

// Issue 11, hole 7: preparing a request (here: a handler that blocks) runs on a worker, so with one
// network thread another connection is still served meanwhile.
TEST(HttpServer, AHandlerThatTakesLongStallsNoOtherConnection) {
  FakeHandler handler;
  ServerOptions options;
  options.threads = 1;
  options.worker_threads = 1;
  RunningServer server(handler, options);
  Client slow(server.port());
  slow.post("/block");
  handler.wait_blocked();
  Client quick(server.port());
  quick.get("/ping");
  EXPECT_NE(quick.read_until("pong", 5s).find("pong"), std::string::npos);
  handler.release();
  EXPECT_NE(slow.read_until("unblocked").find("unblocked"), std::string::npos);
}

TEST(HttpServer, AClientThatLeavesDuringPreparationGetsItsGenerationCancelled) {
  FakeHandler handler;
  RunningServer server(handler, {});
  {
    Client c(server.port());
    c.post("/block");
    handler.wait_blocked();
  }  // gone before the handler returned its generation's id
  std::this_thread::sleep_for(100ms);  // let the server see the close first
  handler.release();
  EXPECT_TRUE(handler.wait_cancelled(42));
}

TEST(HttpServer, StreamsChunkedToHttp11AndCloseDelimitedToHttp10) {
  FakeHandler handler;
  RunningServer server(handler, {});
  for (const std::string version : {"1.1", "1.0"}) {
    Client c(server.port());
    c.send("GET /hold HTTP/" + version + "\r\nHost: t\r\n\r\n");
    auto sink = handler.wait_held(version == "1.1" ? 1 : 2);
    ASSERT_TRUE(sink);
    sink->begin_stream(HttpResponse{200, "text/event-stream", "", {}});
    sink->stream("data: one\n\n");
    sink->stream("data: two\n\n");
    sink->end_stream();
    const std::string got = c.read_until(version == "1.1" ? "0\r\n\r\n" : "two\n\n");
    if (version == "1.1") {
      EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
    } else {
      EXPECT_EQ(got.find("chunked"), std::string::npos) << got;
      EXPECT_NE(got.find("data: one\n\ndata: two\n\n"), std::string::npos) << got;
      EXPECT_NE(c.read_until("never", 5s).size(), 0u);  // and then the server closes
    }
  }
  handler.drop_held();
}

}  // namespace
}  // namespace tiergate::gateway
