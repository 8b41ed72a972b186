#include "gateway/http_server.h"

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <deque>
#include <thread>
#include <vector>

namespace tiergate::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr std::size_t kMaxQueuedEvents = 4096;  // a client that stops reading loses its stream

struct Shared {
  Api& api;
  ServerOptions options;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> active_requests{0};
  std::atomic<bool> stopping{false};
};

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream&& stream, Shared& shared) : stream_(std::move(stream)), shared_(shared) { ++shared_.connections; }
  ~Session() {
    --shared_.connections;
    if (request_id_ != 0) shared_.api.cancel(request_id_);  // the client went away mid-request
  }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).expires_after(shared_.options.read_timeout);
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->read();
      });
    } else {
      read();
    }
  }

  // --- called from any thread through the sink; each hops onto the strand ---
  void post_respond(HttpResponse r) {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), r = std::move(r)]() mutable {
      self->respond(std::move(r));
    });
  }
  void post_begin_stream(HttpResponse h) {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), h = std::move(h)]() mutable {
      self->pending_headers_ = std::move(h);
    });
  }
  void post_event(std::string e) {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), e = std::move(e)]() mutable {
      self->enqueue(std::move(e), false);
    });
  }
  void post_end_stream() {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->enqueue("", true); });
  }

 private:
  // Holds the session alive while its request is in flight (the engine keeps the sink until the
  // request finishes, then lets go).
  class Sink : public ResponseSink {
   public:
    explicit Sink(std::shared_ptr<Session> s) : session_(std::move(s)) {}
    void respond(HttpResponse r) override { session_->post_respond(std::move(r)); }
    void begin_stream(HttpResponse h) override { session_->post_begin_stream(std::move(h)); }
    void stream(std::string e) override { session_->post_event(std::move(e)); }
    void end_stream() override { session_->post_end_stream(); }

   private:
    std::shared_ptr<Session> session_;
  };

  void read() {
    if (shared_.stopping) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(shared_.options.max_header_bytes));
    parser_->body_limit(shared_.options.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(shared_.options.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      keep_alive_ = false;
      ++shared_.active_requests;
      in_request_ = true;
      HttpResponse r;
      r.status = 413;
      r.body = ApiError{413, ec == http::error::body_limit ? "the request body is too large" : "the request headers are too large",
                        "invalid_request_error", "", "request_too_large"}.to_json();
      return respond(std::move(r));
    }
    if (ec) return close();  // end of stream, timeout, reset: nothing to answer
    const auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    HttpRequest request{std::string(req.method_string()), std::string(req.target()),
                        std::string(req[http::field::authorization]), req.body(), std::string(req[http::field::cookie])};
    beast::get_lowest_layer(stream_).expires_never();  // generation may take a while
    ++shared_.active_requests;
    in_request_ = true;
    request_id_ = shared_.api.handle(request, std::make_shared<Sink>(this->shared_from_this()));
    watch();
  }

  // While a request is in flight, keep one read open: it notices a client that hangs up (and
  // cancels its generation, streaming or not) and keeps any pipelined bytes for the next parse.
  void watch() {
    if (watching_ || closed_) return;
    watching_ = true;
    stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
      self->on_watch(ec, n);
    });
  }

  void on_watch(beast::error_code ec, std::size_t n) {
    watching_ = false;
    if (ec) {
      if (in_request_ && request_id_ != 0) shared_.api.cancel(request_id_);
      request_id_ = 0;
      return close();
    }
    buffer_.commit(n);
    if (in_request_) {
      if (buffer_.size() < shared_.options.max_header_bytes) watch();
      return;
    }
    if (resume_read_) {
      resume_read_ = false;
      read();
    }
  }

  void respond(HttpResponse r) {
    if (!in_request_ || head_sent_) return;  // a late answer after the stream began: ignore
    pending_headers_.reset();
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), version_);
    res->set(http::field::server, "tiergate");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->set(k, v);
    res->keep_alive(keep_alive_ && !shared_.stopping);
    res->body() = std::move(r.body);
    res->prepare_payload();
    head_sent_ = true;
    beast::get_lowest_layer(stream_).expires_after(shared_.options.read_timeout);
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      self->finish_request(ec, !res->keep_alive());
    });
  }

  void enqueue(std::string event, bool last) {
    if (!in_request_) return;
    if (events_.size() >= kMaxQueuedEvents) {  // the client is not reading: give up on it
      shared_.api.cancel(request_id_);
      return close();
    }
    events_.push_back({std::move(event), last});
    if (!writing_) write_next();
  }

  void write_next() {
    if (events_.empty()) return;
    writing_ = true;
    if (!head_sent_) {
      HttpResponse h = pending_headers_.value_or(HttpResponse{200, "text/event-stream", "", {}});
      auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(h.status), version_);
      res->set(http::field::server, "tiergate");
      res->set(http::field::content_type, h.content_type);
      for (const auto& [k, v] : h.headers) res->set(k, v);
      res->keep_alive(keep_alive_);
      res->chunked(true);
      auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*res);
      head_sent_ = true;
      http::async_write_header(stream_, *serializer,
                               [self = this->shared_from_this(), res, serializer](beast::error_code ec, std::size_t) {
                                 self->on_event_written(ec);
                               });
      return;
    }
    Event e = std::move(events_.front());
    events_.pop_front();
    if (e.last) {
      net::async_write(stream_, http::make_chunk_last(), [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
        self->writing_ = false;
        self->finish_request(ec, !self->keep_alive_);
      });
      return;
    }
    auto data = std::make_shared<std::string>(std::move(e.data));
    net::async_write(stream_, http::make_chunk(net::buffer(*data)),
                     [self = this->shared_from_this(), data](beast::error_code ec, std::size_t) { self->on_event_written(ec); });
  }

  void on_event_written(beast::error_code ec) {
    writing_ = false;
    if (ec) {  // the client went away mid-stream: stop generating for it
      if (request_id_) shared_.api.cancel(request_id_);
      request_id_ = 0;
      return close();
    }
    write_next();
  }

  void finish_request(beast::error_code ec, bool close_after) {
    if (in_request_) --shared_.active_requests;
    in_request_ = false;
    request_id_ = 0;
    head_sent_ = false;
    pending_headers_.reset();
    events_.clear();
    if (ec || close_after) return close();
    if (watching_) {  // the watch read owns the stream's read side; it resumes parsing when done
      resume_read_ = true;
      return;
    }
    read();
  }

  void close() {
    closed_ = true;
    beast::error_code ec;
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
    } else {
      stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    }
    if (in_request_) --shared_.active_requests;
    in_request_ = false;
  }

  struct Event {
    std::string data;
    bool last;
  };

  Stream stream_;
  Shared& shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  bool in_request_ = false;
  bool head_sent_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool resume_read_ = false;
  bool closed_ = false;
  std::optional<HttpResponse> pending_headers_;
  std::deque<Event> events_;
  engine::RequestId request_id_ = 0;
};

}  // namespace

