// The addresses an upstream host name resolved to, kept between connects.
//
// Policy (no I/O and no clock here: `now` is passed in, so it is tested without sockets):
//  * An entry is used for kFreshFor after it was resolved, then resolved again: container and
//    cluster DNS change (a restarted Ollama container gets a new address), and getaddrinfo
//    gives no TTL to follow.
//  * A connect that failed on every address forgets the entry: the next connect resolves again
//    at once.
//  * The address a connect succeeded on moves to the front, so later connects try it first
//    (`localhost` resolves to ::1 and 127.0.0.1; Ollama listens on 127.0.0.1 by default).
//  * At most kMaxEntries hosts are kept (a reload may change the upstream; the oldest goes).
//
// Single-threaded: used by one UpstreamPool on the io_context's thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::net {

class AddressCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Endpoints = std::vector<boost::asio::ip::tcp::endpoint>;
  static constexpr auto kFreshFor = std::chrono::seconds(30);
  static constexpr std::size_t kMaxEntries = 16;

  /// The addresses of host:port resolved less than kFreshFor before `now`, in the order to try.
  std::optional<Endpoints> lookup(std::string_view host, std::uint16_t port,
                                  Clock::time_point now) const;
  /// Records a resolution (non-empty) made at `now`.
  void store(std::string_view host, std::uint16_t port, Endpoints endpoints, Clock::time_point now);
  /// A connect to host:port succeeded on `endpoint`: it is tried first from now on.
  void connected(std::string_view host, std::uint16_t port,
                 const boost::asio::ip::tcp::endpoint& endpoint);
  /// A connect to host:port failed on every address: resolve again next time.
  void failed(std::string_view host, std::uint16_t port);

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string host;
    std::uint16_t port = 0;
    Endpoints endpoints;
    Clock::time_point resolved_at;
  };
  Entry* find(std::string_view host, std::uint16_t port);
  const Entry* find(std::string_view host, std::uint16_t port) const;

  std::vector<Entry> entries_;  // few: one per upstream host
};

}  // namespace sluice::net
