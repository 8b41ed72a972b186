// http-load: an open-loop HTTP/1.1 load generator for latency at a constant request rate, over TLS
// or plain TCP keep-alive connections (wrk2's method; wrk2 is not in Debian and wrk has no rate
// control). Each connection sends on a fixed schedule, rate / connections apart, phases staggered;
// a request's latency runs from the moment it was *scheduled*, so a slow answer that delays the
// next send is charged to that request too (no coordinated omission). With --rate 0 each
// connection sends as soon as its previous answer arrived (closed loop, like wrk).
//
// One thread, one io_context. Prints one line of key=value results that scripts parse:
//   requests= errors= seconds= achieved_rps= p50_ms= p90_ms= p99_ms= p999_ms= max_ms=
// Exit status 1 on a connection failure or any non-2xx answer, 2 on bad arguments.
#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  bool tls = true;
  std::string host, port, path;
  std::string method = "POST";
  std::string body;
  std::vector<std::string> headers;
  std::size_t connections = 1;
  double rate = 0;       // requests/s over all connections; 0 = closed loop
  double seconds = 10;   // measured
  double warmup = 1;     // sent but not measured
};

struct Results {
  std::vector<double> latencies_ms;
  std::size_t errors = 0;
  std::string first_error;
  std::size_t active_connections = 0;
  std::function<void()> on_all_done;  // called when the last connection has finished
  void fail(std::string why) {
    if (errors++ == 0) first_error = std::move(why);
  }
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "http-load: " << why << "\n"
            << "usage: http-load URL [--connections N] [--rate R] [--seconds S] [--warmup S]\n"
            << "                 [--method M] [--body TEXT | --body-file F] [--header 'K: V']...\n";
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::string url;
  auto number = [&](int& i, const char* flag) {
    if (++i >= argc) usage(std::string(flag) + " needs a value");
    double v = 0;
    const std::string_view s = argv[i];
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v < 0) usage(std::string(flag) + " wants a number >= 0, got " + argv[i]);
    return v;
  };
  auto text = [&](int& i, const char* flag) -> std::string {
    if (++i >= argc) usage(std::string(flag) + " needs a value");
    return argv[i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--connections") o.connections = static_cast<std::size_t>(number(i, "--connections"));
    else if (a == "--rate") o.rate = number(i, "--rate");
    else if (a == "--seconds") o.seconds = number(i, "--seconds");
    else if (a == "--warmup") o.warmup = number(i, "--warmup");
    else if (a == "--method") o.method = text(i, "--method");
    else if (a == "--body") o.body = text(i, "--body");
    else if (a == "--body-file") {
      std::ifstream f(text(i, "--body-file"), std::ios::binary);
      if (!f) usage(std::string("cannot read ") + argv[i]);
      o.body.assign(std::istreambuf_iterator<char>(f), {});
    } else if (a == "--header") o.headers.push_back(text(i, "--header"));
    else if (!a.empty() && a[0] != '-' && url.empty()) url = a;
    else usage("unknown argument " + std::string(a));
  }
  if (url.empty()) usage("no URL");
  if (o.connections == 0) usage("--connections must be at least 1");
  std::string_view rest = url;
  if (rest.starts_with("https://")) rest.remove_prefix(8);
  else if (rest.starts_with("http://")) { rest.remove_prefix(7); o.tls = false; }
  else usage("URL must start with http:// or https://");
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  o.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  const auto colon = authority.rfind(':');
  o.host = std::string(authority.substr(0, colon));
  o.port = colon == std::string_view::npos ? (o.tls ? "443" : "80") : std::string(authority.substr(colon + 1));
  return o;
}

std::string build_request(const Options& o) {
  std::ostringstream r;
  r << o.method << ' ' << o.path << " HTTP/1.1\r\nHost: " << o.host << ':' << o.port << "\r\n";
  for (const auto& h : o.headers) r << h << "\r\n";
  if (!o.body.empty() || o.method == "POST") r << "Content-Length: " << o.body.size() << "\r\n";
  r << "\r\n" << o.body;
  return r.str();
}