struct HttpServer::Impl {
  Impl(ServerOptions options, Api& api) : shared{api, std::move(options)}, ioc(static_cast<int>(shared.options.threads)),
                                          tls(ssl::context::tls_server), acceptor(net::make_strand(ioc)), signals(ioc) {}

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (!shared.stopping) accept();
        return;
      }
      if (shared.connections >= shared.options.max_connections) {
        socket.close();  // over the cap: refuse at the door
      } else if (shared.options.tls) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), tls), shared)
            ->start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), shared)->start();
      }
      accept();
    });
  }

  void wait_signals() {
    signals.async_wait([this](beast::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        shared.api.reload_qos();
        return wait_signals();
      }
      std::fprintf(stderr, "tiergate: signal %d: stopping (running requests get %llds)\n", signal,
                   static_cast<long long>(shared.options.shutdown_deadline.count()));
      begin_shutdown();
    });
  }

  // The QoS config is re-read when its file changes (polled once a second).
  void watch_config() {
    auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::seconds(1));
    timer->async_wait([this, timer](beast::error_code ec) {
      if (ec || shared.stopping) return;
      shared.api.reload_qos_if_changed();
      watch_config();
    });
  }

  void begin_shutdown() {
    shared.stopping = true;
    beast::error_code ignored;
    acceptor.close(ignored);
    // Waiting requests get their 503 now; running ones may finish until the deadline.
    shared.api.stop_waiting();
    deadline = std::chrono::steady_clock::now() + shared.options.shutdown_deadline;
    poll_drain();
  }

  void poll_drain() {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline && !running_stopped) {
      // Past the deadline the running ones are answered too (503, or a final SSE error event);
      // their sessions then get a moment to write that before the loop stops.
      running_stopped = true;
      shared.api.stop_running();
      deadline = now + std::chrono::seconds(5);
    }
    if (shared.active_requests == 0 || (running_stopped && now >= deadline)) {
      ioc.stop();
      return;
    }
    auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(50));
    timer->async_wait([this, timer](beast::error_code) { poll_drain(); });
  }

  Shared shared;
  net::io_context ioc;
  ssl::context tls;
  tcp::acceptor acceptor;
  net::signal_set signals;
  std::chrono::steady_clock::time_point deadline;
  bool running_stopped = false;
};

HttpServer::HttpServer(ServerOptions options, Api& api) : impl_(std::make_unique<Impl>(std::move(options), api)) {}
HttpServer::~HttpServer() = default;

void HttpServer::run(const std::function<void(std::uint16_t)>& on_listening) {
  Impl& s = *impl_;
  if (s.shared.options.tls) {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(s.tls.native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    s.tls.use_certificate_chain_file(s.shared.options.cert_file, ec);
    if (ec) throw std::runtime_error(s.shared.options.cert_file + ": cannot load the TLS certificate: " + ec.message());
    s.tls.use_private_key_file(s.shared.options.key_file, ssl::context::pem, ec);
    if (ec) throw std::runtime_error(s.shared.options.key_file + ": cannot load the TLS key: " + ec.message());
  }
  beast::error_code ec;
  const auto address = net::ip::make_address(s.shared.options.host, ec);
  if (ec) throw std::runtime_error("--host " + s.shared.options.host + ": not an IP address");
  const tcp::endpoint endpoint{address, s.shared.options.port};
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("cannot listen on " + s.shared.options.host + ":" + std::to_string(s.shared.options.port) +
                             ": " + ec.message());
  }
  s.signals.add(SIGINT);
  s.signals.add(SIGTERM);
  s.signals.add(SIGHUP);
  s.wait_signals();
  s.watch_config();
  s.accept();
  if (on_listening) on_listening(s.acceptor.local_endpoint().port());
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < s.shared.options.threads; ++i) threads.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (std::thread& t : threads) t.join();
}

void HttpServer::stop() {
  net::post(impl_->ioc, [this] { impl_->begin_shutdown(); });
}

}  // namespace tiergate::gateway
