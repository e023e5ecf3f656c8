// Go-style durations (see duration.hpp). Mirrors time.ParseDuration's grammar and limits.
#include "duration.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace sluice::sim {
namespace {

struct Unit {
  std::string_view name;
  double ns;
};
constexpr Unit kUnits[] = {{"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
                           {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::variant<std::int64_t, std::string> parse_go_duration(std::string_view text) {
  const std::string invalid = "time: invalid duration \"" + std::string(text) + "\"";
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::int64_t(0);
  if (s.empty()) return invalid;
  double total = 0;
  while (!s.empty()) {
    std::size_t i = 0;
    while (i < s.size() && is_digit(s[i]))
      ++i;
    const std::size_t int_end = i;
    std::size_t frac_end = i;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && is_digit(s[i]))
        ++i;
      frac_end = i;
    }
    if (int_end == 0 && frac_end <= 1) return invalid;  // no digits at all
    double value = 0;
    const std::string number(s.substr(0, frac_end));
    if (std::sscanf(number.c_str(), "%lf", &value) != 1) return invalid;
    s.remove_prefix(frac_end);
    std::size_t u = 0;
    while (u < s.size() && s[u] != '.' && !is_digit(s[u]))
      ++u;
    if (u == 0) return "time: missing unit in duration \"" + std::string(text) + "\"";
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    const Unit* found = nullptr;
    for (const auto& candidate : kUnits)
      if (candidate.name == unit) found = &candidate;
    if (!found)
      return "time: unknown unit \"" + std::string(unit) + "\" in duration \"" + std::string(text) +
             "\"";
    total += value * found->ns;
    if (total > 9.2233720368547758e18) return invalid;  // Go: overflow is an invalid duration
  }
  const auto ns = std::int64_t(std::llround(total));
  return negative ? -ns : ns;
}

std::variant<std::int64_t, std::string> parse_duration_flag(std::string_view text) {
  double seconds = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, seconds);
  if (!text.empty() && ec == std::errc() && p == end) return seconds_to_ns(seconds);
  return parse_go_duration(text);
}

std::int64_t seconds_to_ns(double seconds) {
  const double ns = seconds * 1e9;
  if (!(ns < 9.2e18)) return std::numeric_limits<std::int64_t>::max();
  if (!(ns > -9.2e18)) return std::numeric_limits<std::int64_t>::min();
  return std::int64_t(std::llround(ns));
}

std::string describe_duration(std::int64_t ns) {
  if (ns < 0) return "forever";
  char buf[64];
  if (ns == 0) return "0s";
  if (ns < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%lldns", static_cast<long long>(ns));
  } else if (ns < 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%gms", double(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%gs", double(ns) / 1e9);
  }
  return buf;
}

}  // namespace sluice::sim
