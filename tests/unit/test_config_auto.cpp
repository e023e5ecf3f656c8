// `"max_concurrency": "auto"` and `auto_concurrency` (issue 13): on an upstreams[] entry and on
// the single upstream, the defaults derived from them, and the errors, each naming its field.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "config_test_support.hpp"
#include "sluice/config/config.hpp"

using sluice::config::Config;
using sluice::config::dump_config;
using sluice::test::only_error;
using sluice::test::parse_ok;

TEST_CASE("auto config: a backend's limit is learned within auto_concurrency") {
  Config c = parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": "auto"},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": "auto",
       "auto_concurrency": {"min": 2, "max": 8, "min_stream_tokens_per_s": 12.5}},
      {"name": "gpu-c", "url": "http://10.0.0.7:11434", "max_concurrency": 3}]})");
  const auto& core = c.scheduler.core;
  REQUIRE(core.backends.size() == 3);
  REQUIRE(core.backends[0].auto_concurrency);
  CHECK(core.backends[0].auto_concurrency->min == 1);
  CHECK(core.backends[0].auto_concurrency->max == 32);
  CHECK(core.backends[0].auto_concurrency->min_stream_tokens_per_s == 0);
  CHECK(core.backends[0].max_concurrency == 1);  // it starts at its min
  REQUIRE(core.backends[1].auto_concurrency);
  CHECK(core.backends[1].auto_concurrency->min == 2);
  CHECK(core.backends[1].auto_concurrency->max == 8);
  CHECK(core.backends[1].auto_concurrency->min_stream_tokens_per_s == 12.5);
  CHECK(core.backends[1].max_concurrency == 2);
  CHECK_FALSE(core.backends[2].auto_concurrency);
  CHECK(core.backends[2].max_concurrency == 3);
  CHECK(c.backends[1].auto_concurrency == core.backends[1].auto_concurrency);
  // The global cap, unset, never holds a backend back: the adaptive ones count their max.
  CHECK(core.max_concurrency == 32 + 8 + 3);
  CHECK_FALSE(core.auto_concurrency);

  // The dump says "auto" and the bounds, and reads back to the same config.
  const auto dumped = nlohmann::json::parse(dump_config(c));
  CHECK(dumped["upstreams"][0]["max_concurrency"] == "auto");
  CHECK(dumped["upstreams"][1]["auto_concurrency"]["max"] == 8);
  CHECK_FALSE(dumped["upstreams"][2].contains("auto_concurrency"));
  CHECK(dump_config(parse_ok(dumped.dump())) == dump_config(c));
}

TEST_CASE("auto config: the single upstream") {
  Config c = parse_ok(R"({"upstream": {"url": "http://127.0.0.1:11434",
                          "max_concurrency": "auto", "auto_concurrency": {"max": 12}}})");
  const auto& core = c.scheduler.core;
  REQUIRE(core.auto_concurrency);
  CHECK(core.auto_concurrency->min == 1);
  CHECK(core.auto_concurrency->max == 12);
  CHECK(core.backends.empty());       // still the core's implicit single backend
  CHECK(core.max_concurrency == 12);  // unset, the cap is auto's max
  REQUIRE(c.backends.size() == 1);
  CHECK(c.backends[0].auto_concurrency == core.auto_concurrency);

  // An explicit scheduler.max_concurrency caps the learned limit.
  Config capped = parse_ok(R"({"upstream": {"max_concurrency": "auto"},
                               "scheduler": {"max_concurrency": 4}})");
  CHECK(capped.scheduler.core.max_concurrency == 4);
  CHECK(capped.scheduler.core.auto_concurrency->max == 32);
  // min alone moves the default max up with it.
  Config high = parse_ok(R"({"upstream": {"max_concurrency": "auto",
                            "auto_concurrency": {"min": 40}}})");
  CHECK(high.scheduler.core.auto_concurrency->max == 40);
  // Without "auto" nothing changes.
  CHECK_FALSE(parse_ok("{}").scheduler.core.auto_concurrency);
}

TEST_CASE("auto config: mistakes are errors that name the field") {
  CHECK(only_error(R"({"upstreams": [{"name": "a", "url": "http://a:1",
                       "max_concurrency": "fast"}]})") ==
        "sluice.json:2: upstreams[0].max_concurrency: must be an integer from 1 to 100000 or "
        "\"auto\", not \"fast\"");
  CHECK(only_error(R"({"upstreams": [{"name": "a", "url": "http://a:1",
                       "max_concurrency": 2, "auto_concurrency": {"max": 4}}]})") ==
        "sluice.json:2: upstreams[0].auto_concurrency: only with \"max_concurrency\": \"auto\"");
  CHECK(only_error(R"({"upstreams": [{"name": "a", "url": "http://a:1",
                       "max_concurrency": "auto", "auto_concurrency": {"min": 5, "max": 4}}]})") ==
        "sluice.json:2: upstreams[0].auto_concurrency.max: must be at least min (5)");
  CHECK(
      only_error(R"({"upstream": {"max_concurrency": "auto",
                       "auto_concurrency": {"max": 5000}}})") ==
      "sluice.json:2: upstream.auto_concurrency.max: must be an integer from 1 to 1024, not 5000");
  CHECK(only_error(R"({"upstream": {"max_concurrency": "auto",
                       "auto_concurrency": {"min_stream_tokens_per_s": -1}}})") ==
        "sluice.json:2: upstream.auto_concurrency.min_stream_tokens_per_s: must be a number of "
        "tokens per second >= 0, not -1");
  CHECK(only_error(R"({"upstream": {"max_concurrency": "auto",
                       "auto_concurrency": {"mx": 5}}})")
            .find("upstream.auto_concurrency.mx: unknown key") != std::string::npos);
  CHECK(only_error(R"({"upstream": {"max_concurrency": 3}})") ==
        "sluice.json:1: upstream.max_concurrency: must be \"auto\" (a single upstream's fixed "
        "limit is scheduler.max_concurrency)");
  CHECK(only_error(R"({"upstream": {"auto_concurrency": {"max": 3}}})") ==
        "sluice.json:1: upstream.auto_concurrency: only with \"max_concurrency\": \"auto\"");
  CHECK(only_error(R"({"upstream": {"max_concurrency": "auto"},
                       "upstreams": [{"name": "a", "url": "http://a:1", "max_concurrency": 1}]})") ==
        "sluice.json:1: upstream.max_concurrency: with upstreams, set \"max_concurrency\": "
        "\"auto\" on each upstreams[] entry");
}
