// The access log: one line per request, as `key=value` text (logfmt) or one JSON object.
//
// format_access_line() is pure: the same record always gives the same line, which is what the
// tests check. Every field is always present, in a fixed order (unknown values are `-` in text,
// null in JSON), so lines can be parsed by position or by key.
//
// Invariants: the line is a single line whatever the record holds. Client-controlled strings
// (request id, path, user, method) are escaped: in text, a value with a space, quote, '=', '\'
// or a byte outside printable ASCII is quoted and those bytes escaped (\" \\ \n \r \t \xHH); in
// JSON, standard escaping, with invalid UTF-8 replaced by U+FFFD. Each string is cut to
// kMaxAccessFieldBytes (marked with "...") so a line stays bounded.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "sluice/config/config.hpp"
#include "sluice/core/time.hpp"
#include "sluice/obs/events.hpp"

namespace sluice::obs {

inline constexpr std::size_t kMaxAccessFieldBytes = 512;

struct AccessRecord {
  /// When the response ended (wall clock; printed as UTC, millisecond precision).
  std::chrono::system_clock::time_point time{};
  std::string request_id;
  std::string method;
  std::string path;      ///< request target without the query string
  std::string user;      ///< the user label; "" when absent
  std::string workload;  ///< a configured name, "passthrough" or "unclassified"
  std::string backend;   ///< the backend the request went to; "" when none
  int status = 0;        ///< status sent to the client; 0 when none was (client left while parked)
  Outcome outcome = Outcome::ok;
  std::optional<core::Duration> queue;  ///< time parked; nullopt when never queued (passthrough)
  std::optional<core::Duration> ttfb;   ///< to the first response byte; nullopt when none sent
  core::Duration total{};               ///< arrival to end of response
  std::int64_t prompt_tokens = -1;      ///< -1 = unknown
  std::int64_t output_tokens = -1;      ///< -1 = unknown
  std::optional<UpstreamError> upstream_error;
};

/// The access-log line for `record` (no trailing newline). Text example:
///   time=2026-11-26T02:30:00.123Z request_id=abc method=POST path=/api/chat user=alice
///   workload=paid backend=gpu-a status=200 outcome=ok queue_ms=0.000 ttfb_ms=120.500
///   total_ms=5230.000 prompt_tokens=26 output_tokens=298 upstream_error=-
std::string format_access_line(const AccessRecord& record, config::LogFormat format);

/// RFC 3339 UTC with milliseconds: "2026-11-26T02:30:00.123Z".
std::string format_utc(std::chrono::system_clock::time_point time);

}  // namespace sluice::obs
