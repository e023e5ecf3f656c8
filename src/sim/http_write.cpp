// Writing sluice-sim's responses: whole bodies (Content-Length below 2048 bytes, chunked above,
// as Go's net/http), chunked streams, the half-body of a mid-stream fault, close and reset.
// Every write has its own timeout (--write-timeout).
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "server_impl.hpp"

namespace sluice::sim {
namespace {

using asio::use_awaitable;

constexpr std::size_t kContentLengthThreshold = 2048;  // Go sends Content-Length below this

template <typename Body>
void common_headers(http::response<Body>& res) {
  res.set(http::field::date, http_date(std::chrono::system_clock::now()));
}

}  // namespace

asio::awaitable<void> SimServer::Impl::write_body(Conn& c, const Request& req, http::status status,
                                                  std::string_view content_type, std::string body,
                                                  std::string_view allow) {
  http::response<http::string_body> res{status, req.version()};
  common_headers(res);
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  if (!allow.empty()) res.set(http::field::allow, allow);
  res.keep_alive(req.keep_alive());
  const bool head = req.method() == http::verb::head;
  if (!head && body.size() >= kContentLengthThreshold) {
    res.chunked(true);
    res.body() = std::move(body);
  } else {
    res.content_length(body.size());
    if (!head) res.body() = std::move(body);
  }
  http::response_serializer<http::string_body> sr{res};
  c.stream.expires_after(cfg.write_timeout);
  co_await http::async_write(c.stream, sr, use_awaitable);
}

asio::awaitable<void> SimServer::Impl::write_error(Conn& c, const Request& req, Route route,
                                                   int status, std::string_view message) {
  co_await write_body(c, req, http::status(status),
                      is_openai(route) ? "application/json" : "application/json; charset=utf-8",
                      error_body(route, status, message));
}

asio::awaitable<void> SimServer::Impl::write_stream_header(Conn& c, const Request& req,
                                                           Route route) {
  http::response<http::empty_body> res{http::status::ok, req.version()};
  common_headers(res);
  res.set(http::field::content_type, stream_content_type(route));
  res.keep_alive(req.keep_alive());
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  c.stream.expires_after(cfg.write_timeout);
  co_await http::async_write_header(c.stream, sr, use_awaitable);
}

asio::awaitable<void> SimServer::Impl::write_chunk(Conn& c, const std::string& data) {
  c.stream.expires_after(cfg.write_timeout);
  co_await asio::async_write(c.stream, http::make_chunk(asio::buffer(data)), use_awaitable);
}

asio::awaitable<void> SimServer::Impl::write_last_chunk(Conn& c) {
  c.stream.expires_after(cfg.write_timeout);
  co_await asio::async_write(c.stream, http::make_chunk_last(), use_awaitable);
}

asio::awaitable<void> SimServer::Impl::write_partial(Conn& c, const Request& req,
                                                     std::string_view content_type,
                                                     const std::string& body) {
  http::response<http::empty_body> res{http::status::ok, req.version()};
  common_headers(res);
  res.set(http::field::content_type, content_type);
  res.content_length(body.size());
  http::response_serializer<http::empty_body> sr{res};
  c.stream.expires_after(cfg.write_timeout);
  co_await http::async_write_header(c.stream, sr, use_awaitable);
  c.stream.expires_after(cfg.write_timeout);
  co_await asio::async_write(c.stream, asio::buffer(body.data(), body.size() / 2), use_awaitable);
}

void SimServer::Impl::close(Conn& c) {
  if (c.closed) return;
  c.closed = true;
  boost::system::error_code ec;
  c.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  c.stream.socket().close(ec);
}

void SimServer::Impl::reset(Conn& c) {
  if (c.closed) return;
  c.closed = true;
  boost::system::error_code ec;
  c.stream.socket().set_option(asio::socket_base::linger(true, 0), ec);
  c.stream.socket().close(ec);
}

}  // namespace sluice::sim
