#include "gateway/http_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "gateway/connection_limiter.h"
#include "gateway/openai_protocol.h"

namespace tiergate::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Mozilla's "intermediate" TLS 1.2 suites, in its order (a P-256 certificate, like the self-signed
// one, takes the ECDSA ones; an RSA certificate the RSA ones).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr std::size_t kMaxQueuedEvents = 4096;  // a client that stops reading loses its stream
constexpr std::size_t kWatchBytes = 4096;
constexpr auto kLingerTime = std::chrono::seconds(2);  // after a final answer, unread input drains this long
constexpr auto kAcceptBackoffMin = std::chrono::milliseconds(10);
constexpr auto kAcceptBackoffMax = std::chrono::seconds(1);

enum Phase : std::size_t { kHandshake, kIdle, kRead, kWrite, kPhases };

struct Shared {
  RequestHandler& handler;
  ServerOptions options;
  ConnectionLimiter limiter;
  net::thread_pool* workers = nullptr;  // owned by HttpServer::Impl, which outlives every session
  std::atomic<std::size_t> active_requests{0};
  std::atomic<std::size_t> sessions{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> refused_total{0};
  std::atomic<std::uint64_t> refused_per_client{0};
  std::atomic<std::uint64_t> accept_errors{0};
  std::array<std::atomic<std::uint64_t>, kPhases> timeouts{};

  Shared(RequestHandler& h, ServerOptions o)
      : handler(h), options(std::move(o)), limiter(options.max_connections, options.max_connections_per_client) {}
};

bool is_http_parse_error(const beast::error_code& ec) {
  return ec.category() == beast::http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message && ec != http::error::need_more;
}

std::string plain_error_response(int status, const char* reason, const std::string& message, const char* code) {
  const std::string body = ApiError{status, message, "invalid_request_error", "", code}.to_json();
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nServer: tiergate\r\nContent-Type: application/json\r\n" +
         "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(Stream&& stream, Shared& shared, std::string client)
      : stream_(std::move(stream)), shared_(shared), client_(std::move(client)), timer_(stream_.get_executor()) {
    ++shared_.sessions;
  }
  ~Session() {
    --shared_.sessions;
    if (in_request_) --shared_.active_requests;
    if (request_id_ != 0) shared_.handler.cancel(request_id_);  // the client went away mid-request
    release_slot();
  }

  void start() {
    if constexpr (kTls) {
      lowest().expires_after(shared_.options.handshake_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
    } else {
      enter_idle();
    }
  }

  // --- called from any thread through a request's sink; each hops onto the strand and is dropped
  // unless that request is still the one in flight (`generation`) ---
  void post(std::uint64_t generation, std::function<void(Session&)> f) {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), generation, f = std::move(f)] {
      if (generation == self->generation_ && self->in_request_ && !self->closed_) f(*self);
    });
  }

 private:
  class Sink : public ResponseSink {
   public:
    Sink(std::shared_ptr<Session> s, std::uint64_t generation) : session_(std::move(s)), generation_(generation) {}
    void respond(HttpResponse r) override {
      session_->post(generation_, [r = std::move(r)](Session& s) mutable { s.respond(std::move(r)); });
    }
    void begin_stream(HttpResponse h) override {
      session_->post(generation_, [h = std::move(h)](Session& s) mutable {
        if (!s.head_sent_) s.pending_headers_ = std::move(h);
      });
    }
    void stream(std::string e) override {
      session_->post(generation_, [e = std::move(e)](Session& s) mutable { s.enqueue(std::move(e), false); });
    }
    void end_stream() override {
      session_->post(generation_, [](Session& s) { s.enqueue("", true); });
    }

   private:
    std::shared_ptr<Session> session_;  // holds the session while its request is in flight
    const std::uint64_t generation_;
  };

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void on_handshake(beast::error_code ec) {
    if (!ec) {
      lowest().expires_never();
      return enter_idle();
    }
    if (ec == beast::error::timeout) ++shared_.timeouts[kHandshake];
    // Plain HTTP sent to the TLS port: say so in plain HTTP, as nginx does, then close.
    if (ec.category() == net::error::get_ssl_category() && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_HTTP_REQUEST) {
      auto text = std::make_shared<std::string>(plain_error_response(
          400, "Bad Request", "this port speaks HTTPS; a plain HTTP request was sent to it", "plain_http_to_https_port"));
      lowest().expires_after(shared_.options.write_timeout);
      net::async_write(lowest(), net::buffer(*text), [self = this->shared_from_this(), text](beast::error_code, std::size_t) {
        self->close_after_answer();
      });
      return;
    }
    abort();
  }

  // Between requests: wait (idle_timeout at most) for the next request's first bytes.
  void enter_idle() {
    if (closed_) return;
    if (shared_.stopping) return abort();
    if (buffer_.size() > 0) return read_request();  // a pipelined request is already here
    const std::uint64_t epoch = ++idle_epoch_;
    timer_.expires_after(shared_.options.idle_timeout);
    timer_.async_wait([self = this->shared_from_this(), epoch](beast::error_code ec) {
      if (ec || self->closed_ || epoch != self->idle_epoch_) return;
      ++self->shared_.timeouts[kIdle];
      self->abort();
    });
    if (!watching_) watch();
  }

  // One read always open while idle or while a request is in flight: it notices a client that hangs
  // up (cancelling its generation) and keeps bytes of the next request.
  void watch() {
    if (watching_ || closed_) return;
    watching_ = true;
    lowest().expires_never();  // the read side only, when a write is in flight
    stream_.async_read_some(buffer_.prepare(kWatchBytes), [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
      self->on_watch(ec, n);
    });
  }

  void on_watch(beast::error_code ec, std::size_t n) {
    watching_ = false;
    if (lingering_) {  // draining what a client sends after its final answer
      if (ec) return abort();
      buffer_.consume(buffer_.size());
      return watch();
    }
    if (ec) return abort();  // gone: abort() cancels its request
    buffer_.commit(n);
    if (in_request_) return;  // the next request, pipelined: parsed once this one is answered
    ++idle_epoch_;
    timer_.cancel();
    read_request();
  }

  void read_request() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(shared_.options.max_header_bytes));
    parser_->body_limit(shared_.options.max_body_bytes);
    lowest().expires_after(shared_.options.read_timeout);  // headers and body together
    http::async_read_header(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_header(ec);
    });
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    if (version_ >= 11 && req.find(http::field::host) == req.end()) {
      return reply_error(400, "an HTTP/1.1 request needs a Host header", "missing_host");
    }
    const auto expect = req[http::field::expect];
    if (!expect.empty()) {
      if (!beast::iequals(expect, "100-continue")) {
        return reply_error(417, "only 'Expect: 100-continue' is understood", "expectation_failed");
      }
      if (version_ >= 11 && !parser_->is_done()) {
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        lowest().expires_after(shared_.options.write_timeout);
        net::async_write(stream_, net::buffer(kContinue), [self = this->shared_from_this()](beast::error_code wec, std::size_t) {
          if (wec) return self->abort();
          self->lowest().expires_after(self->shared_.options.read_timeout);
          self->read_body();
        });
        return;
      }
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_request();
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->on_read_error(ec);
      self->on_request();
    });
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return reply_error(431, "the request headers are too large (the limit is " +
                                  std::to_string(shared_.options.max_header_bytes) + " bytes)",
                         "request_header_fields_too_large");
    }
    if (ec == http::error::body_limit) {
      return reply_error(413, "the request body is too large (the limit is " +
                                  std::to_string(shared_.options.max_body_bytes) + " bytes)",
                         "request_too_large");
    }
    if (ec == beast::error::timeout) ++shared_.timeouts[kRead];
    if (is_http_parse_error(ec)) return reply_error(400, "malformed HTTP request: " + ec.message(), "bad_http_request");
    abort();  // closed, reset, timed out, TLS failure: nothing to answer
  }

  void on_request() {
    lowest().expires_never();
    auto& req = parser_->get();
    begin_request();
    HttpRequest request{std::string(req.method_string()), std::string(req.target()),
                        std::string(req[http::field::authorization]), std::move(req.body()),
                        std::string(req[http::field::cookie])};
    parser_.reset();
    const std::uint64_t generation = generation_;
    auto sink = std::make_shared<Sink>(this->shared_from_this(), generation);
    if (buffer_.size() == 0) watch();  // else the client is evidently there: its next request waits in buffer_
    if (request.body.empty() && request.method == "GET") {  // no body, bounded work: answer on the strand
      on_handled(generation, handle_guarded(request, std::move(sink)));
      return;
    }
    // Parsing, templating and tokenizing a body (up to max_body_bytes) happen on the workers.
    net::post(*shared_.workers, [self = this->shared_from_this(), generation, request = std::move(request),
                                sink = std::move(sink)]() mutable {
      const std::uint64_t id = self->handle_guarded(request, std::move(sink));
      net::post(self->stream_.get_executor(), [self, generation, id] { self->on_handled(generation, id); });
    });
  }

  std::uint64_t handle_guarded(const HttpRequest& request, std::shared_ptr<ResponseSink> sink) {
    try {
      return shared_.handler.handle(request, sink);
    } catch (const std::exception& e) {  // the handler has its own boundary; this one is the last
      std::fprintf(stderr, "tiergate: internal error on %s %s: %s\n", request.method.c_str(), request.target.c_str(), e.what());
      sink->respond(HttpResponse{500, "application/json", ApiError{500, "internal server error", "server_error", "", ""}.to_json(), {}});
      return 0;
    }
  }

  void on_handled(std::uint64_t generation, std::uint64_t id) {
    if (id == 0) return;
    if (generation == generation_ && in_request_ && !closed_) {
      request_id_ = id;
    } else if (closed_) {
      shared_.handler.cancel(id);  // the client left while its request was being prepared
    }
  }

  void begin_request() {
    ++generation_;
    ++shared_.active_requests;
    in_request_ = true;
    head_sent_ = false;
    request_id_ = 0;
    pending_headers_.reset();
    events_.clear();
  }

  // An error found by the transport itself; the connection closes after it.
  void reply_error(int status, const std::string& message, const char* code) {
    parser_.reset();
    keep_alive_ = false;
    begin_request();
    respond(HttpResponse{status, "application/json", ApiError{status, message, "invalid_request_error", "", code}.to_json(), {}});
  }

  template <class Response>
  void set_headers(Response& res, const std::vector<std::pair<std::string, std::string>>& headers) {
    for (const auto& [k, v] : headers) res.set(k, v);
    // HSTS pins a browser to HTTPS for the whole host: meaningful only over TLS (RFC 6797 §7.2),
    // and on --insecure-http the proxy in front, not this server, decides it for its domain.
    if constexpr (!kTls) res.erase(http::field::strict_transport_security);
  }

  void respond(HttpResponse r) {
    if (!in_request_ || head_sent_ || closed_) return;  // a late answer after the stream began: ignore
    pending_headers_.reset();
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), version_);
    res->set(http::field::server, "tiergate");
    res->set(http::field::content_type, r.content_type);
    set_headers(*res, r.headers);
    res->keep_alive(keep_alive_ && !shared_.stopping);
    res->body() = std::move(r.body);
    res->prepare_payload();
    head_sent_ = true;
    lowest().expires_after(shared_.options.write_timeout);
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec) return self->on_write_error(ec);
      self->finish_request(!res->keep_alive());
    });
  }

  void enqueue(std::string event, bool last) {
    if (events_.size() >= kMaxQueuedEvents) return abort();  // the client is not reading: give up on it
    events_.push_back({std::move(event), last});
    if (!writing_) write_next();
  }

  // HTTP/1.1 streams are chunked; HTTP/1.0 knows no chunks, so its stream ends when the connection does.
  bool chunked() const { return version_ >= 11; }

  void write_next() {
    if (events_.empty() || closed_) return;
    writing_ = true;
    lowest().expires_after(shared_.options.write_timeout);
    if (!head_sent_) {
      HttpResponse h = pending_headers_.value_or(HttpResponse{200, "text/event-stream", "", {}});
      auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(h.status), version_);
      res->set(http::field::server, "tiergate");
      res->set(http::field::content_type, h.content_type);
      set_headers(*res, h.headers);
      res->keep_alive(keep_alive_ && chunked() && !shared_.stopping);
      if (chunked()) res->chunked(true);
      keep_alive_ = res->keep_alive();
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
    auto done = [self = this->shared_from_this(), last = e.last](beast::error_code ec, std::size_t) {
      if (!last) return self->on_event_written(ec);
      self->writing_ = false;
      if (ec) return self->on_write_error(ec);
      self->finish_request(!self->keep_alive_);
    };
    if (e.last) {
      if (chunked()) return net::async_write(stream_, http::make_chunk_last(), std::move(done));
      return net::post(stream_.get_executor(), [done = std::move(done)]() mutable { done({}, 0); });
    }
    auto data = std::make_shared<std::string>(std::move(e.data));
    if (chunked()) {
      net::async_write(stream_, http::make_chunk(net::buffer(*data)),
                       [done = std::move(done), data](beast::error_code ec, std::size_t n) mutable { done(ec, n); });
    } else {
      net::async_write(stream_, net::buffer(*data),
                       [done = std::move(done), data](beast::error_code ec, std::size_t n) mutable { done(ec, n); });
    }
  }

  void on_event_written(beast::error_code ec) {
    writing_ = false;
    if (ec) return on_write_error(ec);
    write_next();
  }

  void on_write_error(beast::error_code ec) {
    if (ec == beast::error::timeout) ++shared_.timeouts[kWrite];
    abort();  // the client went away or stopped reading: stop generating for it
  }

  void finish_request(bool close_after) {
    if (in_request_) --shared_.active_requests;
    in_request_ = false;
    request_id_ = 0;
    head_sent_ = false;
    pending_headers_.reset();
    events_.clear();
    if (close_after || shared_.stopping) return close_after_answer();
    enter_idle();
  }

  // After a final answer: send FIN, then read (and drop) what the client still sends for a moment,
  // so that unread input does not turn the close into a reset that destroys the answer in flight.
  void close_after_answer() {
    if (closed_) return;
    closed_ = true;
    lingering_ = true;
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    ++idle_epoch_;
    timer_.expires_after(kLingerTime);
    timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) self->abort();
    });
    buffer_.consume(buffer_.size());
    if (watching_) return;
    // The TLS layer is done with; drain raw bytes.
    auto scratch = std::make_shared<std::array<char, kWatchBytes>>();
    drain(std::move(scratch));
  }

  void drain(std::shared_ptr<std::array<char, kWatchBytes>> scratch) {
    lowest().socket().async_read_some(net::buffer(*scratch), [self = this->shared_from_this(), scratch](beast::error_code ec, std::size_t) {
      if (ec) return self->abort();
      self->drain(scratch);
    });
  }

  // Closes the socket now; a request in flight is cancelled.
  void abort() {
    if (aborted_) return;
    aborted_ = true;
    closed_ = true;
    timer_.cancel();
    if (in_request_) {
      --shared_.active_requests;
      in_request_ = false;
    }
    if (request_id_ != 0) {
      shared_.handler.cancel(request_id_);
      request_id_ = 0;
    }
    events_.clear();
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close();
    release_slot();  // the socket is gone; a request still winding down holds no connection slot
  }

  void release_slot() {
    if (slot_released_) return;
    slot_released_ = true;
    shared_.limiter.release(client_);
  }

  struct Event {
    std::string data;
    bool last;
  };

  Stream stream_;
  Shared& shared_;
  const std::string client_;
  net::steady_timer timer_;  // the idle timeout, then the linger after a final answer
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::uint64_t generation_ = 0;  // requests begun on this connection; tags each request's sink
  std::uint64_t idle_epoch_ = 0;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  bool in_request_ = false;
  bool head_sent_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool closed_ = false;     // no further request on this connection
  bool lingering_ = false;  // closed after a final answer, draining input
  bool aborted_ = false;    // socket closed
  bool slot_released_ = false;
  std::optional<HttpResponse> pending_headers_;
  std::deque<Event> events_;
  std::uint64_t request_id_ = 0;
};

