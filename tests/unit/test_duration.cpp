#include <doctest/doctest.h>

#include "sluice/core/duration.hpp"

using namespace std::chrono_literals;
using sluice::core::format_duration;
using sluice::core::parse_duration;

TEST_CASE("durations: units, bare milliseconds and sums") {
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("5m") == 5min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("1500us") == 1500us);
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK(parse_duration("1m30s") == 90s);
  CHECK(parse_duration("1500") == 1500ms);
  CHECK(parse_duration("0") == 0ms);
}

TEST_CASE("durations: bad input is rejected with a reason") {
  std::string error;
  CHECK_FALSE(parse_duration("soon", &error));
  CHECK(error.find("number") != std::string::npos);
  CHECK_FALSE(parse_duration("10x", &error));
  CHECK(error == "unknown unit 'x' (use ms, s, m or h)");
  CHECK_FALSE(parse_duration("-5s", &error));
  CHECK(error == "negative duration");
  CHECK_FALSE(parse_duration("", &error));
  CHECK_FALSE(parse_duration("10", nullptr) == std::nullopt);
  CHECK_FALSE(parse_duration("99999999999999999999", &error));
  CHECK(error.find("too large") != std::string::npos);
  CHECK_FALSE(parse_duration("1000h", &error));
  CHECK_FALSE(parse_duration("5 s", &error));
  CHECK_FALSE(parse_duration(std::string(100, '1') + "s", &error));
}

TEST_CASE("durations: format round-trips") {
  for (auto d : {250ms, 30000ms, 120000ms, 3600000ms, 1ms}) {
    CHECK(parse_duration(format_duration(d)) == d);
  }
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(2min) == "2m");
}
