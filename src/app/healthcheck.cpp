// `sluice healthcheck`: see healthcheck.hpp.
//
// Shape: one coroutine on a private io_context; a single beast::tcp_stream deadline covers
// resolving, connecting, writing the request and reading the answer, so the probe ends by itself
// within `timeout` whatever the other side does (accept and never answer, trickle bytes).
#include "sluice/app/healthcheck.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "sluice/core/duration.hpp"

namespace sluice::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A listener bound to every interface is reached on loopback.
std::string connect_host(const std::string& listen_host) {
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(listen_host, ec);
  if (ec || !address.is_unspecified()) return listen_host;
  return address.is_v6() ? "::1" : "127.0.0.1";
}

std::string host_port(const std::string& host, std::uint16_t port) {
  return config::HostPort{host, port}.to_string();
}

// The answer's body on one line, shortened: enough for `docker inspect` to say why.
std::string one_line(std::string text, std::size_t max = 200) {
  for (char& c : text) {
    if (c == '\r' || c == '\n' || c == '\t') c = ' ';
  }
  while (!text.empty() && text.back() == ' ')
    text.pop_back();
  if (text.size() > max) text = text.substr(0, max) + "...";
  return text;
}

asio::awaitable<void> run(HealthTarget target, core::Duration timeout, HealthResult& result) {
  const std::string what = target.describe();
  const std::string timed_out = what + ": timeout after " + core::format_duration(timeout);
  auto executor = co_await asio::this_coro::executor;
  beast::tcp_stream stream(executor);
  // One deadline for everything below. The stream's timer bounds connect, write and read; the
  // lookup is not a stream operation (an IP literal resolves at once; a name is bounded by the
  // system resolver's own timeouts), so the time it took is checked against the deadline.
  stream.expires_after(timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  tcp::resolver resolver(executor);
  auto [resolve_error, endpoints] = co_await resolver.async_resolve(
      target.host, std::to_string(target.port), tcp::resolver::numeric_service, use_tuple);
  if (resolve_error) {
    result.message = what + ": resolve " + target.host + ": " + resolve_error.message();
    co_return;
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    result.message = timed_out;
    co_return;
  }
  auto [connect_error, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
  if (connect_error) {
    result.message = connect_error == beast::error::timeout
                         ? timed_out
                         : what + ": connect: " + connect_error.message();
    co_return;
  }
  if (target.path.empty()) {
    result.healthy = true;
    result.message = what + ": accepted";
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return;
  }

  http::request<http::empty_body> request{http::verb::get, target.path, 11};
  request.set(http::field::host, host_port(target.host, target.port));
  request.set(http::field::user_agent, "sluice-healthcheck");
  request.set(http::field::connection, "close");
  auto [write_error, written] = co_await http::async_write(stream, request, use_tuple);
  (void)written;
  if (write_error) {
    result.message = write_error == beast::error::timeout
                         ? timed_out
                         : what + ": send: " + write_error.message();
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(8 * 1024);
  parser.body_limit(64 * 1024);
  auto [read_error, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
  (void)read;
  if (read_error) {
    result.message = read_error == beast::error::timeout
                         ? timed_out
                         : what + ": receive: " + read_error.message();
    co_return;
  }
  const auto& response = parser.get();
  const unsigned status = response.result_int();
  result.healthy = status == 200;
  result.message = what + ": " + std::to_string(status);
  if (!result.healthy && !response.body().empty()) {
    result.message += " " + one_line(response.body());
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

std::string HealthTarget::describe() const {
  if (path.empty()) return "connect to " + host_port(host, port);
  return "GET http://" + host_port(host, port) + path;
}

std::variant<HealthTarget, std::string> health_target(const config::Config& config, bool ready) {
  if (config.admin_listen) {
    const config::HostPort& admin = *config.admin_listen;
    if (admin.port == 0) {
      return std::string("admin_listen " + admin.to_string() +
                         " picks a free port at start; the health check cannot know which");
    }
    return HealthTarget{connect_host(admin.host), admin.port, ready ? "/readyz" : "/healthz"};
  }
  if (ready) {
    return std::string(
        "--ready asks the admin listener's /readyz, but admin_listen is \"\" (disabled)");
  }
  if (config.listen.port == 0) {
    return std::string("listen " + config.listen.to_string() +
                       " picks a free port at start; the health check cannot know which");
  }
  return HealthTarget{connect_host(config.listen.host), config.listen.port, ""};
}

HealthResult probe_health(const HealthTarget& target, core::Duration timeout) {
  HealthResult result;
  try {
    asio::io_context io;
    asio::co_spawn(io, run(target, timeout, result), [&result](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& error) {
        result.healthy = false;
        result.message = "health check failed: " + std::string(error.what());
      }
    });
    io.run();
  } catch (const std::exception& error) {
    result.healthy = false;
    result.message = "health check failed: " + std::string(error.what());
  }
  return result;
}

}  // namespace sluice::app
