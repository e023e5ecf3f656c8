// Parsing of human durations as they appear in headers and the config file:
// "250ms", "30s", "5m", "1h", "1500us", a bare integer (milliseconds), and sums of those
// ("1m30s"). Pure; bounded input length; no allocation on success.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "sluice/core/time.hpp"

namespace sluice::core {

/// Longest accepted duration: 30 days. Anything longer is a typo, not a timeout.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 30);

/// Parses `text` into a duration in [0, kMaxDuration]. On failure returns nullopt and, if `error`
/// is given, stores a short human reason ("unknown unit 'x'", "negative", "too large").
std::optional<Duration> parse_duration(std::string_view text, std::string* error = nullptr);

/// Formats a duration the way parse_duration reads it back ("250ms", "30s", "2m").
std::string format_duration(Duration d);

}  // namespace sluice::core
