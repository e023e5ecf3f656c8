// TimedStream (src/net/timed_stream.hpp) over real loopback sockets: timeouts of reads and
// writes, deadlines moved later and earlier while the watchdog waits, the lazy watchdog's
// steady state, destruction with an operation outstanding, and per-operation cancellation
// through awaitable operators. Deadlines are tens of milliseconds; every io_context run is
// bounded.
#include <doctest/doctest.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "timed_stream.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using sluice::net::TimedStream;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// A connected pair on 127.0.0.1: `near` wrapped in a TimedStream, `far` a plain socket.
struct Pair {
  asio::io_context io;
  std::optional<TimedStream> near;
  tcp::socket far{io};

  Pair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(far);
    near.emplace(std::move(client));
  }

  /// Reads one byte from `near`: the error, and the time since `start`.
  asio::awaitable<std::pair<error_code, Clock::duration>> read_byte(
      Clock::time_point start = Clock::now()) {
    char byte;
    auto [ec, n] = co_await near->async_read_some(asio::buffer(&byte, 1), use_tuple);
    co_return std::pair{ec, Clock::now() - start};
  }

  /// Runs `body` to completion (or the bound) and returns whether it completed.
  template <class F>
  bool run(F body, Clock::duration bound = 5s) {
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
          io.stop();  // leave the watchdog's pending wait behind
        },
        asio::detached);
    io.run_for(bound);
    io.restart();
    return done;
  }
};

}  // namespace

TEST_CASE("a read outstanding at its deadline ends with timeout and closes the socket") {
  Pair p;
  error_code result;
  Clock::duration took{};
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    p.near->expires_after(50ms);
    std::tie(result, took) = co_await p.read_byte();
  }));
  CHECK(result == boost::beast::error::timeout);
  CHECK(took >= 50ms);
  CHECK(took < 2s);
  CHECK_FALSE(p.near->socket().is_open());
}

TEST_CASE("a read that completes before its deadline is not affected by it") {
  Pair p;
  asio::write(p.far, asio::buffer(std::string("hello")));
  error_code result;
  std::size_t got = 0;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    char data[16];
    p.near->expires_after(50ms);
    auto [ec, n] = co_await p.near->async_read_some(asio::buffer(data), use_tuple);
    result = ec;
    got = n;
    // Outlive the deadline with nothing outstanding: the connection stays open.
    asio::steady_timer wait(p.io, 150ms);
    co_await wait.async_wait(use_tuple);
  }));
  CHECK_FALSE(result);
  CHECK(got == 5);
  CHECK(p.near->socket().is_open());
  CHECK_FALSE(p.near->watchdog_armed());  // it fired with nothing outstanding and went idle
}

TEST_CASE("a deadline moved later while the watchdog waits: re-armed, no early timeout") {
  Pair p;
  error_code result;
  Clock::duration took{};
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    const auto start = Clock::now();
    p.near->expires_after(50ms);
    asio::steady_timer later(p.io, 20ms);
    later.async_wait([&](error_code) { p.near->expires_after(1s); });
    asio::steady_timer answer(p.io, 200ms);
    answer.async_wait([&](error_code) { asio::write(p.far, asio::buffer(std::string("x"))); });
    std::tie(result, took) = co_await p.read_byte(start);
  }));
  CHECK_FALSE(result);
  CHECK(took >= 200ms);
  CHECK(p.near->watchdog_waits() == 2);  // the first wait fired early and re-armed once
}

TEST_CASE("a deadline moved earlier than the armed watchdog is honoured") {
  Pair p;
  error_code first, second;
  Clock::duration took{};
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    // A long deadline arms the watchdog far ahead (the data is not there yet, so the read waits).
    p.near->expires_after(1h);
    asio::steady_timer answer(p.io, 20ms);
    answer.async_wait([&](error_code) { asio::write(p.far, asio::buffer(std::string("x"))); });
    std::tie(first, std::ignore) = co_await p.read_byte();
    // Then a short one: the watchdog must not wait for the hour.
    p.near->expires_after(50ms);
    std::tie(second, took) = co_await p.read_byte();
  }));
  CHECK_FALSE(first);
  CHECK(second == boost::beast::error::timeout);
  CHECK(took >= 50ms);
  CHECK(took < 2s);
}

TEST_CASE("a deadline set while a read is outstanding applies to that read") {
  Pair p;
  error_code result;
  Clock::duration took{};
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    const auto start = Clock::now();
    p.near->expires_never();
    asio::steady_timer later(p.io, 20ms);
    later.async_wait([&](error_code) { p.near->expires_after(30ms); });
    std::tie(result, took) = co_await p.read_byte(start);
  }));
  CHECK(result == boost::beast::error::timeout);
  CHECK(took >= 50ms);
  CHECK(took < 2s);
}

TEST_CASE("steady state: deadlines that only move later start one watchdog wait, not one a read") {
  Pair p;
  int served = 0;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    char byte = 0;
    for (int i = 0; i < 200; ++i) {
      // The peer answers only after the read started, so every read really waits.
      asio::steady_timer soon(p.io, 0ms);
      soon.async_wait([&](error_code) { asio::write(p.far, asio::buffer(&byte, 1)); });
      p.near->expires_after(30s);
      auto [ec, n] = co_await p.near->async_read_some(asio::buffer(&byte, 1), use_tuple);
      if (ec) break;
      p.near->expires_after(30s);
      auto [write_error, written] =
          co_await asio::async_write(*p.near, asio::buffer(&byte, 1), use_tuple);
      if (write_error) break;
      ++served;
    }
  }));
  CHECK(served == 200);
  CHECK(p.near->watchdog_waits() == 1);
  CHECK(p.near->watchdog_armed());
}

