// Client departure watches (see client_watch.hpp).
#include "client_watch.hpp"

#include <sys/socket.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cerrno>

namespace sluice::net {

namespace {

/// Arms `watch` for its current request: waits for the client socket to become readable, then
/// tells EOF or a reset (the client left) from pipelined bytes with MSG_PEEK.
void arm_deferred_watch(const std::shared_ptr<DeferredWatch>& watch) {
  const std::uint64_t request = watch->request;
  watch->armed_for = request;
  auto on_readable = [watch, request](error_code ec) {
    if (watch->armed_for == request) watch->armed_for = 0;
    if (ec || watch->request != request || !watch->record || !watch->record->client) return;
    SessionRecord& record = *watch->record;
    auto& socket = record.client->socket();
    char byte;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return;  // pipelined bytes: the client is still there
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      arm_deferred_watch(watch);
      return;
    }
    record.client_left = true;
    if (record.upstream) {
      error_code ignored;
      record.upstream->socket().close(ignored);
    }
  };
  watch->record->client->socket().async_wait(
      tcp::socket::wait_read,
      asio::bind_cancellation_slot(watch->cancel.slot(), std::move(on_readable)));
}

}  // namespace

/// Completes when the client has gone (EOF, reset, or its socket closed by close_all()); never
/// completes while the client merely pipelines its next request. On detection it closes the
/// session's upstream connection so that a pending upstream operation ends at once. Used for
/// scheduled requests, raced against their admission and relay.
///
/// It waits for readability and peeks rather than reading, so a parked connection holds no read
/// buffer (10 000 parked requests are 10 000 of these).
asio::awaitable<void> watch_client(Client& client) {
  auto& socket = client.stream.socket();
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_tuple);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;  // the request finished
    if (!ec) {
      char byte;
      ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) {
        // Pipelined bytes: the client is still there. We cannot watch further without
        // consuming them, so wait until the request ends (and cancels this watch).
        asio::steady_timer forever(socket.get_executor(), Clock::time_point::max());
        co_await forever.async_wait(use_tuple);
        co_return;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    }
    client.record.client_left = true;
    if (client.record.upstream) {
      error_code ignored;
      client.record.upstream->socket().close(ignored);
    }
    co_return;
  }
}

/// After a request raced against watch_client(): who ended it. A request whose client left (or
/// whose connection close_all() cut) is attributed to that, not to the upstream connection that
/// was closed because of it, so sluice_upstream_errors_total counts only the upstream's failures.
void settle_departure(RequestContext& ctx, const SessionRecord& record, bool watcher_won) {
  if (!watcher_won && !record.client_left && !record.cut) return;
  ctx.outcome = record.cut ? obs::Outcome::shutting_down : obs::Outcome::client_gone;
  ctx.upstream_error.reset();
  ctx.client_reusable = false;
}

/// Starts watching a pass-through request (armed later by the ticker, if it is still running).
void begin_deferred_watch(Proxy::Impl& proxy, Client& client) {
  DeferredWatch& watch = *client.watch;
  watch.request = ++proxy.watched_requests;
  watch.since = Clock::now();
  proxy.defer_watch(client.watch);
}

/// The request ended: its watch (pending or armed) is dropped.
void end_deferred_watch(Client& client) {
  DeferredWatch& watch = *client.watch;
  watch.request = 0;
  if (watch.armed_for != 0) watch.cancel.emit(asio::cancellation_type::terminal);
}

void Proxy::Impl::defer_watch(const std::shared_ptr<DeferredWatch>& watch) {
  if (!watch->queued) {
    watch->queued = true;
    deferred_watches.push_back(watch);
  }
  if (watch_ticker_running) return;
  watch_ticker_running = true;
  watch_ticker.expires_after(kDeferredWatchDelay / 2);
  std::weak_ptr<Impl> self = weak_from_this();
  watch_ticker.async_wait([self](error_code ec) {
    if (auto proxy = self.lock()) proxy->on_watch_tick(ec);
  });
}

void Proxy::Impl::on_watch_tick(const error_code& ec) {
  watch_ticker_running = false;
  const auto now = Clock::now();
  std::size_t kept = 0;
  for (auto& watch : deferred_watches) {
    const bool live = !ec && watch->request != 0 && watch->record && watch->record->client;
    if (live && now - watch->since < kDeferredWatchDelay) {
      deferred_watches[kept++] = std::move(watch);  // not due yet
      continue;
    }
    watch->queued = false;
    if (live) arm_deferred_watch(watch);
  }
  deferred_watches.resize(kept);
  if (!deferred_watches.empty()) defer_watch(deferred_watches.front());
}

}  // namespace sluice::net
