// The failure map (src/net/failure.hpp), one row per (phase, error, deadline, departure): the
// outcome and upstream-error kind recorded, the status answered, the message. No sockets.
#include <doctest/doctest.h>

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "failure.hpp"

using namespace sluice;
using namespace sluice::net;
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using std::chrono::seconds;

TEST_CASE("classify_failure: every phase, one row each") {
  config::Config config;
  config.upstream.host = "ollama";
  config.upstream.connect_timeout = seconds(5);
  config.scheduler.max_inflight_duration = seconds(600);
  const auto timeout = beast::error::timeout;
  const auto reset = asio::error::connection_reset;
  using O = obs::Outcome;
  using U = obs::UpstreamError;
  using S = http::status;
  struct Row {
    const char* name;
    FailureFacts facts;
    O outcome;
    std::optional<U> kind;
    std::optional<S> status;
    const char* message;  // contained in the message
  };
  const Row rows[] = {
      {"connect refused",
       {.phase = Phase::connect, .error = asio::error::connection_refused},
       O::upstream_error,
       U::connect_failed,
       S::bad_gateway,
       "upstream unreachable: "},
      {"connect timeout",
       {.phase = Phase::connect, .error = timeout},
       O::upstream_error,
       U::connect_timeout,
       S::bad_gateway,
       "upstream connect timed out after 5s"},
      {"name lookup failed",
       {.phase = Phase::connect, .error = asio::error::host_not_found, .lookup = true},
       O::upstream_error,
       U::connect_failed,
       S::bad_gateway,
       "upstream host \"ollama\" could not be resolved: "},
      {"name lookup timed out",
       {.phase = Phase::connect, .error = timeout, .lookup = true},
       O::upstream_error,
       U::connect_timeout,
       S::bad_gateway,
       "no answer within 5s"},
      {"send reset",
       {.phase = Phase::send_request, .error = reset},
       O::upstream_error,
       U::reset,
       S::bad_gateway,
       "failed while sending the request"},
      {"send timeout",
       {.phase = Phase::send_request, .error = timeout},
       O::upstream_error,
       U::header_timeout,
       S::bad_gateway,
       "failed while sending the request"},
      {"upload timeout",
       {.phase = Phase::send_body, .error = timeout},
       O::upstream_error,
       U::idle_timeout,
       S::bad_gateway,
       "failed while sending the request"},
      {"no head in time",
       {.phase = Phase::response_head, .error = timeout, .silence = seconds(300)},
       O::upstream_error,
       U::header_timeout,
       S::gateway_timeout,
       "upstream sent no response headers within 5m"},
      {"no head before the inflight deadline",
       {.phase = Phase::response_head, .error = timeout, .deadline_passed = true},
       O::inflight_timeout,
       std::nullopt,
       S::gateway_timeout,
       "request exceeded scheduler.max_inflight_duration (10m)"},
      {"closed before responding",
       {.phase = Phase::response_head, .error = http::error::end_of_stream},
       O::upstream_error,
       U::reset,
       S::bad_gateway,
       "closed the connection before responding"},
      {"not HTTP",
       {.phase = Phase::response_head, .error = http::error::bad_version},
       O::upstream_error,
       U::bad_response,
       S::bad_gateway,
       "invalid HTTP response"},
      {"101",
       {.phase = Phase::response_head, .error = make_error_code(UpstreamProtocol::unexpected_101)},
       O::upstream_error,
       U::bad_response,
       S::bad_gateway,
       "switched protocols (101)"},
      {"too many 1xx",
       {.phase = Phase::response_head,
        .error = make_error_code(UpstreamProtocol::too_many_interim)},
       O::upstream_error,
       U::bad_response,
       S::bad_gateway,
       "more than 8 interim"},
      {"silence mid-body",
       {.phase = Phase::response_body, .error = timeout, .silence = seconds(60)},
       O::upstream_error,
       U::idle_timeout,
       S::bad_gateway,
       "upstream sent nothing for 1m"},
      {"reset mid-body",
       {.phase = Phase::response_body, .error = reset},
       O::upstream_error,
       U::reset,
       S::bad_gateway,
       "lost mid-response"},
      {"inflight deadline mid-body",
       {.phase = Phase::response_body, .error = timeout, .deadline_passed = true},
       O::inflight_timeout,
       std::nullopt,
       S::gateway_timeout,
       "max_inflight_duration"},
      {"the client went away first: no upstream error, nobody to answer",
       {.phase = Phase::response_body,
        .error = asio::error::operation_aborted,
        .client_left = true},
       O::client_gone,
       std::nullopt,
       std::nullopt,
       ""},
      {"departure wins over a deadline that also passed",
       {.phase = Phase::response_head,
        .error = timeout,
        .deadline_passed = true,
        .client_left = true},
       O::client_gone,
       std::nullopt,
       std::nullopt,
       ""},
      {"cut by close_all",
       {.phase = Phase::response_body,
        .error = asio::error::operation_aborted,
        .client_left = true,
        .cut = true},
       O::shutting_down,
       std::nullopt,
       std::nullopt,
       ""},
      {"client connection failed",
       {.phase = Phase::client, .error = asio::error::broken_pipe},
       O::client_gone,
       std::nullopt,
       std::nullopt,
       ""},
      {"client connection cut",
       {.phase = Phase::client, .error = asio::error::bad_descriptor, .cut = true},
       O::shutting_down,
       std::nullopt,
       std::nullopt,
       ""},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    const Failure f = classify_failure(row.facts, config, config.upstream);
    CHECK(f.outcome == row.outcome);
    CHECK(f.upstream_error == row.kind);
    CHECK(f.status == row.status);
    INFO(f.message);
    CHECK(f.message.find(row.message) != std::string::npos);
  }
}