// Status code and Content-Length of a response head; nullopt-like -1 when it cannot be framed.
struct Head {
  int status = 0;
  long long content_length = -1;
};
Head parse_head(std::string_view head) {
  Head h;
  if (head.size() < 12 || !head.starts_with("HTTP/1.")) return h;
  std::from_chars(head.data() + 9, head.data() + 12, h.status);
  std::size_t line = head.find("\r\n");
  while (line != std::string_view::npos && line + 2 < head.size()) {
    const std::size_t next = head.find("\r\n", line + 2);
    const std::string_view field = head.substr(line + 2, next - line - 2);
    const auto colon = field.find(':');
    if (colon != std::string_view::npos) {
      std::string name(field.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      if (name == "content-length") {
        std::string_view v = field.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        std::from_chars(v.data(), v.data() + v.size(), h.content_length);
      }
    }
    line = next;
  }
  return h;
}

template <class Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>> {
 public:
  Connection(Stream stream, const std::string& request, const Options& o, Results& results,
             Clock::time_point start, Clock::duration phase)
      : stream_(std::move(stream)), timer_(stream_.get_executor()), request_(request),
        results_(results), measure_from_(start + to_duration(o.warmup)),
        end_(measure_from_ + to_duration(o.seconds)), next_(start + phase),
        interval_(o.rate > 0 ? to_duration(static_cast<double>(o.connections) / o.rate) : Clock::duration::zero()) {}

  ~Connection() {
    if (--results_.active_connections == 0 && results_.on_all_done) results_.on_all_done();
  }

  void run() {
    ++results_.active_connections;
    schedule();
  }

 private:
  static Clock::duration to_duration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void schedule() {
    if (next_ >= end_) return;
    if (interval_ == Clock::duration::zero() || Clock::now() >= next_) return send();
    timer_.expires_at(next_);
    timer_.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->send();
    });
  }

  void send() {
    sent_at_ = interval_ == Clock::duration::zero() ? Clock::now() : next_;
    asio::async_write(stream_, asio::buffer(request_),
                      [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec) return self->results_.fail("write: " + ec.message());
                        self->read_head();
                      });
  }

  void read_head() {
    asio::async_read_until(stream_, asio::dynamic_buffer(buffer_), "\r\n\r\n",
                           [self = this->shared_from_this()](boost::system::error_code ec, std::size_t n) {
                             if (ec) return self->results_.fail("read: " + ec.message());
                             self->on_head(n);
                           });
  }

  void on_head(std::size_t head_bytes) {
    const Head h = parse_head(std::string_view(buffer_).substr(0, head_bytes));
    if (h.content_length < 0) return results_.fail("response without Content-Length: " + buffer_.substr(0, 80));
    status_ = h.status;
    const std::size_t total = head_bytes + static_cast<std::size_t>(h.content_length);
    if (buffer_.size() >= total) return on_response(total);
    asio::async_read(stream_, asio::dynamic_buffer(buffer_), asio::transfer_exactly(total - buffer_.size()),
                     [self = this->shared_from_this(), total](boost::system::error_code ec, std::size_t) {
                       if (ec) return self->results_.fail("read body: " + ec.message());
                       self->on_response(total);
                     });
  }

  void on_response(std::size_t bytes) {
    const Clock::time_point now = Clock::now();
    if (status_ < 200 || status_ > 299) return results_.fail("HTTP " + std::to_string(status_) + ": " + buffer_.substr(0, 200));
    buffer_.erase(0, bytes);
    if (sent_at_ >= measure_from_)
      results_.latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - sent_at_).count());
    next_ = interval_ == Clock::duration::zero() ? now : next_ + interval_;
    schedule();
  }

  Stream stream_;
  asio::steady_timer timer_;
  const std::string& request_;
  Results& results_;
  const Clock::time_point measure_from_, end_;
  Clock::time_point next_, sent_at_;
  const Clock::duration interval_;
  std::string buffer_;
  int status_ = 0;
};

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const std::size_t i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size()))) - (q > 0 ? 1 : 0);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  const std::string request = build_request(o);
  asio::io_context io(1);
  ssl::context tls(ssl::context::tls_client);
  tls.set_verify_mode(ssl::verify_none);  // loopback benchmarks against self-signed certificates
  Results results;
  try {
    tcp::resolver resolver(io);
    const auto endpoints = resolver.resolve(o.host, o.port);
    const Clock::time_point start = Clock::now() + std::chrono::milliseconds(50);
    const double spacing = o.rate > 0 ? 1.0 / o.rate : 0.0;  // stagger: connection i starts i / rate later
    for (std::size_t i = 0; i < o.connections; ++i) {
      const auto phase = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spacing * static_cast<double>(i)));
      tcp::socket socket(io);
      asio::connect(socket, endpoints);
      socket.set_option(tcp::no_delay(true));
      if (o.tls) {
        ssl::stream<tcp::socket> stream(std::move(socket), tls);
        SSL_set_tlsext_host_name(stream.native_handle(), o.host.c_str());
        stream.handshake(ssl::stream_base::client);
        std::make_shared<Connection<ssl::stream<tcp::socket>>>(std::move(stream), request, o, results, start, phase)->run();
      } else {
        std::make_shared<Connection<tcp::socket>>(std::move(socket), request, o, results, start, phase)->run();
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "http-load: cannot connect to " << o.host << ':' << o.port << ": " << e.what() << "\n";
    return 1;
  }
  // Answers still missing 10 s after the schedule ended count as failures; the run always ends.
  asio::steady_timer deadline(io, std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.warmup + o.seconds + 10.0)));
  bool timed_out = false;
  deadline.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    io.stop();
  });
  results.on_all_done = [&] { deadline.cancel(); };
  const auto began = Clock::now();
  io.run();
  if (timed_out) results.fail("answers still missing 10 s after the schedule ended");
  const double elapsed = std::chrono::duration<double>(Clock::now() - began).count() - o.warmup;
  auto& l = results.latencies_ms;
  std::sort(l.begin(), l.end());
  std::printf("requests=%zu errors=%zu seconds=%.2f achieved_rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
              l.size(), results.errors, elapsed, static_cast<double>(l.size()) / o.seconds, percentile(l, 0.50),
              percentile(l, 0.90), percentile(l, 0.99), percentile(l, 0.999), l.empty() ? 0.0 : l.back());
  if (results.errors > 0) {
    std::cerr << "http-load: " << results.errors << " failed requests; first: " << results.first_error << "\n";
    return 1;
  }
  return 0;
}
