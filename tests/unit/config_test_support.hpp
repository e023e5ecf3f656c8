// Helpers shared by the config loader's tests: parse a text as "sluice.json", expect it valid, or
// expect exactly one error and get it as the operator sees it.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "sluice/config/config.hpp"

namespace sluice::test {

inline config::ConfigResult parse(const std::string& text) {
  return config::parse_config(text, "sluice.json");
}

inline config::Config parse_ok(const std::string& text) {
  config::ConfigResult r = parse(text);
  INFO(r.error_text());
  REQUIRE(r.ok());
  return *r.config;
}

// The single error of `text`, as the operator sees it.
inline std::string only_error(const std::string& text) {
  config::ConfigResult r = parse(text);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.config.has_value());
  INFO(r.error_text());
  REQUIRE(r.errors.size() == 1);
  return r.errors.front().to_string();
}

}  // namespace sluice::test
