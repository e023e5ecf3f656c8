// A blocking one-shot HTTP/1.1 client (see http_get.hpp).
#include "http_get.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto as_tuple = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxBodyBytes = 256 * 1024 * 1024;

}  // namespace

GetResult http_get(const HttpTarget& target, const std::string& path, std::chrono::seconds timeout,
                   const std::string* post_body) {
  GetResult result;
  asio::io_context ioc(1);
  auto op = [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(target.host, std::to_string(target.port), as_tuple);
    if (rec) {
      result.error = "resolve " + target.host + ": " + rec.message();
      co_return;
    }
    beast::tcp_stream stream(ex);
    stream.expires_after(timeout);
    auto [cec, ep] = co_await stream.async_connect(endpoints, as_tuple);
    if (cec) {
      result.error = "connect " + target.to_string() + ": " + cec.message();
      co_return;
    }
    http::request<http::string_body> req{post_body ? http::verb::post : http::verb::get,
                                         target.base_path + path, 11};
    req.set(http::field::host, target.host_header);
    req.set(http::field::user_agent, "sluice-bench");
    if (post_body) {
      req.set(http::field::content_type, "application/json");
      req.body() = *post_body;
      req.prepare_payload();
    }
    result.sent = Clock::now();
    stream.expires_after(timeout);
    auto [wec, wn] = co_await http::async_write(stream, req, as_tuple);
    if (wec) {
      result.error = "write: " + wec.message();
      co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    stream.expires_after(timeout);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, as_tuple);
    result.received = Clock::now();
    if (hec) {
      result.error = "read: " + hec.message();
      co_return;
    }
    stream.expires_after(timeout);
    auto [bec, bn] = co_await http::async_read(stream, buffer, parser, as_tuple);
    if (bec) {
      result.error = "read: " + bec.message();
      co_return;
    }
    result.status = parser.get().result_int();
    result.body = std::move(parser.get().body());
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  };
  asio::co_spawn(ioc, op(), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      result.error = ex.what();
    }
  });
  ioc.run();
  return result;
}

}  // namespace sluice::bench
