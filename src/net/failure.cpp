// The failure map (see failure.hpp).
#include "failure.hpp"

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include "sluice/core/duration.hpp"
#include "wire.hpp"

namespace sluice::net {

namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

class UpstreamProtocolCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sluice.upstream_protocol"; }
  std::string message(int value) const override {
    switch (static_cast<UpstreamProtocol>(value)) {
      case UpstreamProtocol::unexpected_101:
        return "upstream switched protocols (101) without being asked";
      case UpstreamProtocol::too_many_interim:
        return "upstream sent more than " + std::to_string(wire::kMaxInterimResponses) +
               " interim (1xx) responses";
    }
    return "unknown upstream protocol error";
  }
};

std::string seconds_text(std::chrono::nanoseconds d) {
  return core::format_duration(std::chrono::duration_cast<core::Duration>(d));
}

/// A parse error in what the upstream sent (not its connection ending).
bool is_bad_http(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace

const boost::system::error_category& upstream_protocol_category() {
  static const UpstreamProtocolCategory category;
  return category;
}

error_code make_error_code(UpstreamProtocol e) {
  return {static_cast<int>(e), upstream_protocol_category()};
}

Failure classify_failure(const FailureFacts& facts, const config::Config& config,
                         const config::UpstreamConfig& upstream) {
  Failure f;
  if (facts.cut || facts.client_left) {
    // sluice closed the upstream connection because the client left (or the drain ended):
    // not the upstream's failure, and nobody to answer.
    f.outcome = facts.cut ? obs::Outcome::shutting_down : obs::Outcome::client_gone;
    f.message = facts.cut ? "cut by the drain timeout" : "the client went away";
    return f;
  }
  const bool timeout = facts.error == beast::error::timeout;
  switch (facts.phase) {
    case Phase::client:
      f.outcome = obs::Outcome::client_gone;
      f.message = "the client connection failed: " + facts.error.message();
      return f;
    case Phase::connect:
      f.status = http::status::bad_gateway;
      f.upstream_error =
          timeout ? obs::UpstreamError::connect_timeout : obs::UpstreamError::connect_failed;
      if (facts.lookup) {
        f.message = "upstream host \"" + upstream.host + "\" could not be resolved: " +
                    (timeout ? "no answer within " + seconds_text(upstream.connect_timeout)
                             : facts.error.message());
      } else if (timeout) {
        f.message = "upstream connect timed out after " + seconds_text(upstream.connect_timeout);
      } else {
        f.message = "upstream unreachable: " + facts.error.message();
      }
      return f;
    default:
      break;
  }
  if (timeout && facts.deadline_passed) {
    f.outcome = obs::Outcome::inflight_timeout;
    f.status = http::status::gateway_timeout;
    f.message = "request exceeded scheduler.max_inflight_duration (" +
                seconds_text(config.scheduler.max_inflight_duration) + ")";
    return f;
  }
  f.status = http::status::bad_gateway;
  switch (facts.phase) {
    case Phase::send_request:
    case Phase::send_body:
      f.upstream_error = !timeout                             ? obs::UpstreamError::reset
                         : facts.phase == Phase::send_request ? obs::UpstreamError::header_timeout
                                                              : obs::UpstreamError::idle_timeout;
      f.message = "upstream connection failed while sending the request: " + facts.error.message();
      return f;
    case Phase::response_head:
      if (timeout) {
        f.upstream_error = obs::UpstreamError::header_timeout;
        f.status = http::status::gateway_timeout;
        f.message = "upstream sent no response headers within " + seconds_text(facts.silence);
      } else if (facts.error.category() == upstream_protocol_category()) {
        f.upstream_error = obs::UpstreamError::bad_response;
        f.message = facts.error.message();
      } else if (is_bad_http(facts.error)) {
        f.upstream_error = obs::UpstreamError::bad_response;
        f.message = "upstream sent an invalid HTTP response: " + facts.error.message();
      } else {
        f.upstream_error = obs::UpstreamError::reset;
        f.message = "upstream closed the connection before responding";
      }
      return f;
    case Phase::response_body:
      if (timeout) {
        f.upstream_error = obs::UpstreamError::idle_timeout;
        f.message = "upstream sent nothing for " + seconds_text(facts.silence);
      } else {
        f.upstream_error =
            is_bad_http(facts.error) ? obs::UpstreamError::bad_response : obs::UpstreamError::reset;
        f.message = "upstream connection lost mid-response";
      }
      return f;
    case Phase::connect:
    case Phase::client:
      break;
  }
  return f;
}

bool retried_elsewhere(Phase phase, const Failure& failure) {
  if (phase != Phase::send_request && phase != Phase::response_head) return false;
  return failure.status && failure.outcome == obs::Outcome::upstream_error &&
         (failure.upstream_error == obs::UpstreamError::reset ||
          failure.upstream_error == obs::UpstreamError::header_timeout);
}

}  // namespace sluice::net
