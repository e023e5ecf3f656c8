// Noticing that a client went away while its request is parked or running, so that its place in
// the queue or its upstream connection (and with it Ollama's generation) is given up at once.
// One mechanism for both route kinds, a DepartureWatch per connection (proxy_impl.hpp):
//  * it waits for the client socket to become readable and peeks: EOF or a reset is a
//    departure, pipelined bytes are not (the watch then ends with the request), and so is the
//    socket closed under it by close_all();
//  * a departure marks SessionRecord::client_left, wakes departed() and closes the request's
//    upstream connection; the relay's failure map (failure.hpp) reads client_left and cut when
//    it classifies what follows, so no outcome is rewritten afterwards;
//  * scheduled requests are watched from the end of their body (they may park: a departure must
//    free the place in the queue at once) and race their work against departed(); pass-through
//    requests are watched only once they have lasted Proxy::Impl::kDeferredWatchDelay (most
//    answer in microseconds, and arming a watch for each cost a fifth of the proxy's CPU).
// A parked connection holds no read buffer while it is watched. Internal to src/net.
#pragma once

#include "request_context.hpp"

namespace sluice::net {

enum class WatchFrom : std::uint8_t {
  now,    ///< scheduled requests
  later,  ///< pass-through requests: after Proxy::Impl::kDeferredWatchDelay
};

/// Starts watching the client of the request that begins now.
void begin_watch(Proxy::Impl& proxy, Client& client, WatchFrom from);

/// Completes when the watch saw the client leave; never while the client merely pipelines its
/// next request. Raced (||) against a scheduled request's admission and relay.
asio::awaitable<void> departed(Client& client);

/// The request ended: its watch (pending or armed) is dropped.
void end_watch(Client& client);

/// The outcome of a request that its client's departure (or close_all()) ended: client_gone or
/// shutting_down; the connection is not reused.
void note_departure(RequestContext& ctx, const SessionRecord& record);

}  // namespace sluice::net
