// Durations as Ollama reads them: Go's time.ParseDuration syntax ("300ms", "1h30m", "-1m",
// "0") for JSON strings and flags, a JSON number as seconds, and Ollama's rule that a negative
// keep-alive means "forever". Pure: no clock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace sluice::sim {

/// A keep-alive of this many ns or more (or any negative one) never expires.
inline constexpr std::int64_t kForever = -1;

/// Parses Go's time.ParseDuration syntax: an optional sign, then one or more decimal numbers
/// each with a unit (ns, us, µs, ms, s, m, h); "0" needs no unit. Returns nanoseconds, or
/// Go's error text (`time: invalid duration "x"`, `time: missing unit in duration "10"`).
std::variant<std::int64_t, std::string> parse_go_duration(std::string_view text);

/// A flag or environment value like OLLAMA_KEEP_ALIVE: a Go duration, or a plain number of
/// seconds. Returns nanoseconds (may be negative) or an error text.
std::variant<std::int64_t, std::string> parse_duration_flag(std::string_view text);

/// Seconds (JSON numbers in requests and /sim/config) to nanoseconds, saturating.
std::int64_t seconds_to_ns(double seconds);

/// Short text of a duration for logs: "300ms", "2.5s", "forever" (negative).
std::string describe_duration(std::int64_t ns);

}  // namespace sluice::sim
