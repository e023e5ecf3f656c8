// Client departure watches (see client_watch.hpp).
#include "client_watch.hpp"

#include <sys/socket.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>

namespace sluice::net {

namespace {

/// The client left (or close_all() closed its socket): the request's place is given up. The
/// waiting departed() goes first, so a scheduled request's race is decided by the departure
/// before the upstream operation that the close below fails can run; then the upstream
/// connection is closed, which is how Ollama learns to stop generating.
void depart(DepartureWatch& watch, SessionRecord& record) {
  record.client_left = true;
  watch.departed.cancel();
  if (record.upstream) {
    error_code ignored;
    record.upstream->socket().close(ignored);
  }
}

/// Arms `watch` for its current request: waits for the client socket to become readable, then
/// tells EOF or a reset (the client left) from pipelined bytes with MSG_PEEK.
void arm(const std::shared_ptr<DepartureWatch>& watch) {
  const std::uint64_t request = watch->request;
  watch->armed_for = request;
  auto on_readable = [watch, request](error_code ec) {
    if (watch->armed_for == request) watch->armed_for = 0;
    // The request ended (its end cancelled this wait), or the session did.
    if (watch->request != request || !watch->record || !watch->record->client) return;
    SessionRecord& record = *watch->record;
    if (!ec) {
      auto& socket = record.client->socket();
      char byte;
      const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      // Pipelined bytes: the client is still there, and cannot be watched further without
      // consuming them; the watch ends with the request.
      if (n > 0) return;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        arm(watch);
        return;
      }
    }
    // EOF, a reset, or the socket closed under the wait (close_all()).
    depart(*watch, record);
  };
  watch->record->client->socket().async_wait(
      tcp::socket::wait_read,
      asio::bind_cancellation_slot(watch->cancel.slot(), std::move(on_readable)));
}

}  // namespace

void begin_watch(Proxy::Impl& proxy, Client& client, WatchFrom from) {
  DepartureWatch& watch = *client.watch;
  watch.request = ++proxy.watched_requests;
  watch.since = Clock::now();
  if (from == WatchFrom::now) {
    watch.departed.expires_at(Clock::time_point::max());
    arm(client.watch);
  } else {
    proxy.defer_watch(client.watch);
  }
}

asio::awaitable<void> departed(Client& client) {
  auto [ec] = co_await client.watch->departed.async_wait(use_tuple);
  (void)ec;  // cancelled by depart(), or by the race this wait lost
}

void end_watch(Client& client) {
  DepartureWatch& watch = *client.watch;
  watch.request = 0;
  if (watch.armed_for != 0) watch.cancel.emit(asio::cancellation_type::terminal);
}

void note_departure(RequestContext& ctx, const SessionRecord& record) {
  ctx.outcome = record.cut ? obs::Outcome::shutting_down : obs::Outcome::client_gone;
  ctx.upstream_error.reset();
  ctx.client_reusable = false;
}

void Proxy::Impl::defer_watch(const std::shared_ptr<DepartureWatch>& watch) {
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
    if (live) arm(watch);
  }
  deferred_watches.resize(kept);
  if (!deferred_watches.empty()) defer_watch(deferred_watches.front());
}

}  // namespace sluice::net
