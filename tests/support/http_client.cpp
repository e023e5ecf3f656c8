// Blocking HTTP/1.1 test client (see http_client.hpp). Each blocking call starts one Asio
// operation and runs the private io_context for at most the timeout; on timeout the socket's
// operations are cancelled (no data is lost) and the call reports ReadStatus::timeout.
#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <sstream>
#include <stdexcept>

namespace sluice::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

bool iequal(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

}  // namespace

HttpRequest post_json(std::string target, std::string body, std::vector<Header> headers) {
  HttpRequest r;
  r.method = "POST";
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers = std::move(headers);
  bool has_type = false;
  for (auto& h : r.headers)
    has_type = has_type || iequal(h.name, "content-type");
  if (!has_type) r.headers.push_back({"Content-Type", "application/json"});
  return r;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequal(h.name, name)) return h.value;
  return std::nullopt;
}

struct HttpClient::Impl {
  Impl(std::string h, std::uint16_t p) : host(std::move(h)), port(p), socket(ioc) {}

  asio::io_context ioc;
  std::string host;
  std::uint16_t port;
  tcp::socket socket;
  bool connected = false;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> parser;
  bool head_request = false;
  HttpResponse resp;
  std::vector<BodyChunk> ready;  // completed chunks not yet handed out
  std::string partial;           // bytes of the HTTP chunk being received
  std::size_t plain_taken = 0;   // non-chunked: body bytes already handed out
  std::function<std::uint64_t(std::uint64_t, std::string_view, beast::error_code&)> on_body;

  // Runs one operation for at most `timeout`; returns its error, or timed_out.
  template <typename Start>
  beast::error_code run(Start&& start, milliseconds timeout) {
    bool done = false;
    beast::error_code result;
    start([&](beast::error_code ec, std::size_t = 0) {
      done = true;
      result = ec;
    });
    ioc.restart();
    ioc.run_for(timeout);
    if (!done) {
      beast::error_code ignore;
      socket.cancel(ignore);
      ioc.restart();
      ioc.run();
      if (result == asio::error::operation_aborted) return asio::error::timed_out;
    }
    return result;
  }

  void new_parser() {
    parser.emplace();
    parser->body_limit(1ull << 32);
    parser->header_limit(1 << 20);
    if (head_request) parser->skip(true);
    on_body = [this](std::uint64_t remain, std::string_view body, beast::error_code&) {
      partial.append(body.data(), body.size());
      if (body.size() == remain) {
        ready.push_back({std::move(partial), Clock::now()});
        partial.clear();
      }
      return std::uint64_t(body.size());
    };
    parser->on_chunk_body(on_body);
  }

  void reset_response() {
    resp = HttpResponse{};
    ready.clear();
    partial.clear();
    plain_taken = 0;
    new_parser();
  }

  void write(std::string_view bytes, milliseconds timeout) {
    if (!connected) connect(timeout);
    auto ec = run(
        [&](auto handler) {
          asio::async_write(
              socket, asio::buffer(bytes.data(), bytes.size()),
              [handler](beast::error_code e, std::size_t n) mutable { handler(e, n); });
        },
        timeout);
    if (ec) throw std::runtime_error("send failed: " + ec.message());
    resp.sent_at = Clock::now();
  }

  void connect(milliseconds timeout) {
    const tcp::endpoint ep(asio::ip::make_address(host), port);
    auto ec = run(
        [&](auto handler) {
          socket.async_connect(ep, [handler](beast::error_code e) mutable { handler(e, 0); });
        },
        timeout);
    if (ec)
      throw std::runtime_error("connect to " + host + ":" + std::to_string(port) +
                               " failed: " + ec.message());
    socket.set_option(tcp::no_delay(true));
    connected = true;
  }

  void take_head() {
    const auto& msg = parser->get();
    resp.status = int(msg.result_int());
    resp.headers.clear();
    for (const auto& f : msg)
      resp.headers.push_back({std::string(f.name_string()), std::string(f.value())});
    resp.chunked = parser->chunked();
    resp.head_at = Clock::now();
  }

  // Moves newly received non-chunked body bytes into `ready`.
  void take_plain() {
    if (resp.chunked) return;
    const auto& body = parser->get().body();
    if (body.size() > plain_taken) {
      ready.push_back({body.substr(plain_taken), Clock::now()});
      plain_taken = body.size();
    }
  }
};

HttpClient::HttpClient(std::string host, std::uint16_t port)
    : impl_(std::make_unique<Impl>(std::move(host), port)) {}

HttpClient::~HttpClient() = default;

void HttpClient::connect(milliseconds timeout) {
  impl_->connect(timeout);
}

