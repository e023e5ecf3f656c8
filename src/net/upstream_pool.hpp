// Kept-alive connections to the upstream (Ollama), reused between requests.
//
// acquire() hands out an idle connection that still looks usable (the peer has not closed it and
// sent nothing unsolicited; checked with a non-blocking MSG_PEEK) or connects a new one within
// upstream.connect_timeout. A caller that can retry on a fresh connection (its request body is
// in memory) may skip that check for a connection idle less than kTrustedIdle: the check costs a
// system call per request, and the rare connection the upstream closed in that instant is caught
// by the retry. give_back() keeps a connection for reuse; callers must only give back
// a connection whose last response was read completely and whose peer allowed keep-alive (a
// connection with unread bytes would hand the next request someone else's response).
//
// Bounds: at most `max_idle` idle connections (the most recently used are kept); an idle
// connection older than kMaxIdleAge is closed instead of reused. Connections in use are owned by
// their session, not by the pool.
//
// Single-threaded: use on the io_context's thread. Internal to src/net (includes Beast).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "address_cache.hpp"
#include "sluice/config/config.hpp"
#include "timed_stream.hpp"

namespace sluice::net {

struct UpstreamConnection {
  explicit UpstreamConnection(boost::asio::any_io_executor executor) : stream(executor) {}
  TimedStream stream;
  boost::beast::flat_buffer buffer;  ///< read buffer; empty between responses
  std::chrono::steady_clock::time_point idle_since{};
  bool reused = false;  ///< served a request before this one
};

struct AcquireResult {
  boost::system::error_code error;          ///< set when no connection could be made
  bool timed_out = false;                   ///< the error is upstream.connect_timeout
  bool lookup_failed = false;               ///< the error is from resolving the host name
  boost::asio::ip::tcp::endpoint endpoint;  ///< the address connected to
  std::unique_ptr<UpstreamConnection> connection;
};

class UpstreamPool {
 public:
  static constexpr auto kMaxIdleAge = std::chrono::seconds(60);
  static constexpr auto kTrustedIdle = std::chrono::seconds(1);

  UpstreamPool(boost::asio::any_io_executor executor, std::size_t max_idle)
      : executor_(std::move(executor)), max_idle_(max_idle) {}

  /// An idle connection or a new one. Never throws for network errors. `can_retry`: the caller
  /// retries on connect() if a reused connection turns out closed (see the file comment).
  boost::asio::awaitable<AcquireResult> acquire(const config::UpstreamConfig& upstream,
                                                bool can_retry = false);

  /// An idle connection that looks usable (see acquire()), or nullptr; never waits. The fast
  /// path of acquire(), for callers that want to avoid a coroutine when a connection is idle.
  std::unique_ptr<UpstreamConnection> take_idle(bool can_retry = false);

  /// A fresh connection, bypassing the idle list (the retry after a stale reused one). A host
  /// name is resolved without blocking the event loop, its addresses cached (AddressCache) and
  /// tried in order; when every cached address fails, the name is looked up again and, if it
  /// resolves differently, the new addresses are tried.
  boost::asio::awaitable<AcquireResult> connect(const config::UpstreamConfig& upstream);

  /// The resolved addresses of host names (exposed for tests and for the readiness probe).
  AddressCache& addresses() { return addresses_; }

  /// Keeps `connection` for reuse (or closes it when the pool is full).
  /// Precondition: its last exchange completed and the peer allows keep-alive.
  void give_back(std::unique_ptr<UpstreamConnection> connection);

  /// Closes every idle connection (shutdown).
  void close_idle();
  /// Stops keeping connections: give_back() closes from now on.
  void stop() {
    stopped_ = true;
    close_idle();
  }

  std::size_t idle_count() const { return idle_.size(); }
  std::uint64_t connects() const { return connects_; }

 private:
  boost::asio::awaitable<std::optional<boost::system::error_code>> resolve(
      const config::UpstreamConfig& upstream,
      std::vector<boost::asio::ip::tcp::endpoint>& endpoints);
  boost::asio::awaitable<AcquireResult> connect_to(
      const std::vector<boost::asio::ip::tcp::endpoint>& endpoints,
      const config::UpstreamConfig& upstream);
  AcquireResult lookup_failure(const config::UpstreamConfig& upstream,
                               const boost::system::error_code& ec);
  void note_resolved(const config::UpstreamConfig& upstream,
                     const std::vector<boost::asio::ip::tcp::endpoint>& endpoints);

  boost::asio::any_io_executor executor_;
  std::size_t max_idle_;
  bool stopped_ = false;
  std::vector<std::unique_ptr<UpstreamConnection>> idle_;  // back = most recently used
  std::uint64_t connects_ = 0;
  AddressCache addresses_;
  std::string last_resolved_;  ///< "host -> addresses" last logged
};

/// True when the peer of an idle socket has neither closed it nor sent anything.
bool looks_reusable(boost::asio::ip::tcp::socket& socket);

}  // namespace sluice::net
