// The admin listener over real loopback sockets (127.0.0.1, port 0), driven by client coroutines
// on the same single-threaded io_context: routing and status codes, handler results, limits,
// timeouts, keep-alive and stop(). Bounded: every test runs the io_context with a time limit.
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "sluice/app/admin_server.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using namespace sluice::app;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  asio::io_context io;
  int reloads = 0;
  bool ready = true;
  std::unique_ptr<AdminServer> server;
  tcp::endpoint endpoint;

  explicit Fixture(AdminLimits limits = {}) {
    AdminHandlers h;
    h.metrics = [] { return std::string("# TYPE sluice_concurrency_limit gauge\n"); };
    h.state = [] { return std::string("{\"totals\":{}}\n"); };
    h.readiness = [this]() -> asio::awaitable<Readiness> {
      co_return Readiness{ready, ready ? "fine" : "upstream down"};
    };
    h.reload = [this] {
      ++reloads;
      if (reloads == 2) throw std::runtime_error("boom");
      return AdminResponse{409, "application/json", "{\"status\":\"needs_restart\"}\n", ""};
    };
    server = std::make_unique<AdminServer>(io.get_executor(), std::move(h), limits);
    endpoint = server->listen({"127.0.0.1", 0});
    server->start();
  }

  // Runs `client` to completion (or fails after `limit`).
  template <class F>
  void run(F client, std::chrono::milliseconds limit = 5s) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, client(), [&](std::exception_ptr e) {
      done = true;
      error = e;
      server->stop();  // lets run_for() return as soon as the connections are gone
    });
    io.run_for(limit);
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
  }
};

// Sends raw bytes on `socket` and reads one response.
asio::awaitable<http::response<http::string_body>> exchange(tcp::socket& socket,
                                                            boost::beast::flat_buffer& buffer,
                                                            std::string raw) {
  co_await asio::async_write(socket, asio::buffer(raw), asio::use_awaitable);
  http::response<http::string_body> res;
  co_await http::async_read(socket, buffer, res, asio::use_awaitable);
  co_return res;
}

asio::awaitable<http::response<http::string_body>> one_request(tcp::endpoint ep, std::string raw) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(ep, asio::use_awaitable);
  boost::beast::flat_buffer buffer;
  co_return co_await exchange(socket, buffer, std::move(raw));
}

std::string get(const std::string& target, const std::string& method = "GET") {
  return method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
}

}  // namespace

