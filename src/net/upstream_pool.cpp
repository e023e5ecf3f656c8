// The upstream connection pool (see upstream_pool.hpp).
#include "upstream_pool.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

namespace sluice::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

bool looks_reusable(tcp::socket& socket) {
  if (!socket.is_open()) return false;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  return false;  // 0: the peer closed it; > 0: unsolicited bytes we must not misread
}

asio::awaitable<std::optional<error_code>> UpstreamPool::resolve(
    const config::UpstreamConfig& upstream, std::vector<tcp::endpoint>& endpoints) {
  using namespace asio::experimental::awaitable_operators;
  tcp::resolver resolver(executor_);
  asio::steady_timer timer(executor_, upstream.connect_timeout);
  auto lookup = resolver.async_resolve(upstream.host, std::to_string(upstream.port),
                                       tcp::resolver::numeric_service, use_tuple);
  auto deadline = timer.async_wait(use_tuple);
  auto result = co_await (std::move(lookup) || std::move(deadline));
  if (result.index() == 1) co_return asio::error::timed_out;
  auto [resolve_error, results] = std::get<0>(std::move(result));
  if (resolve_error) co_return resolve_error;
  endpoints.clear();
  for (const auto& entry : results)
    endpoints.push_back(entry.endpoint());
  if (endpoints.empty()) co_return asio::error::host_not_found;
  co_return std::nullopt;
}

std::unique_ptr<UpstreamConnection> UpstreamPool::take_idle(bool can_retry) {
  const auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    std::unique_ptr<UpstreamConnection> candidate = std::move(idle_.back());
    idle_.pop_back();
    const auto idle = now - candidate->idle_since;
    const bool trusted = can_retry && idle < kTrustedIdle && candidate->stream.socket().is_open();
    if (idle < kMaxIdleAge && (trusted || looks_reusable(candidate->stream.socket()))) {
      candidate->reused = true;
      return candidate;
    }
    error_code ignored;
    candidate->stream.socket().close(ignored);
  }
  return nullptr;
}

asio::awaitable<AcquireResult> UpstreamPool::acquire(const config::UpstreamConfig& upstream,
                                                     bool can_retry) {
  if (auto idle = take_idle(can_retry)) co_return AcquireResult{.connection = std::move(idle)};
  AcquireResult fresh = co_await connect(upstream);
  co_return fresh;
}

asio::awaitable<AcquireResult> UpstreamPool::connect(const config::UpstreamConfig& upstream) {
  error_code not_an_address;
  const auto address = asio::ip::make_address(upstream.host, not_an_address);
  if (!not_an_address) {
    const std::vector<tcp::endpoint> only{tcp::endpoint(address, upstream.port)};
    AcquireResult direct = co_await connect_to(only, upstream);
    co_return direct;
  }
  // A host name: its cached addresses, else a lookup (Asio's resolver runs getaddrinfo on its
  // own thread, so the event loop never blocks on DNS).
  std::vector<tcp::endpoint> endpoints;
  const bool cached = [&] {
    auto known = addresses_.lookup(upstream.host, upstream.port, std::chrono::steady_clock::now());
    if (known) endpoints = std::move(*known);
    return known.has_value();
  }();
  if (!cached) {
    if (auto failed = co_await resolve(upstream, endpoints))
      co_return lookup_failure(upstream, *failed);
    note_resolved(upstream, endpoints);
  }
  AcquireResult result = co_await connect_to(endpoints, upstream);
  if (result.connection) {
    addresses_.connected(upstream.host, upstream.port, result.endpoint);
    co_return result;
  }
  addresses_.failed(upstream.host, upstream.port);
  if (!cached) co_return result;
  // The cached addresses may be stale (a container that restarted elsewhere): look the name up
  // once more and, when it now resolves differently, try the new addresses.
  std::vector<tcp::endpoint> fresh;
  if (auto failed = co_await resolve(upstream, fresh)) co_return lookup_failure(upstream, *failed);
  note_resolved(upstream, fresh);
  if (fresh == endpoints) co_return result;
  AcquireResult retried = co_await connect_to(fresh, upstream);
  if (retried.connection) {
    addresses_.connected(upstream.host, upstream.port, retried.endpoint);
  } else {
    addresses_.failed(upstream.host, upstream.port);
  }
  co_return retried;
}

AcquireResult UpstreamPool::lookup_failure(const config::UpstreamConfig& upstream,
                                           const error_code& ec) {
  addresses_.failed(upstream.host, upstream.port);
  AcquireResult result;
  result.error = ec;
  result.timed_out = ec == asio::error::timed_out;
  result.lookup_failed = true;
  return result;
}

void UpstreamPool::note_resolved(const config::UpstreamConfig& upstream,
                                 const std::vector<tcp::endpoint>& endpoints) {
  // Logged when what the name resolves to changes (at start, and when DNS moves it).
  std::string text = upstream.host + " ->";
  for (const auto& endpoint : endpoints)
    text.append(" ").append(endpoint.address().to_string());
  if (text != last_resolved_) {
    spdlog::info("upstream host {}", text);
    last_resolved_ = std::move(text);
  }
  addresses_.store(upstream.host, upstream.port, endpoints, std::chrono::steady_clock::now());
}

asio::awaitable<AcquireResult> UpstreamPool::connect_to(const std::vector<tcp::endpoint>& endpoints,
                                                        const config::UpstreamConfig& upstream) {
  AcquireResult result;
  auto connection = std::make_unique<UpstreamConnection>(executor_);
  // One connect_timeout for the whole list: each address is tried in order until one accepts.
  connection->stream.expires_after(upstream.connect_timeout);
  auto [ec, endpoint] = co_await connection->stream.async_connect(endpoints, use_tuple);
  ++connects_;
  if (ec) {
    result.error = ec;
    result.timed_out = ec == beast::error::timeout;
    co_return result;
  }
  error_code ignored;
  connection->stream.socket().set_option(tcp::no_delay(true), ignored);
  result.endpoint = endpoint;
  result.connection = std::move(connection);
  co_return result;
}

void UpstreamPool::give_back(std::unique_ptr<UpstreamConnection> connection) {
  if (!connection) return;
  if (stopped_ || max_idle_ == 0 || !connection->stream.socket().is_open() ||
      connection->buffer.size() != 0) {
    error_code ignored;
    connection->stream.socket().close(ignored);
    return;
  }
  connection->stream.expires_never();
  connection->idle_since = std::chrono::steady_clock::now();
  if (idle_.size() >= max_idle_) {
    error_code ignored;
    idle_.front()->stream.socket().close(ignored);
    idle_.erase(idle_.begin());
  }
  idle_.push_back(std::move(connection));
}

void UpstreamPool::close_idle() {
  for (auto& connection : idle_) {
    error_code ignored;
    connection->stream.socket().close(ignored);
  }
  idle_.clear();
}

}  // namespace sluice::net