TEST_CASE("a deadline that passed while nothing was outstanding times out the next read") {
  Pair p;
  error_code result;
  Clock::duration took{};
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    p.near->expires_at(Clock::now() - 1s);
    std::tie(result, took) = co_await p.read_byte();
  }));
  CHECK(result == boost::beast::error::timeout);
  CHECK(took < 1s);
}

TEST_CASE("expires_never: a read waits as long as the peer takes") {
  Pair p;
  error_code result;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    p.near->expires_after(10ms);
    p.near->expires_never();
    asio::steady_timer answer(p.io, 100ms);
    answer.async_wait([&](error_code) { asio::write(p.far, asio::buffer(std::string("x"))); });
    char byte;
    auto [ec, n] = co_await p.near->async_read_some(asio::buffer(&byte, 1), use_tuple);
    result = ec;
  }));
  CHECK_FALSE(result);
  CHECK_FALSE(p.near->watchdog_armed());
}

TEST_CASE("a write to a peer that stops reading ends with timeout") {
  Pair p;
  error_code result;
  std::size_t sent = 0;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    const std::vector<char> block(64 * 1024 * 1024, 'x');  // more than both socket buffers
    p.near->expires_after(100ms);
    auto [ec, n] = co_await asio::async_write(*p.near, asio::buffer(block), use_tuple);
    result = ec;
    sent = n;
  }));
  CHECK(result == boost::beast::error::timeout);
  CHECK(sent < 64u * 1024 * 1024);
}

TEST_CASE("gathered writes with empty buffers deliver exactly their bytes") {
  Pair p;
  std::string received;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    const std::string head = "HEAD", body = "body";
    const std::array<asio::const_buffer, 2> head_only{asio::buffer(head), asio::const_buffer()};
    const std::array<asio::const_buffer, 3> middle{asio::const_buffer(), asio::buffer(body),
                                                   asio::const_buffer()};
    const std::array<asio::const_buffer, 3> both{asio::buffer(head), asio::const_buffer(),
                                                 asio::buffer(body)};
    const std::array<asio::const_buffer, 2> nothing{};
    p.near->expires_after(5s);
    co_await asio::async_write(*p.near, head_only, use_tuple);
    co_await asio::async_write(*p.near, middle, use_tuple);
    co_await asio::async_write(*p.near, nothing, use_tuple);
    co_await asio::async_write(*p.near, both, use_tuple);
    p.near->socket().shutdown(tcp::socket::shutdown_send);
    char data[64];
    for (;;) {
      auto [ec, n] = co_await p.far.async_read_some(asio::buffer(data), use_tuple);
      received.append(data, n);
      if (ec) break;
    }
  }));
  CHECK(received == "HEADbodyHEADbody");
}

TEST_CASE("a closed peer and a closed socket are errors, not timeouts") {
  error_code eof, aborted;
  Pair closed_peer;
  REQUIRE(closed_peer.run([&]() -> asio::awaitable<void> {
    closed_peer.far.close();
    char byte;
    closed_peer.near->expires_after(1s);
    auto [ec, n] = co_await closed_peer.near->async_read_some(asio::buffer(&byte, 1), use_tuple);
    eof = ec;
  }));
  Pair closed_here;
  REQUIRE(closed_here.run([&]() -> asio::awaitable<void> {
    asio::steady_timer close_soon(closed_here.io, 20ms);
    close_soon.async_wait([&](error_code) { closed_here.near->socket().close(); });
    char byte;
    closed_here.near->expires_after(1s);
    auto [ec, n] = co_await closed_here.near->async_read_some(asio::buffer(&byte, 1), use_tuple);
    aborted = ec;
  }));
  CHECK(eof == asio::error::eof);
  CHECK(aborted == asio::error::operation_aborted);
}

TEST_CASE("destroying the stream with a read outstanding completes the read as aborted") {
  Pair p;
  std::optional<error_code> result;
  char byte;
  p.near->expires_after(1h);
  p.near->async_read_some(asio::buffer(&byte, 1), [&](error_code ec, std::size_t) { result = ec; });
  p.io.poll();
  p.near.reset();
  p.io.run_for(1s);
  REQUIRE(result.has_value());
  CHECK(*result == asio::error::operation_aborted);
}

TEST_CASE("per-operation cancellation reaches the socket (awaitable operators)") {
  using namespace asio::experimental::awaitable_operators;
  Pair p;
  std::size_t winner = 99;
  REQUIRE(p.run([&]() -> asio::awaitable<void> {
    char byte;
    asio::steady_timer timer(p.io, 30ms);
    p.near->expires_never();
    auto result = co_await (p.near->async_read_some(asio::buffer(&byte, 1), asio::use_awaitable) ||
                            timer.async_wait(asio::use_awaitable));
    winner = result.index();
  }));
  CHECK(winner == 1);
  CHECK(p.near->socket().is_open());  // cancelled, not closed: the stream is still usable
}

TEST_CASE("async_connect: success, and a refused port passes its error through") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const std::vector<tcp::endpoint> good{acceptor.local_endpoint()};
  tcp::endpoint closed_port;
  {
    tcp::acceptor gone(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    closed_port = gone.local_endpoint();
  }
  const std::vector<tcp::endpoint> refused{closed_port};
  error_code ok_result, refused_result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        TimedStream a(io.get_executor());
        a.expires_after(2s);
        auto [ec1, e1] = co_await a.async_connect(good, use_tuple);
        ok_result = ec1;
        TimedStream b(io.get_executor());
        b.expires_after(2s);
        auto [ec2, e2] = co_await b.async_connect(refused, use_tuple);
        refused_result = ec2;
      },
      asio::detached);
  io.run_for(5s);
  CHECK_FALSE(ok_result);
  CHECK(refused_result == asio::error::connection_refused);
}
