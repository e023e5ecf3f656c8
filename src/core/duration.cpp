// Duration parsing for headers and config values. See duration.hpp for the accepted forms.
#include "sluice/core/duration.hpp"

#include <charconv>
#include <cstdint>
#include <limits>

namespace sluice::core {
namespace {

constexpr std::size_t kMaxDurationText = 64;

void set_error(std::string* error, std::string message) {
  if (error) *error = std::move(message);
}

// Nanoseconds per unit, or 0 when the unit is unknown.
std::int64_t unit_nanos(std::string_view unit) {
  if (unit == "ns") return 1;
  if (unit == "us" || unit == "µs") return 1'000;
  if (unit == "ms") return 1'000'000;
  if (unit == "s") return 1'000'000'000;
  if (unit == "m") return 60'000'000'000;
  if (unit == "h") return 3'600'000'000'000;
  return 0;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, std::string* error) {
  if (text.empty()) {
    set_error(error, "empty duration");
    return std::nullopt;
  }
  if (text.size() > kMaxDurationText) {
    set_error(error, "duration too long");
    return std::nullopt;
  }
  if (text.front() == '-') {
    set_error(error, "negative duration");
    return std::nullopt;
  }
  const std::int64_t max_ns = kMaxDuration.count();

  // A bare integer means milliseconds.
  bool all_digits = true;
  for (char c : text)
    all_digits = all_digits && is_digit(c);
  if (all_digits) {
    std::uint64_t ms = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc{} || ptr != text.data() + text.size() ||
        ms > static_cast<std::uint64_t>(max_ns / 1'000'000)) {
      set_error(error, "duration too large (max 30 days)");
      return std::nullopt;
    }
    return std::chrono::milliseconds(ms);
  }

  // One or more <number><unit> terms: "1m30s", "1.5s", "250ms".
  double total_ns = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && (is_digit(text[i]) || text[i] == '.'))
      ++i;
    if (i == start) {
      set_error(error, "expected a number in '" + std::string(text) + "'");
      return std::nullopt;
    }
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data() + start, text.data() + i, value);
    if (ec != std::errc{} || ptr != text.data() + i) {
      set_error(error, "bad number in '" + std::string(text) + "'");
      return std::nullopt;
    }
    std::size_t unit_start = i;
    while (i < text.size() && !is_digit(text[i]) && text[i] != '.')
      ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty()) {
      set_error(error, "missing unit in '" + std::string(text) + "' (use ms, s, m or h)");
      return std::nullopt;
    }
    std::int64_t per = unit_nanos(unit);
    if (per == 0) {
      set_error(error, "unknown unit '" + std::string(unit) + "' (use ms, s, m or h)");
      return std::nullopt;
    }
    total_ns += value * static_cast<double>(per);
    if (total_ns > static_cast<double>(max_ns)) {
      set_error(error, "duration too large (max 30 days)");
      return std::nullopt;
    }
  }
  return Duration(static_cast<std::int64_t>(total_ns));
}

std::string format_duration(Duration d) {
  using namespace std::chrono;
  const auto ns = d.count();
  if (ns % 3'600'000'000'000 == 0 && ns != 0) return std::to_string(ns / 3'600'000'000'000) + "h";
  if (ns % 60'000'000'000 == 0 && ns != 0) return std::to_string(ns / 60'000'000'000) + "m";
  if (ns % 1'000'000'000 == 0) return std::to_string(ns / 1'000'000'000) + "s";
  if (ns % 1'000'000 == 0) return std::to_string(ns / 1'000'000) + "ms";
  if (ns % 1'000 == 0) return std::to_string(ns / 1'000) + "us";
  return std::to_string(ns) + "ns";
}

}  // namespace sluice::core
