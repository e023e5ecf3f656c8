// The closed vocabularies of observability: how a request ended (Outcome), what went wrong with
// the upstream (UpstreamError), and which tokens are counted (TokenKind). They are enums, not
// strings, so that metric label values and log fields come from this fixed list and never from
// anything a client sent. name() gives the wire/label spelling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::obs {

/// How a request ended. Exactly one per request; it is the `outcome` label of
/// sluice_requests_total and the `outcome` field of the access log.
enum class Outcome : std::uint8_t {
  ok,                ///< the upstream's response (status < 500) was relayed completely
  upstream_5xx,      ///< the upstream answered 5xx; relayed as it was
  upstream_error,    ///< no complete answer from the upstream: 502, 504, or a cut stream
  queue_timeout,     ///< 503: waited in the queue past its deadline
  queue_full,        ///< 429: the global or the workload's queue bound
  user_queue_full,   ///< 429: a per-key queue bound (e.g. one user's parked requests)
  shutting_down,     ///< 503: refused or dropped from the queue by shutdown
  invalid_request,   ///< 4xx from sluice itself: bad label header, body too large, bad JSON
  client_gone,       ///< the client left before the response was complete (parked or mid-stream)
  inflight_timeout,  ///< cut off after scheduler.max_inflight_duration
};
inline constexpr std::size_t kOutcomeCount = 10;

/// Why sluice got no (complete) answer from the upstream. The `kind` label of
/// sluice_upstream_errors_total and the `upstream_error` field of the access log.
enum class UpstreamError : std::uint8_t {
  connect_failed,   ///< refused, unreachable, no such host (answered 502)
  connect_timeout,  ///< upstream.connect_timeout elapsed (answered 502)
  header_timeout,   ///< no response headers within upstream.header_timeout (answered 504)
  idle_timeout,     ///< silence mid-body longer than upstream.idle_timeout
  reset,            ///< the connection was reset or closed before the response was complete
  bad_response,     ///< the upstream sent something that is not valid HTTP
};
inline constexpr std::size_t kUpstreamErrorCount = 6;

/// Token counts as reported by the upstream (prompt_eval_count / eval_count).
enum class TokenKind : std::uint8_t { prompt, output };
inline constexpr std::size_t kTokenKindCount = 2;

std::string_view name(Outcome outcome);
std::string_view name(UpstreamError error);
std::string_view name(TokenKind kind);

}  // namespace sluice::obs
