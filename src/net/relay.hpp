// The upstream exchange of one request: the request head (and a body held in memory) written to
// a pooled connection, the response head read past interim 1xx heads, the body relayed to the
// client piece by piece as it arrives, token usage scanned on the way, and every failure turned
// into what the client sees (502/504 before the head, one error line after it). Internal to
// src/net.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <functional>
#include <string_view>

#include "request_context.hpp"
#include "upstream_pool.hpp"
#include "usage_scanner.hpp"

namespace sluice::net {

/// How the body of a request sent upstream is framed. sluice decides it from what it knows of
/// the body; nothing the client sent about framing is forwarded (see wire.hpp).
struct UpstreamFraming {
  bool chunked = false;                         ///< streamed as chunks
  std::optional<std::uint64_t> content_length;  ///< else this many bytes; neither: no body
};

/// Rewrites a client request header into the upstream request header (in place).
void prepare_upstream_request(http::request_header<>& header, std::string_view target,
                              const RequestContext& ctx, UpstreamFraming framing);

enum class RelayResult {
  finished,       ///< answered (or the client is gone)
  retry,          ///< a stale pooled connection: nothing sent, try a fresh one
  failed_unsent,  ///< the upstream reset or went silent before any response head; nothing
                  ///< sent to the client; the failure is in `*unanswered`
};

/// Reads the upstream response and relays it to the client: headers as soon as they arrive,
/// each body piece as it arrives. `connection` goes back to the pool when the exchange ended
/// cleanly. Returns retry (nothing sent to the client) when `may_retry` and a reused
/// connection turned out to be closed by the upstream before answering. With `unanswered`, a
/// reset or a header timeout before the response head (the client still there, the request's
/// own deadline not passed) is not answered but returned as failed_unsent, so the caller may
/// send the request elsewhere.
asio::awaitable<RelayResult> relay_response(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                            std::unique_ptr<UpstreamConnection>& connection,
                                            Clock::time_point deadline, UsageScanner* scanner,
                                            bool may_retry, Failure* unanswered = nullptr);

/// Answers (502) an upstream connection that could not be made.
asio::awaitable<void> answer_connect_failure(Client& client, RequestContext& ctx,
                                             const AcquireResult& acquired, bool close);

/// What became of a request whose backend failed before answering (Failover::reaim).
enum class Reaimed {
  moved,     ///< aimed at another backend (ctx.backend, ctx.upstream, the request head)
  stays,     ///< no move: answer the failure (502/504) as without a fleet
  answered,  ///< the request is over (answered while it waited again, or the client left)
};

/// How a request moves to another backend when its own fails before answering: built by
/// serve_scheduled.cpp for scheduled requests of a configured fleet (their body is in memory);
/// other requests have none and answer such failures as they always did.
struct Failover {
  /// Re-aims the request at another backend: one with room now, else after waiting in the
  /// queue again at its place for a slot on another (which may end it, answered, e.g. when its
  /// queue deadline passes). `why`: what failed, for the log.
  std::function<asio::awaitable<Reaimed>(std::string_view why)> reaim;
  /// Moves allowed after connect failures.
  int connect_moves = 0;
  /// Moves allowed after a reset or header timeout before the response head
  /// (fleet.retry_before_headers: 1, else 0).
  int unsent_moves = 0;
};

/// Sends a request whose body is in memory (or empty) and relays the answer. A reused
/// connection that the upstream had closed is retried once on a fresh one. With `failover`,
/// a backend that cannot be reached, or that resets or stays silent before the response head,
/// counts toward its ejection and the request moves to another backend (within the budgets
/// of `failover`); the request head is serialized again after each move.
template <class Body>
asio::awaitable<void> forward_buffered(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                       http::request<Body>& request, Clock::time_point deadline,
                                       UsageScanner* scanner, Failover* failover = nullptr);

}  // namespace sluice::net