TEST_CASE("retried_elsewhere: resets and header timeouts before any response byte, nothing else") {
  config::Config config;
  config.scheduler.max_inflight_duration = seconds(600);
  const auto timeout = beast::error::timeout;
  const auto reset = asio::error::connection_reset;
  struct Row {
    const char* name;
    FailureFacts facts;
    bool retried;
  };
  const Row rows[] = {
      {"reset before the head", {.phase = Phase::response_head, .error = reset}, true},
      {"closed before the head",
       {.phase = Phase::response_head, .error = http::error::end_of_stream},
       true},
      {"header timeout", {.phase = Phase::response_head, .error = timeout}, true},
      {"reset while sending the request", {.phase = Phase::send_request, .error = reset}, true},
      {"timeout while sending the request", {.phase = Phase::send_request, .error = timeout}, true},
      {"invalid response head",
       {.phase = Phase::response_head, .error = http::error::bad_version},
       false},
      {"101 without an upgrade",
       {.phase = Phase::response_head, .error = make_error_code(UpstreamProtocol::unexpected_101)},
       false},
      {"the request's own deadline",
       {.phase = Phase::response_head, .error = timeout, .deadline_passed = true},
       false},
      {"the client left",
       {.phase = Phase::response_head, .error = reset, .client_left = true},
       false},
      {"cut by close_all", {.phase = Phase::response_head, .error = reset, .cut = true}, false},
      {"streamed body (not in memory)", {.phase = Phase::send_body, .error = reset}, false},
      {"mid-response: a byte reached the client",
       {.phase = Phase::response_body, .error = reset},
       false},
      {"mid-response silence", {.phase = Phase::response_body, .error = timeout}, false},
      {"connect refused (moved separately)",
       {.phase = Phase::connect, .error = asio::error::connection_refused},
       false},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    CHECK(retried_elsewhere(row.facts.phase,
                            classify_failure(row.facts, config, config.upstream)) == row.retried);
  }
}

TEST_CASE("UpstreamProtocol codes have their own category and messages") {
  const auto ec = make_error_code(UpstreamProtocol::unexpected_101);
  CHECK(ec.category() == upstream_protocol_category());
  CHECK(std::string(ec.category().name()) == "sluice.upstream_protocol");
  CHECK(ec != make_error_code(UpstreamProtocol::too_many_interim));
  const boost::system::error_code converted = UpstreamProtocol::too_many_interim;  // enum -> code
  CHECK(converted.message().find("interim") != std::string::npos);
}