void HttpClient::send(const HttpRequest& req, milliseconds timeout) {
  http::request<http::string_body> msg;
  msg.method_string(req.method);
  msg.target(req.target);
  msg.version(11);
  bool has_host = false;
  for (const auto& h : req.headers) {
    msg.insert(h.name, h.value);
    has_host = has_host || iequal(h.name, "host");
  }
  if (!has_host) msg.set(http::field::host, impl_->host + ":" + std::to_string(impl_->port));
  msg.body() = req.body;
  if (!req.body.empty() || req.method == "POST") msg.prepare_payload();
  std::ostringstream out;
  out << msg;
  impl_->head_request = req.method == "HEAD";
  impl_->reset_response();
  impl_->write(out.str(), timeout);
}

void HttpClient::send_raw(std::string_view bytes, milliseconds timeout) {
  impl_->head_request = false;
  if (!impl_->parser) impl_->reset_response();
  impl_->write(bytes, timeout);
}

void HttpClient::next_response() {
  impl_->head_request = false;
  impl_->reset_response();
}

ReadStatus HttpClient::read_head(milliseconds timeout) {
  auto& d = *impl_;
  if (!d.parser) d.reset_response();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (d.parser->is_header_done()) {
      if (d.parser->get().result_int() / 100 == 1) {
        const int interim = int(d.parser->get().result_int());
        const auto sent = d.resp.sent_at;
        d.reset_response();
        d.resp.interim_status = interim;
        d.resp.sent_at = sent;
        continue;
      }
      d.take_head();
      return ReadStatus::ok;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return ReadStatus::timeout;
    auto ec = d.run(
        [&](auto handler) {
          http::async_read_header(
              d.socket, d.buffer, *d.parser,
              [handler](beast::error_code e, std::size_t n) mutable { handler(e, n); });
        },
        left);
    if (ec == asio::error::timed_out) return ReadStatus::timeout;
    if (ec) return ReadStatus::closed;
  }
}

ReadStatus HttpClient::read_chunk(BodyChunk& chunk, milliseconds timeout) {
  auto& d = *impl_;
  if (!d.parser || !d.parser->is_header_done()) {
    const auto st = read_head(timeout);
    if (st != ReadStatus::ok) return st;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    d.take_plain();
    if (!d.ready.empty()) {
      chunk = std::move(d.ready.front());
      d.ready.erase(d.ready.begin());
      d.resp.body += chunk.data;
      d.resp.chunks.push_back(chunk);
      return ReadStatus::ok;
    }
    if (d.parser->is_done()) {
      d.resp.complete = true;
      d.resp.done_at = Clock::now();
      return ReadStatus::end;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return ReadStatus::timeout;
    auto ec = d.run(
        [&](auto handler) {
          http::async_read_some(
              d.socket, d.buffer, *d.parser,
              [handler](beast::error_code e, std::size_t n) mutable { handler(e, n); });
        },
        left);
    if (ec == asio::error::timed_out) return ReadStatus::timeout;
    if (ec) {
      d.take_plain();
      if (!d.ready.empty()) continue;
      return ReadStatus::closed;
    }
  }
}

ReadStatus HttpClient::read_to_end(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  BodyChunk chunk;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    const auto st = read_chunk(chunk, std::max(left, milliseconds(0)));
    if (st != ReadStatus::ok) return st;
  }
}

HttpResponse HttpClient::request(const HttpRequest& req, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  send(req, timeout);
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  const auto st = read_to_end(left);
  if (st != ReadStatus::end)
    throw std::runtime_error(req.method + " " + req.target + ": " +
                             (st == ReadStatus::timeout ? "timed out" : "connection closed") +
                             " (status " + std::to_string(impl_->resp.status) +
                             ", body so far: " + impl_->resp.body.substr(0, 300) + ")");
  return impl_->resp;
}

const HttpResponse& HttpClient::response() const {
  return impl_->resp;
}

void HttpClient::abort(bool reset) {
  beast::error_code ec;
  if (reset) impl_->socket.set_option(asio::socket_base::linger(true, 0), ec);
  impl_->socket.close(ec);
  impl_->connected = false;
}

void HttpClient::half_close() {
  beast::error_code ec;
  impl_->socket.shutdown(tcp::socket::shutdown_send, ec);
}

bool HttpClient::wait_closed(milliseconds timeout) {
  auto& d = *impl_;
  const auto deadline = Clock::now() + timeout;
  char byte[512];
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    auto ec = d.run(
        [&](auto handler) {
          d.socket.async_read_some(
              asio::buffer(byte),
              [handler](beast::error_code e, std::size_t n) mutable { handler(e, n); });
        },
        left);
    if (ec == asio::error::timed_out) return false;
    if (ec) return true;
  }
}

HttpResponse http_request(std::uint16_t port, const HttpRequest& req, milliseconds timeout) {
  HttpClient client("127.0.0.1", port);
  return client.request(req, timeout);
}

}  // namespace sluice::test