// The per-client key: the address; IPv6 clients by their /64, which one host usually holds whole.
std::string client_key(const tcp::endpoint& endpoint) {
  const net::ip::address a = endpoint.address();
  if (a.is_v6()) {
    const net::ip::address_v6 v6 = a.to_v6();
    if (v6.is_v4_mapped()) return net::ip::make_address_v4(net::ip::v4_mapped, v6).to_string();
    net::ip::address_v6::bytes_type bytes = v6.to_bytes();
    for (std::size_t i = 8; i < bytes.size(); ++i) bytes[i] = 0;
    return net::ip::address_v6(bytes).to_string() + "/64";
  }
  return a.to_string();
}

}  // namespace

struct HttpServer::Impl : TransportStatsSource {
  Impl(ServerOptions options, RequestHandler& handler)
      : shared(handler, std::move(options)), ioc(static_cast<int>(shared.options.threads)),
        tls(ssl::context::tls_server), acceptor(net::make_strand(ioc)), accept_timer(acceptor.get_executor()),
        signals(ioc), workers(std::max<std::size_t>(1, shared.options.worker_threads)) {
    shared.workers = &workers;
  }

  TransportStats transport_stats() const override {
    TransportStats s;
    s.connections = shared.limiter.open();
    s.sessions = shared.sessions;
    s.requests_in_flight = shared.active_requests;
    s.refused_total_limit = shared.refused_total;
    s.refused_per_client_limit = shared.refused_per_client;
    s.accept_errors = shared.accept_errors;
    s.timeouts_handshake = shared.timeouts[kHandshake];
    s.timeouts_idle = shared.timeouts[kIdle];
    s.timeouts_read = shared.timeouts[kRead];
    s.timeouts_write = shared.timeouts[kWrite];
    return s;
  }

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (shared.stopping) return;
      if (ec) {
        // Out of file descriptors (or another transient failure): the pending connection stays in
        // the backlog, so accepting again at once would spin. Back off, doubling up to a second.
        if (shared.accept_errors++ == 0 || accept_backoff == kAcceptBackoffMin) {
          std::fprintf(stderr, "tiergate: accept failed (%s); retrying with backoff\n", ec.message().c_str());
        }
        accept_timer.expires_after(accept_backoff);
        accept_backoff = std::min<std::chrono::milliseconds>(accept_backoff * 2, kAcceptBackoffMax);
        accept_timer.async_wait([this](beast::error_code tec) {
          if (!tec && !shared.stopping) accept();
        });
        return;
      }
      accept_backoff = kAcceptBackoffMin;
      admit(std::move(socket));
      accept();
    });
  }

  void admit(tcp::socket socket) {
    beast::error_code ec;
    const tcp::endpoint peer = socket.remote_endpoint(ec);
    if (ec) return;  // already gone
    std::string client = client_key(peer);
    switch (shared.limiter.try_acquire(client)) {
      case ConnectionLimiter::Admission::kServerFull:
        ++shared.refused_total;
        return;  // the socket closes here: refused at the door
      case ConnectionLimiter::Admission::kClientFull:
        ++shared.refused_per_client;
        return;
      case ConnectionLimiter::Admission::kAdmitted:
        break;
    }
    socket.set_option(tcp::no_delay(true), ec);  // SSE events are small; do not hold them back
    if (shared.options.tls) {
      std::make_shared<Session<TlsStream>>(TlsStream(beast::tcp_stream(std::move(socket)), tls), shared, std::move(client))
          ->start();
    } else {
      std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), shared, std::move(client))->start();
    }
  }

  void wait_signals() {
    signals.async_wait([this](beast::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        net::post(*shared.workers, [this] { shared.handler.reload_files(); });
        return wait_signals();
      }
      std::fprintf(stderr, "tiergate: signal %d: stopping (running requests get %llds)\n", signal,
                   static_cast<long long>(shared.options.shutdown_deadline.count()));
      begin_shutdown();
    });
  }

  // Reloadable files are re-read when they change (polled once a second, read on a worker).
  void watch_files() {
    auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::seconds(1));
    timer->async_wait([this, timer](beast::error_code ec) {
      if (ec || shared.stopping) return;
      net::post(*shared.workers, [this] { shared.handler.reload_changed_files(); });
      watch_files();
    });
  }

  void begin_shutdown() {
    if (shared.stopping.exchange(true)) return;
    beast::error_code ignored;
    acceptor.close(ignored);
    accept_timer.cancel();
    // Waiting requests get their 503 now; running ones may finish until the deadline.
    shared.handler.begin_shutdown();
    deadline = std::chrono::steady_clock::now() + shared.options.shutdown_deadline;
    poll_drain();
  }

  void poll_drain() {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline && !running_stopped) {
      // Past the deadline the running ones are answered too (503, or a final SSE error event);
      // their sessions then get a moment to write that before the loop stops.
      running_stopped = true;
      shared.handler.stop_running();
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
  net::steady_timer accept_timer;
  std::chrono::milliseconds accept_backoff = kAcceptBackoffMin;
  net::signal_set signals;
  std::chrono::steady_clock::time_point deadline;
  bool running_stopped = false;
  // Last member, so destroyed first: tasks it still holds own sessions, whose sockets need ioc.
  net::thread_pool workers;
};