TEST_CASE("admin server: endpoints answer with their status, content type and body") {
  Fixture f;
  f.run([&]() -> asio::awaitable<void> {
    auto health = co_await one_request(f.endpoint, get("/healthz"));
    CHECK(health.result_int() == 200);
    CHECK(nlohmann::json::parse(health.body())["status"] == "ok");

    auto metrics = co_await one_request(f.endpoint, get("/metrics"));
    CHECK(metrics.result_int() == 200);
    CHECK(std::string(metrics[http::field::content_type]).starts_with("text/plain; version=0.0.4"));
    CHECK(metrics.body().find("sluice_concurrency_limit") != std::string::npos);

    auto state = co_await one_request(f.endpoint, get("/admin/state"));
    CHECK(state.result_int() == 200);
    CHECK(state[http::field::content_type] == "application/json");

    auto ready = co_await one_request(f.endpoint, get("/readyz"));
    CHECK(ready.result_int() == 200);
    f.ready = false;
    auto not_ready = co_await one_request(f.endpoint, get("/readyz"));
    CHECK(not_ready.result_int() == 503);
    CHECK(nlohmann::json::parse(not_ready.body())["detail"] == "upstream down");

    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(f.endpoint, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(get("/healthz", "HEAD")), asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> head;
    head.skip(true);  // a response to HEAD has no body
    co_await http::async_read(socket, buffer, head, asio::use_awaitable);
    CHECK(head.get().result_int() == 200);
    CHECK(head.get()[http::field::content_length] == "16");
    CHECK(head.get().body().empty());
  });
}

TEST_CASE("admin server: 404 and 405 are JSON; 405 carries Allow") {
  Fixture f;
  f.run([&]() -> asio::awaitable<void> {
    auto missing = co_await one_request(f.endpoint, get("/admin/nothing"));
    CHECK(missing.result_int() == 404);
    CHECK(nlohmann::json::parse(missing.body()).contains("error"));

    auto wrong = co_await one_request(f.endpoint, get("/admin/reload"));
    CHECK(wrong.result_int() == 405);
    CHECK(wrong[http::field::allow] == "POST");
    CHECK(nlohmann::json::parse(wrong.body()).contains("error"));
    CHECK(f.reloads == 0);
  });
}

TEST_CASE("admin server: reload runs the handler; a throwing handler is a 500, not a crash") {
  Fixture f;
  f.run([&]() -> asio::awaitable<void> {
    auto first = co_await one_request(
        f.endpoint, "POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    CHECK(first.result_int() == 409);
    CHECK(nlohmann::json::parse(first.body())["status"] == "needs_restart");
    auto second = co_await one_request(
        f.endpoint, "POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    CHECK(second.result_int() == 500);
    CHECK(nlohmann::json::parse(second.body())["error"] == "boom");
    auto after = co_await one_request(f.endpoint, get("/healthz"));
    CHECK(after.result_int() == 200);
    CHECK(f.reloads == 2);
  });
}

TEST_CASE("admin server: keep-alive serves several requests on one connection") {
  Fixture f;
  f.run([&]() -> asio::awaitable<void> {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(f.endpoint, asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    for (int i = 0; i < 3; ++i) {
      auto res = co_await exchange(socket, buffer, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      CHECK(res.result_int() == 200);
      CHECK(res.keep_alive());
    }
  });
}

TEST_CASE("admin server: oversized headers get 431, garbage gets 400") {
  AdminLimits limits;
  limits.max_header_bytes = 1024;
  Fixture f(limits);
  f.run([&]() -> asio::awaitable<void> {
    auto big = co_await one_request(f.endpoint, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                                    std::string(4000, 'a') + "\r\n\r\n");
    CHECK(big.result_int() == 431);
    auto garbage = co_await one_request(f.endpoint, "NOT HTTP AT ALL\r\n\r\n");
    CHECK(garbage.result_int() == 400);
    CHECK(nlohmann::json::parse(garbage.body()).contains("error"));
  });
}

TEST_CASE("admin server: the proxy's framing rules (Host, Content-Length) apply here too") {
  Fixture f;
  f.run([&]() -> asio::awaitable<void> {
    for (const char* raw :
         {"GET /healthz HTTP/1.1\r\n\r\n", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
          "POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
          "Content-Length: 0\r\n\r\n"}) {
      INFO(raw);
      auto res = co_await one_request(f.endpoint, raw);
      CHECK(res.result_int() == 400);
      CHECK(nlohmann::json::parse(res.body())["error"].get<std::string>().find(
                "malformed HTTP request") != std::string::npos);
      CHECK_FALSE(res.keep_alive());
    }
    auto ok = co_await one_request(f.endpoint, "GET /healthz HTTP/1.0\r\n\r\n");
    CHECK(ok.result_int() == 200);
  });
}

TEST_CASE("admin server: an idle or slow client is cut off by the timeout") {
  AdminLimits limits;
  limits.read_timeout = 200ms;
  Fixture f(limits);
  f.run([&]() -> asio::awaitable<void> {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(f.endpoint, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(std::string("GET /hea")), asio::use_awaitable);
    char byte;
    auto start = std::chrono::steady_clock::now();
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(&byte, 1),
                                                   asio::as_tuple(asio::use_awaitable));
    CHECK(ec);  // closed by the server, nothing sent
    CHECK(n == 0);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  });
}

TEST_CASE("admin server: connections beyond max_connections are closed; stop() closes the rest") {
  AdminLimits limits;
  limits.max_connections = 2;
  Fixture f(limits);
  f.run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket a(ex), b(ex), c(ex);
    co_await a.async_connect(f.endpoint, asio::use_awaitable);
    co_await b.async_connect(f.endpoint, asio::use_awaitable);
    // Let the server accept both before the third arrives.
    asio::steady_timer timer(ex);
    timer.expires_after(50ms);
    co_await timer.async_wait(asio::use_awaitable);
    CHECK(f.server->connections() == 2);
    co_await c.async_connect(f.endpoint, asio::use_awaitable);
    char byte;
    auto [ec, n] =
        co_await c.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
    CHECK(ec == asio::error::eof);

    f.server->stop();
    auto [ec_a, n_a] =
        co_await a.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
    CHECK(ec_a);
    timer.expires_after(10ms);
    co_await timer.async_wait(asio::use_awaitable);
    CHECK(f.server->connections() == 0);
    tcp::socket d(ex);
    auto [ec_d] = co_await d.async_connect(f.endpoint, asio::as_tuple(asio::use_awaitable));
    CHECK(ec_d == asio::error::connection_refused);
  });
}

TEST_CASE("admin server: listen() reports an address in use") {
  asio::io_context io;
  AdminServer first(io.get_executor(), {});
  tcp::endpoint ep = first.listen({"127.0.0.1", 0});
  AdminServer second(io.get_executor(), {});
  try {
    second.listen({"127.0.0.1", ep.port()});
    FAIL("listen on a port in use succeeded");
  } catch (const boost::system::system_error& e) {
    CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(ep.port())) !=
          std::string::npos);
    CHECK(e.code() == boost::asio::error::address_in_use);
  }
}

TEST_CASE("admin server: with authorize set, /metrics and /admin/* need it; probes stay open") {
  asio::io_context io;
  AdminHandlers h;
  int reloads = 0;
  h.metrics = [] { return std::string("m\n"); };
  h.state = [] { return std::string("{}\n"); };
  h.reload = [&] {
    ++reloads;
    return AdminResponse{};
  };
  h.authorize = [](std::string_view authorization) { return authorization == "Bearer s3cret"; };
  auto server = std::make_shared<AdminServer>(io.get_executor(), std::move(h));
  tcp::endpoint ep = server->listen({"127.0.0.1", 0});
  server->start();
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (const char* target : {"/metrics", "/admin/state"}) {
          auto denied = co_await one_request(ep, get(target));
          CHECK(denied.result_int() == 401);
          CHECK(std::string(denied[http::field::www_authenticate]).starts_with("Bearer"));
          CHECK(nlohmann::json::parse(denied.body()).contains("error"));
          auto wrong =
              co_await one_request(ep, std::string("GET ") + target +
                                           " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                                           "Connection: close\r\n\r\n");
          CHECK(wrong.result_int() == 401);
          auto allowed = co_await one_request(
              ep, std::string("GET ") + target +
                      " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                      "Connection: close\r\n\r\n");
          CHECK(allowed.result_int() == 200);
        }
        auto reload_denied = co_await one_request(
            ep, "POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        CHECK(reload_denied.result_int() == 401);
        CHECK(reloads == 0);
        CHECK((co_await one_request(ep, get("/healthz"))).result_int() == 200);
        CHECK((co_await one_request(ep, get("/readyz"))).result_int() == 200);
      },
      [&](std::exception_ptr e) {
        done = true;
        server->stop();
        if (e) std::rethrow_exception(e);
      });
  io.run_for(5s);
  CHECK(done);
}
