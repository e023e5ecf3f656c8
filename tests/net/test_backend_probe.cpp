// probe_get(): sluice's own small GETs to a backend, against raw loopback servers that answer
// well, slowly, too much, or not HTTP at all.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>

#include "backend_probe.hpp"
#include "sluice/net/proxy.hpp"

using namespace sluice;
using namespace sluice::net;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// Accepts one connection, records the request head, waits `delay`, writes `answer`, closes.
struct RawServer {
  RawServer(asio::io_context& io, std::string answer, std::chrono::milliseconds delay = 0ms)
      : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(
        io,
        [this, answer = std::move(answer), delay]() -> asio::awaitable<void> {
          tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
          asio::streambuf buffer;
          co_await asio::async_read_until(socket, buffer, "\r\n\r\n", asio::use_awaitable);
          head.assign(asio::buffers_begin(buffer.data()), asio::buffers_end(buffer.data()));
          asio::steady_timer timer(socket.get_executor(), delay);
          co_await timer.async_wait(asio::use_awaitable);
          co_await asio::async_write(socket, asio::buffer(answer), asio::use_awaitable);
          boost::system::error_code ignored;
          socket.shutdown(tcp::socket::shutdown_both, ignored);
        },
        asio::detached);
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  tcp::acceptor acceptor;
  std::string head;
};

ProbeResult run_probe(asio::io_context& io, std::uint16_t port, std::string path,
                      std::chrono::milliseconds timeout, std::size_t max_body = kMaxProbeBody) {
  config::UpstreamConfig upstream;
  upstream.host = "127.0.0.1";
  upstream.port = port;
  upstream.host_header = "127.0.0.1:" + std::to_string(port);
  upstream.base_path = "/ollama";
  upstream.connect_timeout = 2s;
  UpstreamPool pool(io.get_executor(), 4);
  std::optional<ProbeResult> out;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        out = co_await probe_get(pool, upstream, path, timeout, max_body);
      },
      asio::detached);
  io.run_for(10s);
  REQUIRE(out.has_value());
  return std::move(*out);
}

}  // namespace

TEST_CASE("probe_get: reads status and body; sends the base path and the backend's Host") {
  asio::io_context io(kIoConcurrencyHint);
  RawServer server(io,
                   "HTTP/1.1 100 Continue\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   "20\r\n\r\n{\"version\":\"0.9.0\"}\n");
  ProbeResult r = run_probe(io, server.port(), "/api/version", 2000ms);
  CHECK(r.error == "");
  CHECK(r.status == 200);
  CHECK(r.body == "{\"version\":\"0.9.0\"}\n");
  CHECK(probe_problem(r) == "");
  CHECK(server.head.rfind("GET /ollama/api/version HTTP/1.1\r\n", 0) == 0);
  CHECK(server.head.find("Host: 127.0.0.1:" + std::to_string(server.port())) != std::string::npos);
}

TEST_CASE("probe_get: a body without length ends with the connection") {
  asio::io_context io(kIoConcurrencyHint);
  RawServer server(io, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy");
  ProbeResult r = run_probe(io, server.port(), "/api/tags", 2000ms);
  CHECK(r.error == "");
  CHECK(r.status == 503);
  CHECK(r.body == "busy");
  CHECK(probe_problem(r) == "status 503");
}

TEST_CASE("probe_get: bounded in time and size; not HTTP; refused") {
  asio::io_context io(kIoConcurrencyHint);
  SUBCASE("slow") {
    RawServer server(io, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3000ms);
    ProbeResult r = run_probe(io, server.port(), "/api/version", 200ms);
    CHECK(r.error == "timeout");
    CHECK(r.elapsed < 2s);
  }
  SUBCASE("too large") {
    RawServer server(io, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
    ProbeResult r = run_probe(io, server.port(), "/api/tags", 2000ms, 10);
    CHECK(r.error == "answer larger than 10 bytes");
  }
  SUBCASE("not HTTP") {
    RawServer server(io, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
    ProbeResult r = run_probe(io, server.port(), "/api/version", 2000ms);
    CHECK(r.error == "not an HTTP response");
  }
  SUBCASE("refused") {
    std::uint16_t port;
    {
      tcp::acceptor closed(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      port = closed.local_endpoint().port();
    }
    ProbeResult r = run_probe(io, port, "/api/version", 2000ms);
    CHECK(r.error.rfind("connect: ", 0) == 0);
  }
}