HttpServer::HttpServer(ServerOptions options, RequestHandler& handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {}

HttpServer::~HttpServer() {
  impl_->workers.stop();
  impl_->workers.join();
}

void HttpServer::run(const std::function<void(std::uint16_t)>& on_listening) {
  Impl& s = *impl_;
  if (s.shared.options.tls) {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    SSL_CTX* ctx = s.tls.native_handle();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // Mozilla's "intermediate" profile. TLS 1.3 keeps OpenSSL's suites (all AEAD, all forward
    // secret); TLS 1.2, whose default list still holds CBC suites (padding oracles) and static-RSA
    // key exchange (no forward secrecy), is cut to ECDHE with AES-GCM or ChaCha20-Poly1305.
    // The server's order wins, so a client cannot talk it down to a weaker suite it also offers.
    if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
      throw std::runtime_error("OpenSSL refused the TLS 1.2 cipher list " + std::string(kTls12Ciphers));
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
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
  if (s.shared.options.handle_signals) {
    s.signals.add(SIGINT);
    s.signals.add(SIGTERM);
    s.signals.add(SIGHUP);
    s.wait_signals();
  }
  s.watch_files();
  s.accept();
  s.shared.handler.set_transport(&s);
  if (on_listening) on_listening(s.acceptor.local_endpoint().port());
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < s.shared.options.threads; ++i) threads.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (std::thread& t : threads) t.join();
  s.shared.handler.set_transport(nullptr);
}

void HttpServer::stop() {
  net::post(impl_->ioc, [this] { impl_->begin_shutdown(); });
}

}  // namespace tiergate::gateway
