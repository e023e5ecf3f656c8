// A TCP stream with a deadline, for the proxy's client and upstream connections: the part of
// beast::tcp_stream that sluice uses (expires_after()/expires_at()/expires_never() before an
// operation; an operation outstanding at the deadline closes the socket and completes with
// beast::error::timeout), at a fraction of its cost per operation.
//
// Why not beast::tcp_stream: it starts and cancels a timer around every read and write, four
// per proxied request, which cost about 6% of the proxy's requests/s on the pass-through
// benchmark (docs/proxy-benchmark.md). Here a deadline is a stored time point, and one
// watchdog timer per connection is armed lazily:
//   * starting an operation arms it only when it is idle or armed for later than the deadline
//     (a deadline moved earlier, e.g. a short header_read_timeout after a long keepalive);
//   * when it fires early (the deadline moved later meanwhile) it re-arms for the new deadline,
//     and when nothing is outstanding it stays idle until the next operation.
// A connection whose deadlines only move forward (the steady state of a kept-alive connection)
// touches the timer about once per timeout period instead of on every operation. Reads and
// writes of a single (non-empty) buffer also use recv()/send() rather than recvmsg()/sendmsg().
//
// Semantics (as beast::tcp_stream): one deadline shared by reads, writes and connects; a
// deadline that passed while no operation was outstanding times out the next one at once; after
// a timeout the socket is closed. Destroying the stream closes the socket (outstanding
// operations complete with operation_aborted). Completion handlers keep their associated
// executor, allocator and cancellation slot, so per-operation cancellation (e.g. by awaitable
// operators) works as on the socket itself.
//
// Single-threaded: use on the io_context's thread. Internal to src/net.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace sluice::net {

class TimedStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using Clock = std::chrono::steady_clock;

  explicit TimedStream(boost::asio::ip::tcp::socket socket)
      : impl_(std::make_shared<Impl>(std::move(socket))) {}
  explicit TimedStream(const executor_type& executor)
      : impl_(std::make_shared<Impl>(boost::asio::ip::tcp::socket(executor))) {}
  TimedStream(TimedStream&&) noexcept = default;
  TimedStream& operator=(TimedStream&&) = delete;
  TimedStream(const TimedStream&) = delete;
  TimedStream& operator=(const TimedStream&) = delete;
  ~TimedStream() {
    if (impl_) impl_->shut();
  }

  executor_type get_executor() noexcept { return impl_->socket.get_executor(); }
  boost::asio::ip::tcp::socket& socket() noexcept { return impl_->socket; }
  const boost::asio::ip::tcp::socket& socket() const noexcept { return impl_->socket; }

  /// The deadline of the operations that follow: now + `timeout` (saturating).
  void expires_after(Clock::duration timeout) {
    const auto now = Clock::now();
    expires_at(timeout >= Clock::time_point::max() - now ? Clock::time_point::max()
                                                         : now + timeout);
  }
  /// Also applies to an operation already outstanding (the watchdog is re-armed if it would
  /// fire too late for the new deadline).
  void expires_at(Clock::time_point deadline) {
    impl_->deadline = deadline;
    if (impl_->outstanding > 0) impl_->watch();
  }
  void expires_never() noexcept { impl_->deadline = Clock::time_point::max(); }
  Clock::time_point expiry() const noexcept { return impl_->deadline; }
  /// Whether the watchdog timer is waiting, and how many waits it started so far (for tests: a
  /// connection whose deadlines only move later starts one per timeout period, not per read).
  bool watchdog_armed() const noexcept { return impl_->armed; }
  std::uint64_t watchdog_waits() const noexcept { return impl_->waits; }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [impl = impl_.get()](auto handler, const MutableBufferSequence& buffers) {
          impl->begin_operation();
          impl->socket.async_read_some(buffers, wrap(impl, std::move(handler)));
        },
        token, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [impl = impl_.get()](auto handler, const ConstBufferSequence& buffers) {
          impl->begin_operation();
          // A gather with one non-empty buffer (a head without a body, the rest of a partly
          // sent write) goes out as that buffer: send() rather than sendmsg().
          if (auto one = single_buffer(buffers)) {
            impl->socket.async_write_some(*one, wrap(impl, std::move(handler)));
          } else {
            impl->socket.async_write_some(buffers, wrap(impl, std::move(handler)));
          }
        },
        token, buffers);
  }

  /// Connects to the first endpoint of `endpoints` that accepts (boost::asio::async_connect).
  template <class EndpointSequence, class Token>
  auto async_connect(const EndpointSequence& endpoints, Token&& token) {
    using Endpoint = boost::asio::ip::tcp::endpoint;
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Endpoint)>(
        [impl = impl_.get()](auto handler, const EndpointSequence& endpoints) {
          impl->begin_operation();
          boost::asio::async_connect(impl->socket, endpoints, wrap(impl, std::move(handler)));
        },
        token, endpoints);
  }

  /// The shared state: outlives the stream while an operation or the watchdog's wait is
  /// outstanding (their handlers hold it).
  struct Impl : std::enable_shared_from_this<Impl> {
    explicit Impl(boost::asio::ip::tcp::socket s)
        : socket(std::move(s)), watchdog(socket.get_executor()) {}

    void begin_operation() {
      ++outstanding;
      watch();
    }
    /// Arms the watchdog unless it is already due no later than the deadline.
    void watch() {
      if (deadline != Clock::time_point::max() && (!armed || armed_at > deadline)) arm();
    }
    void end_operation() { --outstanding; }
    void arm();
    void on_watchdog(const boost::system::error_code& ec, std::uint64_t generation);
    void shut();

    boost::asio::ip::tcp::socket socket;
    boost::asio::steady_timer watchdog;
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point armed_at{};
    std::uint64_t generation = 0;  ///< of the watchdog's current wait
    std::uint64_t waits = 0;       ///< waits started (arm() calls)
    std::size_t outstanding = 0;   ///< operations started and not completed
    bool armed = false;
    bool timed_out = false;
  };

  /// Completion handler of an operation: maps the abort caused by a timeout to
  /// beast::error::timeout, and keeps the wrapped handler's associations.
  template <class Handler>
  struct Completion {
    Handler handler;
    std::shared_ptr<Impl> impl;

    template <class... Args>
    void operator()(boost::system::error_code ec, Args&&... args) {
      impl->end_operation();
      if (ec && impl->timed_out) ec = boost::beast::error::timeout;
      impl.reset();
      std::move(handler)(ec, std::forward<Args>(args)...);
    }
  };

 private:
  template <class Handler>
  static Completion<std::decay_t<Handler>> wrap(Impl* impl, Handler&& handler) {
    return {std::forward<Handler>(handler), impl->shared_from_this()};
  }

  /// The only non-empty buffer of `buffers` (an empty one if there is none), or nullopt when
  /// several are non-empty.
  template <class ConstBufferSequence>
  static std::optional<boost::asio::const_buffer> single_buffer(
      const ConstBufferSequence& buffers) {
    std::optional<boost::asio::const_buffer> found;
    const auto end = boost::asio::buffer_sequence_end(buffers);
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != end; ++it) {
      const boost::asio::const_buffer buffer(*it);
      if (buffer.size() == 0) continue;
      if (found) return std::nullopt;
      found = buffer;
    }
    return found.value_or(boost::asio::const_buffer());
  }

  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::net

namespace boost::asio {

template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, sluice::net::TimedStream::Completion<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const sluice::net::TimedStream::Completion<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const sluice::net::TimedStream::Completion<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};

}  // namespace boost::asio
