// Noticing that a client went away while its request is parked or running, so that its place in
// the queue or its upstream connection (and with it Ollama's generation) is given up at once.
// Internal to src/net.
//
//  * Scheduled requests: watch_client() runs beside admission and relay from the end of the body
//    (raced with ||); a parked connection holds no read buffer while it waits.
//  * Pass-through requests: a DeferredWatch (proxy_impl.hpp), armed only once the request has
//    lasted Proxy::Impl::kDeferredWatchDelay: most pass-through answers take microseconds.
//  * Either way a departure is seen as EOF or a reset with MSG_PEEK (pipelined bytes are not a
//    departure), marks SessionRecord::client_left and closes the request's upstream connection.
#pragma once

#include "request_context.hpp"

namespace sluice::net {

/// Completes when the client has gone (EOF, reset, or its socket closed by close_all()); never
/// completes while the client merely pipelines its next request. On detection it closes the
/// session's upstream connection so that a pending upstream operation ends at once. Used for
/// scheduled requests, raced against their admission and relay.
///
/// It waits for readability and peeks rather than reading, so a parked connection holds no read
/// buffer (10 000 parked requests are 10 000 of these).
asio::awaitable<void> watch_client(Client& client);

/// After a request raced against watch_client(): who ended it. A request whose client left (or
/// whose connection close_all() cut) is attributed to that, not to the upstream connection that
/// was closed because of it, so sluice_upstream_errors_total counts only the upstream's failures.
void settle_departure(RequestContext& ctx, const SessionRecord& record, bool watcher_won);

/// Starts watching a pass-through request (armed later by the ticker, if it is still running).
void begin_deferred_watch(Proxy::Impl& proxy, Client& client);

/// The request ended: its watch (pending or armed) is dropped.
void end_deferred_watch(Client& client);

}  // namespace sluice::net
