// The failure map: one function from what went wrong in a request's upstream exchange — the
// phase it happened in, the error_code, whether the request's own deadline had passed, whether
// the client had already gone — to what it means: the outcome and upstream-error kind recorded
// (metrics, access log), the status of the answer sluice makes when no response head went out
// yet, and the message (the JSON error, or the error line ending a stream). Pure: no sockets, no
// clock (the caller says whether the deadline passed), table-tested in tests/net/test_failure.cpp.
//
// Failures of sluice's own making (the upstream's protocol, not its connection) are codes of
// UpstreamProtocol in their own error_category, so they travel the same path as Asio's and
// Beast's codes.
//
// Order of precedence: a client that left (or a connection close_all() cut) explains every
// upstream error that follows, since sluice closed the upstream connection because of it; then
// the request's max_inflight_duration; then the error itself.
#pragma once

#include <boost/beast/http/status.hpp>
#include <boost/system/error_code.hpp>
#include <optional>
#include <string>
#include <system_error>

#include "sluice/config/config.hpp"
#include "sluice/obs/events.hpp"

namespace sluice::net {

/// Upstream responses sluice refuses to relay.
enum class UpstreamProtocol {
  unexpected_101 = 1,  ///< 101 Switching Protocols to a request that asked for no upgrade
  too_many_interim,    ///< more than wire::kMaxInterimResponses 1xx heads
};
const boost::system::error_category& upstream_protocol_category();
boost::system::error_code make_error_code(UpstreamProtocol e);

/// Where in the exchange the failure happened.
enum class Phase : std::uint8_t {
  connect,        ///< making the upstream connection (`lookup`: resolving its host name)
  send_request,   ///< writing a request held in memory (bounded by upstream.header_timeout)
  send_body,      ///< streaming a request body (bounded by upstream.idle_timeout)
  response_head,  ///< waiting for the response head (upstream.header_timeout)
  response_body,  ///< reading the response body (upstream.idle_timeout of silence)
  client,         ///< reading from or writing to the client
};

struct FailureFacts {
  Phase phase = Phase::connect;
  boost::system::error_code error;
  bool deadline_passed = false;  ///< the request's max_inflight_duration is over
  bool client_left = false;      ///< the departure watch saw the client go
  bool cut = false;              ///< close_all() cut the connection (drain timeout)
  bool lookup = false;           ///< connect phase: the host name did not resolve
  /// The silence allowed in the phase (header_timeout or idle_timeout as applied; pass-through
  /// requests get a longer one), for the message.
  std::chrono::nanoseconds silence{0};
};

struct Failure {
  obs::Outcome outcome = obs::Outcome::upstream_error;
  std::optional<obs::UpstreamError> upstream_error;
  /// The answer's status when no response head reached the client yet; none when the client is
  /// gone (nothing is sent).
  std::optional<boost::beast::http::status> status;
  std::string message;
};

/// `upstream`: the settings of the backend the request went to.
Failure classify_failure(const FailureFacts& facts, const config::Config& config,
                         const config::UpstreamConfig& upstream);

/// Whether a failure in `phase` may be sent to another backend of a fleet
/// (fleet.retry_before_headers): the upstream reset or closed the connection while a request
/// held in memory was sent or before the response head, or sent no head within header_timeout
/// — before any response byte. Not a connection that could not be made (always moved,
/// separately), not a streamed request body, not an invalid response (the upstream answered),
/// not anything after the head, not the request's own deadline, not a client that left.
bool retried_elsewhere(Phase phase, const Failure& failure);

}  // namespace sluice::net

template <>
struct boost::system::is_error_code_enum<sluice::net::UpstreamProtocol> : std::true_type {};
