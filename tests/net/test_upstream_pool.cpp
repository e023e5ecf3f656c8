// Upstream host names: AddressCache's policy on an injected clock (no sockets), and
// UpstreamPool::connect() on loopback — a host name resolved through Asio's resolver on the
// io_context sluice runs with, every address tried in order, and the name looked up again when
// the cached addresses stop answering.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <optional>

#include "address_cache.hpp"
#include "sluice/net/proxy.hpp"
#include "upstream_pool.hpp"

using namespace sluice;
using namespace sluice::net;
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

tcp::endpoint loopback(std::uint16_t port) {
  return tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
}

/// A port on 127.0.0.1 that refuses connections (bound, then closed).
std::uint16_t dead_port(asio::io_context& io) {
  tcp::acceptor probe(io, loopback(0));
  const std::uint16_t port = probe.local_endpoint().port();
  probe.close();
  return port;
}

config::UpstreamConfig upstream_for(const std::string& host, std::uint16_t port) {
  config::UpstreamConfig upstream;
  upstream.host = host;
  upstream.port = port;
  upstream.connect_timeout = std::chrono::seconds(2);
  return upstream;
}

/// Runs pool.connect(upstream) to completion on `io`.
AcquireResult connect(asio::io_context& io, UpstreamPool& pool,
                      const config::UpstreamConfig& upstream) {
  std::optional<AcquireResult> out;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { out = co_await pool.connect(upstream); },
      asio::detached);
  io.restart();
  io.run_for(std::chrono::seconds(10));
  REQUIRE(out.has_value());
  return std::move(*out);
}

}  // namespace

TEST_CASE(
    "AddressCache: fresh for kFreshFor, forgotten on failure, the address that worked first") {
  AddressCache cache;
  const Clock::time_point t0{std::chrono::seconds(1000)};
  const AddressCache::Endpoints both{loopback(1), loopback(2)};
  CHECK_FALSE(cache.lookup("ollama", 11434, t0));
  cache.store("ollama", 11434, both, t0);
  REQUIRE(cache.lookup("ollama", 11434, t0));
  CHECK(*cache.lookup("ollama", 11434, t0) == both);
  CHECK_FALSE(cache.lookup("ollama", 8080, t0));  // host and port
  CHECK_FALSE(cache.lookup("other", 11434, t0));
  CHECK(cache.lookup("ollama", 11434, t0 + AddressCache::kFreshFor - std::chrono::milliseconds(1)));
  CHECK_FALSE(cache.lookup("ollama", 11434, t0 + AddressCache::kFreshFor));

  SUBCASE("connected() moves the address to the front; a new resolution keeps it there") {
    cache.connected("ollama", 11434, loopback(2));
    CHECK(cache.lookup("ollama", 11434, t0)->front() == loopback(2));
    cache.store("ollama", 11434, {loopback(3), loopback(1), loopback(2)}, t0);
    CHECK(*cache.lookup("ollama", 11434, t0) ==
          AddressCache::Endpoints{loopback(2), loopback(3), loopback(1)});
    cache.store("ollama", 11434, {loopback(4)}, t0);  // it went away: the new list as it is
    CHECK(*cache.lookup("ollama", 11434, t0) == AddressCache::Endpoints{loopback(4)});
  }
  SUBCASE("failed() forgets the host") {
    cache.failed("ollama", 11434);
    CHECK_FALSE(cache.lookup("ollama", 11434, t0));
    CHECK(cache.size() == 0);
  }
  SUBCASE("bounded: the oldest entry goes") {
    for (std::size_t i = 0; i < AddressCache::kMaxEntries; ++i)
      cache.store("host" + std::to_string(i), 1, both, t0 + std::chrono::seconds(1 + i));
    CHECK(cache.size() == AddressCache::kMaxEntries);
    CHECK_FALSE(cache.lookup("ollama", 11434, t0 + std::chrono::seconds(1)));
    CHECK(cache.lookup("host0", 1, t0 + std::chrono::seconds(2)));
  }
  SUBCASE("an empty resolution is not stored") {
    cache.store("empty", 1, {}, t0);
    CHECK_FALSE(cache.lookup("empty", 1, t0));
  }
}

TEST_CASE("UpstreamPool::connect: a host name on sluice's io_context") {
  asio::io_context io{kIoConcurrencyHint};
  tcp::acceptor live(io, loopback(0));
  const std::uint16_t live_port = live.local_endpoint().port();
  UpstreamPool pool(io.get_executor(), 4);

  SUBCASE("localhost resolves and connects") {
    AcquireResult result = connect(io, pool, upstream_for("localhost", live_port));
    REQUIRE_MESSAGE(result.connection, result.error.message());
    CHECK(result.endpoint.port() == live_port);
    CHECK(result.endpoint.address().is_loopback());
    CHECK(pool.addresses().lookup("localhost", live_port, Clock::now()));
  }
  SUBCASE("every address is tried in order; the one that answered is tried first next time") {
    const std::uint16_t dead = dead_port(io);
    pool.addresses().store("upstream.test", live_port, {loopback(dead), loopback(live_port)},
                           Clock::now());
    AcquireResult result = connect(io, pool, upstream_for("upstream.test", live_port));
    REQUIRE_MESSAGE(result.connection, result.error.message());
    CHECK(result.endpoint == loopback(live_port));
    CHECK(pool.addresses().lookup("upstream.test", live_port, Clock::now())->front() ==
          loopback(live_port));
  }
  SUBCASE("cached addresses that stopped answering: the name is looked up again") {
    // What a restarted container looks like: the cached address refuses, DNS now says
    // otherwise (localhost -> 127.0.0.1:live_port).
    const std::uint16_t dead = dead_port(io);
    pool.addresses().store("localhost", live_port, {loopback(dead)}, Clock::now());
    AcquireResult result = connect(io, pool, upstream_for("localhost", live_port));
    REQUIRE_MESSAGE(result.connection, result.error.message());
    CHECK(result.endpoint.port() == live_port);
    CHECK(pool.connects() == 2);
  }
  SUBCASE("a name that does not resolve: a lookup failure, nothing cached") {
    AcquireResult result = connect(io, pool, upstream_for("sluice-no-such-host.invalid", 80));
    CHECK_FALSE(result.connection);
    CHECK(result.lookup_failed);
    CHECK(result.error);
    CHECK(pool.addresses().size() == 0);
  }
  SUBCASE("an address literal never goes through the resolver") {
    AcquireResult result = connect(io, pool, upstream_for("127.0.0.1", live_port));
    REQUIRE(result.connection);
    CHECK(pool.addresses().size() == 0);
  }
}

TEST_CASE(
    "BOOST_ASIO_CONCURRENCY_HINT_UNSAFE would disable the resolver (why sluice does not use it)") {
  asio::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE};
  tcp::acceptor live(io, loopback(0));
  UpstreamPool pool(io.get_executor(), 4);
  AcquireResult result = connect(io, pool, upstream_for("localhost", live.local_endpoint().port()));
  CHECK_FALSE(result.connection);
  CHECK(result.error == asio::error::operation_not_supported);
}
