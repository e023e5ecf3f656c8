// Config loading: defaults, the example file, every kind of error with field and line, reload
// compatibility and the dump round trip.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "config_test_support.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/duration.hpp"

using namespace std::chrono_literals;
using sluice::config::Config;
using sluice::config::ConfigResult;
using sluice::config::dump_config;
using sluice::config::HostPort;
using sluice::config::load_config_file;
using sluice::config::LogFormat;
using sluice::config::LogLevel;
using sluice::config::parse_config;
using sluice::config::reload_incompatibility;
using sluice::test::only_error;
using sluice::test::parse;
using sluice::test::parse_ok;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string example_path() {
  return std::string(SLUICE_SOURCE_DIR) + "/config/sluice.json";
}

}  // namespace

TEST_CASE("config: an empty object gives the production defaults") {
  Config c = parse_ok("{}");
  CHECK(c.listen == HostPort{"127.0.0.1", 11435});
  REQUIRE(c.admin_listen.has_value());
  CHECK(*c.admin_listen == HostPort{"127.0.0.1", 11436});
  CHECK(c.upstream.url == "http://127.0.0.1:11434");
  CHECK(c.upstream.host == "127.0.0.1");
  CHECK(c.upstream.port == 11434);
  CHECK(c.upstream.host_header == "127.0.0.1:11434");
  CHECK(c.upstream.base_path.empty());
  CHECK(c.upstream.connect_timeout == 5s);
  CHECK(c.upstream.header_timeout == 300s);
  CHECK(c.upstream.idle_timeout == 60s);
  CHECK(c.upstream.max_idle_connections == 64);
  CHECK(c.scheduler.core.max_concurrency == 2);
  CHECK(c.scheduler.core.max_queue == 10000);
  CHECK(c.scheduler.core.queue_timeout_cap == 240s);
  CHECK(c.scheduler.core.per_key.empty());
  CHECK(c.scheduler.core.workloads.empty());
  CHECK(c.scheduler.core.default_workload.name == "default");
  CHECK(c.scheduler.max_inflight_duration == 600s);
  CHECK(c.limits.max_header_bytes == 16384);
  CHECK(c.limits.max_body_bytes == 32 * 1024 * 1024);
  CHECK(c.limits.max_scheduled_body_bytes == 8 * 1024 * 1024);
  CHECK(c.limits.header_read_timeout == 10s);
  CHECK(c.limits.keepalive_timeout == 60s);
  CHECK(c.limits.write_timeout == 60s);
  CHECK(c.limits.max_connections == 10000);
  CHECK(c.headers.user == "X-User-Id");
  CHECK(c.headers.request_id == "X-Request-Id");
  CHECK(c.routes.scheduled.size() == 7);
  CHECK(c.is_scheduled_route("/api/chat"));
  CHECK(c.is_scheduled_route("/v1/chat/completions"));
  CHECK_FALSE(c.is_scheduled_route("/api/tags"));
  CHECK_FALSE(c.is_scheduled_route("/api/chat/"));
  CHECK(c.log.level == LogLevel::info);
  CHECK(c.log.format == LogFormat::text);
  CHECK(c.log.access_log);
  CHECK(c.shutdown.drain_timeout == 30s);
}

TEST_CASE("config: a file with only whitespace and comments means {}") {
  CHECK(parse_ok("").listen.port == 11435);
  CHECK(parse_ok("  // nothing here\n /* at all */ \n").scheduler.core.max_concurrency == 2);
}

TEST_CASE("config: the documented example file loads cleanly") {
  ConfigResult r = load_config_file(example_path());
  INFO(r.error_text());
  REQUIRE(r.ok());
  for (const auto& w : r.warnings)
    INFO(w.to_string());
  CHECK(r.warnings.empty());
  const Config& c = *r.config;
  CHECK(sluice::core::validate(c.scheduler.core) == "");
  REQUIRE(c.scheduler.core.workloads.size() == 2);
  CHECK(c.scheduler.core.workloads[0].name == "paid");
  CHECK(c.scheduler.core.workloads[0].priority == 8);
  CHECK(c.scheduler.core.workloads[0].match.at(0).label == "tier");
  CHECK(c.scheduler.core.workloads[1].name == "free");
  CHECK(c.scheduler.core.workloads[1].match.at(0).values.size() == 2);
  REQUIRE(c.scheduler.core.per_key.size() == 1);
  CHECK(c.scheduler.core.per_key[0].label == "user");
  CHECK(c.scheduler.core.per_key[0].max_queue == 100);
  // The example spells out the defaults: it must agree with them field for field, apart from
  // the scheduler section it fills in.
  Config defaults = parse_ok("{}");
  Config same = c;
  same.scheduler = defaults.scheduler;
  CHECK(dump_config(same) == dump_config(defaults));
}

TEST_CASE("config: the container image's config is the example, listening in a container") {
  ConfigResult r = load_config_file(std::string(SLUICE_SOURCE_DIR) + "/config/container.json");
  INFO(r.error_text());
  REQUIRE(r.ok());
  CHECK(r.warnings.empty());
  const Config& c = *r.config;
  CHECK(c.listen == HostPort{"0.0.0.0", 11435});
  REQUIRE(c.admin_listen.has_value());
  CHECK(*c.admin_listen == HostPort{"0.0.0.0", 11436});
  CHECK(c.upstream.url == "http://ollama:11434");
  // `docker stop` kills 10 s after SIGTERM unless told otherwise: the drain must end before.
  CHECK(c.shutdown.drain_timeout < 10s);
  CHECK(c.shutdown.drain_timeout == 8s);

  // Everything else is config/sluice.json.
  ConfigResult example = load_config_file(example_path());
  REQUIRE(example.ok());
  nlohmann::ordered_json expected = nlohmann::ordered_json::parse(dump_config(*example.config));
  nlohmann::ordered_json actual = nlohmann::ordered_json::parse(dump_config(c));
  for (const auto& key : {"listen", "admin_listen"})
    actual[key] = expected[key];
  actual["upstream"]["url"] = expected["upstream"]["url"];
  actual["shutdown"]["drain_timeout"] = expected["shutdown"]["drain_timeout"];
  CHECK(actual.dump(2) == expected.dump(2));
}

TEST_CASE("config: comments are allowed anywhere") {
  Config c = parse_ok(R"(// head
{
  /* block */ "scheduler": { // trailing
    "max_concurrency": /* inline */ 5
  }
}
// tail)");
  CHECK(c.scheduler.core.max_concurrency == 5);
}

TEST_CASE("config: unknown keys are errors naming the path and the line, even when deep") {
  CHECK(only_error("{\n  \"listen\": \"127.0.0.1:1\",\n  \"lisen\": 3\n}") ==
        "sluice.json:3: lisen: unknown key; did you mean \"listen\"?");
  const std::string text = R"({
  "scheduler": {
    "workloads": [
      { "name": "a" },
      { "name": "b",
        "priority": 2,
        "colour": "red" }
    ]
  }
})";
  std::string e = only_error(text);
  CHECK(e.rfind("sluice.json:7: scheduler.workloads[1].colour: unknown key; expected one of: ",
                0) == 0);
  CHECK(contains(e, "fairness_key"));
  // A key with odd characters is quoted in the path.
  CHECK(only_error("{\"limits\": {\"max body\": 1}}") ==
        "sluice.json:1: limits[\"max body\"]: unknown key; expected one of: max_header_bytes, "
        "max_body_bytes, max_scheduled_body_bytes, header_read_timeout, keepalive_timeout, "
        "write_timeout, max_connections");
}

TEST_CASE("config: wrong types name the field, the line and what was found") {
  CHECK(only_error("{\n\"scheduler\": {\n \"max_concurrency\": \"2\"}}") ==
        "sluice.json:3: scheduler.max_concurrency: must be an integer from 1 to 100000, not a "
        "string");
  CHECK(contains(only_error("{\"scheduler\": {\"max_concurrency\": 2.5}}"), "not 2.5"));
  CHECK(contains(only_error("{\"scheduler\": {\"max_concurrency\": 0}}"), "not 0"));
  CHECK(contains(only_error("{\"scheduler\": {\"max_queue\": -1}}"), "scheduler.max_queue"));
  CHECK(contains(only_error("{\"scheduler\": {\"max_queue\": 18446744073709551615}}"),
                 "from 0 to 10000000"));
  CHECK(only_error("{\"log\": {\"access_log\": \"yes\"}}") ==
        "sluice.json:1: log.access_log: must be true or false, not a string");
  CHECK(only_error("{\"upstream\": []}") ==
        "sluice.json:1: upstream: must be an object, not an array");
  CHECK(only_error("[]") == "sluice.json:1: must be an object, not an array");
  CHECK(contains(only_error("{\"log\": {\"level\": \"verbose\"}}"), "log.level: must be one of"));
  CHECK(contains(only_error("{\"log\": {\"format\": \"xml\"}}"), "log.format"));
}

TEST_CASE("config: durations are strings or integers of milliseconds") {
  Config c = parse_ok(R"({"upstream": {"connect_timeout": "250ms", "idle_timeout": 1500},
                         "scheduler": {"queue_timeout_cap": "1m30s"},
                         "shutdown": {"drain_timeout": 0}})");
  CHECK(c.upstream.connect_timeout == 250ms);
  CHECK(c.upstream.idle_timeout == 1500ms);
  CHECK(c.scheduler.core.queue_timeout_cap == 90s);
  CHECK(c.shutdown.drain_timeout == 0s);

  CHECK(only_error("{\n \"upstream\": {\n  \"header_timeout\": \"soon\"\n }\n}") ==
        "sluice.json:3: upstream.header_timeout: bad duration \"soon\": expected a number in "
        "'soon' (write e.g. \"250ms\", \"30s\", \"5m\")");
  CHECK(contains(only_error("{\"upstream\": {\"header_timeout\": \"5 parsecs\"}}"),
                 "upstream.header_timeout: bad duration"));
  CHECK(contains(only_error("{\"upstream\": {\"header_timeout\": 1.5}}"), "must be a duration"));
  CHECK(contains(only_error("{\"upstream\": {\"header_timeout\": -5}}"), "from 0 to 30 days"));
  CHECK(contains(only_error("{\"upstream\": {\"header_timeout\": 0}}"), "greater than 0"));
  CHECK(contains(only_error("{\"upstream\": {\"header_timeout\": \"31d\"}}"), "bad duration"));
}

TEST_CASE("config: queue_timeout_cap must stay below undici's 300 s header timeout") {
  CHECK(parse_ok(R"({"scheduler": {"queue_timeout_cap": "299s"}})")
            .scheduler.core.queue_timeout_cap == 299s);
  for (const char* value : {"\"300s\"", "\"301s\"", "\"10m\"", "300000"}) {
    CAPTURE(value);
    std::string e =
        only_error(std::string("{\"scheduler\": {\"queue_timeout_cap\": ") + value + "}}");
    CHECK(contains(e, "scheduler.queue_timeout_cap: must be below 300s"));
    CHECK(contains(e, "undici"));
  }
  CHECK(contains(only_error(R"({"scheduler": {"queue_timeout_cap": 0}})"), "greater than 0"));
}

TEST_CASE("config: workloads") {
  Config c = parse_ok(R"({"scheduler": {"workloads": [
      {"name": "interactive", "match": {"tier": ["paid", "team"], "user": "*"},
       "priority": 0.5, "band": 1, "queue_timeout": "30s", "max_queue": 7,
       "fairness_key": "tier"},
      {"name": "rest"}],
    "default_workload": {"name": "other", "priority": 3, "band": -1, "fairness_key": "model"}}})");
  const auto& ws = c.scheduler.core.workloads;
  REQUIRE(ws.size() == 2);
  CHECK(ws[0].priority == 0.5);
  CHECK(ws[0].band == 1);
  CHECK(ws[0].queue_timeout == 30s);
  CHECK(ws[0].max_queue == 7);
  CHECK(ws[0].fairness_label == "tier");
  REQUIRE(ws[0].match.size() == 2);
  CHECK(ws[0].match[0].label == "tier");
  CHECK(ws[0].match[0].values == std::vector<std::string>{"paid", "team"});
  CHECK(ws[0].match[1].label == "user");
  CHECK(ws[0].match[1].values.empty());
  CHECK(ws[1].match.empty());
  CHECK(ws[1].priority == 1.0);
  CHECK(c.scheduler.core.default_workload.name == "other");
  CHECK(c.scheduler.core.default_workload.priority == 3);
  CHECK(c.scheduler.core.default_workload.band == -1);
  CHECK(c.scheduler.core.default_workload.fairness_label == "model");
}

TEST_CASE("config: workload errors") {
  const std::string priority_zero = R"({
  "scheduler": {
    "workloads": [
      { "name": "paid", "priority": 8 },
      { "name": "free",
        "priority": 0 }
    ]
  }
})";
  CHECK(only_error(priority_zero) ==
        "sluice.json:6: scheduler.workloads[1].priority: must be a number > 0 and <= 1000000, "
        "not 0");
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "a", "priority": "8"}]}})"),
                 "must be a number > 0 and <= 1000000, not a string"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "a", "priority": 1e7}]}})"),
                 "priority: must be a number > 0"));

  const std::string duplicate =
      "{\"scheduler\": {\"workloads\": [\n"
      "  {\"name\": \"a\"},\n"
      "  {\"name\": \"a\"}]}}";
  CHECK(only_error(duplicate) ==
        "sluice.json:3: scheduler.workloads[1].name: duplicate workload "
        "name \"a\" (also scheduler.workloads[0])");

  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "default"}]}})"),
                 "scheduler.workloads[0].name: \"default\" is the default workload's name"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "x"}],
                                              "default_workload": {"name": "x"}}})"),
                 "scheduler.workloads[0].name: \"x\" is the default workload's name"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"priority": 2}]}})"),
                 "scheduler.workloads[0]: \"name\" is required"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "a b"}]}})"),
                 "scheduler.workloads[0].name: name may only contain"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "passthrough"}]}})"),
                 "is reserved"));
  CHECK(contains(only_error(R"({"scheduler": {"default_workload": {"name": "unclassified"}}})"),
                 "scheduler.default_workload.name: \"unclassified\" is reserved"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": {"name": "a"}}})"),
                 "scheduler.workloads: must be an array"));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "a", "band": 5000}]}})"),
                 "scheduler.workloads[0].band: must be an integer from -1000 to 1000"));
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "fairness_key": "User"}]}})"),
      "scheduler.workloads[0].fairness_key: label name \"User\" may only contain lowercase"));
  CHECK(contains(only_error(R"({"scheduler": {"default_workload": {"match": {"tier": "x"}}}})"),
                 "scheduler.default_workload.match: the default workload takes every request"));
}

TEST_CASE("config: match forms and their errors") {
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"tier": []}}]}})"),
      "scheduler.workloads[0].match.tier: empty list never matches"));
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"tier": ["x", 3]}}]}})"),
      "scheduler.workloads[0].match.tier[1]: must be a string"));
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"tier": ["x", "*"]}}]}})"),
      "match.tier[1]: \"*\" means any value"));
  CHECK(
      contains(only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"tier": 1}}]}})"),
               "match.tier: must be a value"));
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"tier": ""}}]}})"),
      "match.tier: value \"\" can never match"));
  CHECK(contains(
      only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": {"Tier": "x"}}]}})"),
      "match.Tier: label name \"Tier\""));
  CHECK(contains(only_error(R"({"scheduler": {"workloads": [{"name": "a", "match": ["tier"]}]}})"),
                 "scheduler.workloads[0].match: must be an object"));
}

TEST_CASE("config: per_key accepts one object or an array of them") {
  Config one = parse_ok(R"({"scheduler": {"per_key": {"label": "user", "max_concurrency": 1}}})");
  REQUIRE(one.scheduler.core.per_key.size() == 1);
  CHECK(one.scheduler.core.per_key[0].label == "user");
  CHECK(one.scheduler.core.per_key[0].max_concurrency == 1);
  CHECK(one.scheduler.core.per_key[0].max_queue == 0);

  Config two = parse_ok(R"({"scheduler": {"per_key": [
      {"label": "user", "max_queue": 100},
      {"label": "model", "max_concurrency": 2, "max_tokens": 5000}]}})");
  REQUIRE(two.scheduler.core.per_key.size() == 2);
  CHECK(two.scheduler.core.per_key[0].max_queue == 100);
  CHECK(two.scheduler.core.per_key[1].label == "model");
  CHECK(two.scheduler.core.per_key[1].max_tokens == 5000);

  CHECK(only_error("{\"scheduler\": {\"per_key\": [\n{\"label\": \"user\", \"max_queue\": 1},\n"
                   "{\"label\": \"user\", \"max_queue\": 2}]}}") ==
        "sluice.json:3: scheduler.per_key[1].label: label \"user\" already has a per-key limit at "
        "scheduler.per_key[0]");
  CHECK(contains(only_error(R"({"scheduler": {"per_key": {"max_concurrency": 1}}})"),
                 "scheduler.per_key: \"label\" is required"));
  CHECK(contains(only_error(R"({"scheduler": {"per_key": "user"}})"),
                 "scheduler.per_key: must be an object"));
  CHECK(contains(only_error(R"({"scheduler": {"per_key": [{"label": "user", "max": 1}]}})"),
                 "scheduler.per_key[0].max: unknown key"));
}

TEST_CASE("config: listen addresses") {
  Config c = parse_ok(R"({"listen": "[::1]:0", "admin_listen": "localhost:9000"})");
  CHECK(c.listen == HostPort{"::1", 0});
  CHECK(c.listen.to_string() == "[::1]:0");
  CHECK(*c.admin_listen == HostPort{"localhost", 9000});
  CHECK_FALSE(parse_ok(R"({"admin_listen": ""})").admin_listen.has_value());

  CHECK(contains(only_error(R"({"listen": "127.0.0.1"})"), "listen: port required"));
  CHECK(contains(only_error(R"({"listen": ":8080"})"), "listen: host required"));
  CHECK(contains(only_error(R"({"listen": "1.2.3.4:70000"})"), "port must be from 0 to 65535"));
  CHECK(contains(only_error(R"({"listen": "u@h:1"})"), "without user information"));
  CHECK(contains(only_error(R"({"listen": "a b:1"})"), "listen: must be \"host:port\""));
  CHECK(contains(only_error(R"({"listen": ""})"), "listen: host required"));
  CHECK(contains(only_error(R"({"listen": "127.0.0.1:9", "admin_listen": "127.0.0.1:9"})"),
                 "admin_listen: must differ from listen"));
}

TEST_CASE("config: upstream URL") {
  Config c = parse_ok(R"({"upstream": {"url": "http://gpu-box:8080/ollama/"}})");
  CHECK(c.upstream.host == "gpu-box");
  CHECK(c.upstream.port == 8080);
  CHECK(c.upstream.base_path == "/ollama");
  CHECK(c.upstream.host_header == "gpu-box:8080");
  CHECK(c.upstream.url == "http://gpu-box:8080/ollama");

  Config plain = parse_ok(R"({"upstream": {"url": "HTTP://example.com"}})");
  CHECK(plain.upstream.port == 80);
  CHECK(plain.upstream.host_header == "example.com");
  CHECK(plain.upstream.base_path.empty());

  Config v6 = parse_ok(R"({"upstream": {"url": "http://[::1]:11434/"}})");
  CHECK(v6.upstream.host == "::1");
  CHECK(v6.upstream.host_header == "[::1]:11434");

  CHECK(contains(only_error(R"({"upstream": {"url": "https://x:1"}})"),
                 "upstream.url: scheme must be http"));
  CHECK(contains(only_error(R"({"upstream": {"url": "http:///path"}})"), "host required"));
  CHECK(contains(only_error(R"({"upstream": {"url": "127.0.0.1:11434"}})"), "upstream.url"));
  CHECK(contains(only_error(R"({"upstream": {"url": "not a url"}})"), "not a valid URL"));
  CHECK(contains(only_error(R"({"upstream": {"url": "http://h:0"}})"), "port must be from 1"));
  CHECK(contains(only_error(R"({"upstream": {"url": "http://h:99999"}})"), "port must be"));
  CHECK(contains(only_error(R"({"upstream": {"url": "http://u:p@h:1"}})"), "user information"));
  CHECK(contains(only_error(R"({"upstream": {"url": "http://h:1/?a=b"}})"), "query"));
}

TEST_CASE("config: limits, headers, routes") {
  Config c = parse_ok(R"({"limits": {"max_body_bytes": 1000, "max_scheduled_body_bytes": 1000},
                         "headers": {"user": "X-Api-User"},
                         "routes": {"scheduled": ["/api/chat"]}})");
  CHECK(c.limits.max_body_bytes == 1000);
  CHECK(c.headers.user == "X-Api-User");
  CHECK(c.headers.tier == "X-Tier");
  CHECK(c.routes.scheduled == std::vector<std::string>{"/api/chat"});
  CHECK_FALSE(c.is_scheduled_route("/api/generate"));

  CHECK(contains(only_error(R"({"limits": {"max_header_bytes": 10}})"),
                 "limits.max_header_bytes: must be an integer from 1024"));
  CHECK(contains(only_error(R"({"headers": {"tier": "X-User-Id"}})"),
                 "headers.tier: \"X-User-Id\" is already the header for user"));
  CHECK(contains(only_error(R"({"headers": {"user": "x-tier"}})"),
                 "headers.tier: \"X-Tier\" is already the header for user"));
  CHECK(contains(only_error(R"({"headers": {"user": "X User"}})"),
                 "headers.user: must be an HTTP header name"));
  CHECK(contains(only_error(R"({"headers": {"user": "Host"}})"), "is a standard HTTP header"));
  CHECK(contains(only_error(R"({"routes": {"scheduled": ["api/chat"]}})"),
                 "routes.scheduled[0]: must be a path starting with '/'"));
  CHECK(contains(only_error(R"({"routes": {"scheduled": ["/a?b=1"]}})"), "without query"));
  CHECK(contains(only_error(R"({"routes": {"scheduled": ["/a", "/a"]}})"),
                 "routes.scheduled[1]: duplicate path"));
}

// A default that another field constrains follows that field when the file sets it; only two
// values the file sets can contradict each other (docs/configuration.md, "Derived defaults").
TEST_CASE("config: max_scheduled_body_bytes and max_body_bytes: a default follows the other") {
  // Only max_body_bytes: the scheduled bound shrinks to it (it used to refuse to start).
  Config small = parse_ok(R"({"limits": {"max_body_bytes": 1048576}})");
  CHECK(small.limits.max_body_bytes == 1048576);
  CHECK(small.limits.max_scheduled_body_bytes == 1048576);
  // ...but never grows past its own default.
  Config big = parse_ok(R"({"limits": {"max_body_bytes": 100000000}})");
  CHECK(big.limits.max_scheduled_body_bytes == 8 * 1024 * 1024);
  // Only max_scheduled_body_bytes, above max_body_bytes' default: that default grows to it.
  Config scheduled = parse_ok(R"({"limits": {"max_scheduled_body_bytes": 67108864}})");
  CHECK(scheduled.limits.max_scheduled_body_bytes == 67108864);
  CHECK(scheduled.limits.max_body_bytes == 67108864);
  CHECK(parse_ok(R"({"limits": {"max_scheduled_body_bytes": 1000}})").limits.max_body_bytes ==
        32 * 1024 * 1024);
  // Both set and contradicting: an error naming the field and its line.
  CHECK(only_error("{\"limits\": {\"max_body_bytes\": 1000,\n"
                   "            \"max_scheduled_body_bytes\": 1001}}") ==
        "sluice.json:2: limits.max_scheduled_body_bytes: must not exceed max_body_bytes (1000)");
  CHECK(parse(R"({"limits": {"max_body_bytes": 1000, "max_scheduled_body_bytes": 1000}})").ok());
  // The effective config shows the derived values, and reads back to the same.
  const std::string dumped = dump_config(small);
  CHECK(contains(dumped, "\"max_scheduled_body_bytes\": 1048576"));
  CHECK(dump_config(parse_ok(dumped)) == dumped);
  CHECK(contains(dump_config(scheduled), "\"max_body_bytes\": 67108864"));
}

TEST_CASE("config: queue_timeout_cap and workload queue_timeouts: a default follows the other") {
  // A cap below the workloads' default queue_timeout (60s): their default shrinks to it, silently.
  ConfigResult capped = parse(R"({"scheduler": {"queue_timeout_cap": "30s",
      "workloads": [{"name": "w", "match": {"tier": "x"}}]}})");
  REQUIRE(capped.ok());
  CHECK(capped.warnings.empty());
  const Config& c = *capped.config;
  CHECK(c.scheduler.core.queue_timeout_cap == 30s);
  CHECK(c.scheduler.core.workloads[0].queue_timeout == 30s);
  CHECK(c.scheduler.core.default_workload.queue_timeout == 30s);
  CHECK(parse_ok(R"({"scheduler": {"queue_timeout_cap": "90s"}})")
            .scheduler.core.default_workload.queue_timeout == 60s);

  // A workload queue_timeout above the cap's default (240s): the cap grows to the longest.
  ConfigResult waits = parse(R"({"scheduler": {
      "workloads": [{"name": "batch", "match": {"tier": "b"}, "queue_timeout": "280s"},
                    {"name": "short", "match": {"tier": "s"}, "queue_timeout": "250s"}]}})");
  REQUIRE(waits.ok());
  CHECK(waits.warnings.empty());
  CHECK(waits.config->scheduler.core.queue_timeout_cap == 280s);
  CHECK(waits.config->scheduler.core.workloads[0].queue_timeout == 280s);
  CHECK(waits.config->scheduler.core.default_workload.queue_timeout == 60s);
  CHECK(parse_ok(R"({"scheduler": {"default_workload": {"queue_timeout": "270s"}}})")
            .scheduler.core.queue_timeout_cap == 270s);
  CHECK(parse_ok(R"({"scheduler": {"workloads": [{"name": "w", "queue_timeout": "10s"}]}})")
            .scheduler.core.queue_timeout_cap == 240s);
  // ...but no further than 299s, as the cap must stay below 300s: then the cap applies, with a
  // warning saying why.
  ConfigResult longer = parse(R"({"scheduler": {
      "workloads": [{"name": "w", "match": {"tier": "b"}, "queue_timeout": "10m"}]}})");
  REQUIRE(longer.ok());
  CHECK(longer.config->scheduler.core.queue_timeout_cap == 299s);
  REQUIRE(longer.warnings.size() == 1);
  CHECK(contains(longer.warnings[0].to_string(),
                 "sluice.json:2: scheduler.workloads[0].queue_timeout: 10m is above "
                 "queue_timeout_cap (299s, the longest it is derived to, since it must stay "
                 "below 300s), which applies instead"));

  // Both set, the workload's above the cap: legal (the cap applies), warned with field and line.
  ConfigResult both = parse(R"({"scheduler": {"queue_timeout_cap": "60s",
      "default_workload": {"queue_timeout": "2m"}}})");
  REQUIRE(both.ok());
  REQUIRE(both.warnings.size() == 1);
  CHECK(both.warnings[0].to_string() ==
        "sluice.json:2: scheduler.default_workload.queue_timeout: 2m is above queue_timeout_cap "
        "(1m), which applies instead");
  CHECK(both.config->scheduler.core.queue_timeout_cap == 60s);

  // The effective config shows the derived values, and reads back without warnings.
  for (const Config& derived : {c, *waits.config}) {
    const std::string dumped = dump_config(derived);
    ConfigResult again = parse(dumped);
    REQUIRE(again.ok());
    CHECK(again.warnings.empty());
    CHECK(dump_config(*again.config) == dumped);
  }
  CHECK(contains(dump_config(c), "\"queue_timeout\": \"30s\""));
  CHECK(contains(dump_config(*waits.config), "\"queue_timeout_cap\": \"280s\""));
}

TEST_CASE("config: listen and admin_listen may not share an address, and say which is a default") {
  // Two listeners on one address stays an error even when one side is a default (moving either
  // would send someone's traffic to the wrong listener), but the message names what to set.
  CHECK(only_error(R"({"listen": "127.0.0.1:11436"})") ==
        "sluice.json:1: listen: 127.0.0.1:11436 is the default of admin_listen; set admin_listen "
        "to another address, or \"\" to turn the admin listener off");
  CHECK(only_error(R"({"admin_listen": "127.0.0.1:11435"})") ==
        "sluice.json:1: admin_listen: must differ from listen (127.0.0.1:11435, its default); "
        "set listen too");
  CHECK(parse(R"({"listen": "127.0.0.1:11436", "admin_listen": ""})").ok());
}

TEST_CASE("config: syntax errors carry the line") {
  ConfigResult r = parse("{\n  \"listen\": \"127.0.0.1:1\",\n  \"admin_listen\" \"x\"\n}");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].line == 3);
  CHECK(r.errors[0].field.empty());
  CHECK(r.errors[0].to_string().rfind("sluice.json:3: syntax error: ", 0) == 0);
  CHECK_FALSE(contains(r.errors[0].to_string(), "json.exception"));

  // A trailing comma and an unterminated comment are syntax errors too.
  CHECK(contains(only_error("{\n\"a\": 1,\n}"), "sluice.json:3: syntax error"));
  CHECK(contains(only_error("{}\n/* open"), "syntax error"));
  CHECK(contains(only_error("{} {}"), "syntax error"));
}

TEST_CASE("config: duplicate keys and deep nesting are errors") {
  CHECK(only_error("{\n\"scheduler\": {\"max_queue\": 1,\n  \"max_queue\": 2}}") ==
        "sluice.json:3: scheduler.max_queue: duplicate key (each key may appear once per object)");
  std::string deep = "{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}";
  CHECK(contains(only_error(deep), "nested deeper than"));
}

TEST_CASE("config: independent errors are all reported, in line order") {
  ConfigResult r = parse(R"({
  "scheduler": { "max_concurrency": 0 },
  "limits": { "max_connections": "many" },
  "bogus": 1
})");
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].line == 2);
  CHECK(r.errors[0].field == "scheduler.max_concurrency");
  CHECK(r.errors[1].line == 3);
  CHECK(r.errors[1].field == "limits.max_connections");
  CHECK(r.errors[2].line == 4);
  CHECK(r.errors[2].field == "bogus");
  CHECK(r.error_text() ==
        r.errors[0].to_string() + "\n" + r.errors[1].to_string() + "\n" + r.errors[2].to_string());
}

TEST_CASE("config: the number of reported errors is bounded") {
  std::string text = "{";
  for (int i = 0; i < 100; ++i)
    text += std::string(i ? "," : "") + "\"k" + std::to_string(i) + "\": 1";
  text += "}";
  ConfigResult r = parse(text);
  REQUIRE(r.errors.size() == sluice::config::kMaxDiagnostics);
  CHECK(contains(r.errors.back().message, "and 81 more errors"));
}

TEST_CASE("config: warnings for legal but suspicious settings") {
  ConfigResult r = parse(R"({"scheduler": {
      "queue_timeout_cap": "60s",
      "per_key": {"label": "colour"},
      "workloads": [{"name": "all"}, {"name": "never", "match": {"tier": "x"},
                                      "queue_timeout": "120s"}]}})");
  REQUIRE(r.ok());
  std::string all;
  for (const auto& w : r.warnings)
    all += w.to_string() + "\n";
  CHECK(contains(all, "scheduler.per_key.label: label \"colour\" is not one sluice sets"));
  CHECK(contains(all, "scheduler.per_key: sets no limit"));
  CHECK(contains(all, "scheduler.workloads[0]: has no \"match\""));
  CHECK(contains(all, "scheduler.workloads[1].queue_timeout: 2m is above queue_timeout_cap (1m)"));
  CHECK(parse("{}").warnings.empty());
}

TEST_CASE("config: size bound") {
  std::string big =
      "{\"listen\": \"127.0.0.1:1\"" + std::string(sluice::config::kMaxConfigBytes, ' ') + "}";
  CHECK(contains(only_error(big), "larger than 1048576 bytes"));
  std::string fits = "{}" + std::string(sluice::config::kMaxConfigBytes - 2, ' ');
  CHECK(parse(fits).ok());

  const auto path = std::filesystem::temp_directory_path() / "sluice_config_test_big.json";
  {
    std::ofstream out(path, std::ios::binary);
    out << big;
  }
  ConfigResult r = load_config_file(path.string());
  std::filesystem::remove(path);
  REQUIRE(r.errors.size() == 1);
  CHECK(contains(r.errors[0].to_string(), "larger than"));
}

TEST_CASE("config: load_config_file reports I/O errors with the file name") {
  ConfigResult r = load_config_file("/nonexistent/sluice.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.errors[0].to_string() ==
        "/nonexistent/sluice.json: cannot open: No such file or directory");

  const auto path = std::filesystem::temp_directory_path() / "sluice_config_test_line.json";
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\n\n  \"listen\": 5\n}\n";
  }
  ConfigResult bad = load_config_file(path.string());
  std::filesystem::remove(path);
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].to_string() == path.string() + ":3: listen: must be a string, not a number");
}

TEST_CASE("config: reload compatibility") {
  const Config base = parse_ok(R"({"scheduler": {"per_key": {"label": "user", "max_queue": 5}}})");
  // Live: scheduler numbers, workloads, timeouts, limits, headers, routes, log.
  Config live = parse_ok(R"({
      "upstream": {"header_timeout": "100s", "connect_timeout": "1s"},
      "scheduler": {"max_concurrency": 9, "queue_timeout_cap": "10s",
                    "per_key": {"label": "user", "max_queue": 50, "max_concurrency": 2},
                    "workloads": [{"name": "w", "match": {"tier": "a"}}]},
      "limits": {"max_connections": 5}, "headers": {"user": "X-U"},
      "routes": {"scheduled": ["/x"]}, "log": {"level": "debug", "format": "json"}})");
  CHECK(reload_incompatibility(base, live) == "");
  CHECK(reload_incompatibility(base, base) == "");

  auto with = [](const std::string& text) { return parse_ok(text); };
  CHECK(reload_incompatibility(base, with(R"({"listen": "127.0.0.1:1",
      "scheduler": {"per_key": {"label": "user"}}})")) == "changing listen needs a restart");
  CHECK(reload_incompatibility(base, with(R"({"admin_listen": "",
      "scheduler": {"per_key": {"label": "user"}}})")) == "changing admin_listen needs a restart");
  CHECK(reload_incompatibility(base, with(R"({"upstream": {"url": "http://127.0.0.1:11434/x"},
      "scheduler": {"per_key": {"label": "user"}}})")) == "changing upstream.url needs a restart");
  CHECK(reload_incompatibility(base, with(R"({"upstream": {"max_idle_connections": 1},
      "scheduler": {"per_key": {"label": "user"}}})")) ==
        "changing upstream.max_idle_connections needs a restart");
  CHECK(reload_incompatibility(base, with("{}")) ==
        "changing scheduler.per_key labels needs a restart");
  CHECK(reload_incompatibility(base, with(R"({"scheduler": {"per_key": [{"label": "user"},
      {"label": "model"}]}})")) == "changing scheduler.per_key labels needs a restart");
  CHECK(reload_incompatibility(base, with(R"({"listen": "127.0.0.1:1", "admin_listen": "",
      "upstream": {"url": "http://h:1"}})")) ==
        "changing listen, admin_listen, upstream.url and scheduler.per_key labels needs a "
        "restart");
  // Same URL written differently is the same upstream.
  CHECK(reload_incompatibility(base, with(R"({"upstream": {"url": "http://127.0.0.1:11434/"},
                          "scheduler": {"per_key": {"label": "user"}}})")) == "");
}

TEST_CASE("config: dump_config round-trips") {
  ConfigResult example = load_config_file(example_path());
  REQUIRE(example.ok());
  for (const Config& c :
       {*example.config, parse_ok("{}"), parse_ok(R"({"admin_listen": "", "listen": "[::1]:0",
                     "upstream": {"url": "http://[::1]:8080/base", "idle_timeout": 1234},
                     "scheduler": {"queue_timeout_cap": "1500us",
                                   "per_key": [{"label": "user", "max_concurrency": 1},
                                               {"label": "model", "max_tokens": 9}],
                                   "workloads": [{"name": "a", "match": {"tier": ["x", "y"],
                                                  "user": "*", "model": "m"}, "priority": 2.5}]},
                     "log": {"level": "off", "format": "json", "access_log": false}})")}) {
    const std::string dumped = dump_config(c);
    ConfigResult again = parse_config(dumped, "dump");
    INFO(again.error_text());
    REQUIRE(again.ok());
    CHECK(dump_config(*again.config) == dumped);
  }
  Config c = parse_ok(dump_config(parse_ok(R"({"upstream": {"idle_timeout": 1234}})")));
  CHECK(c.upstream.idle_timeout == 1234ms);
}

TEST_CASE("config: mangled files never crash and every error names a line") {
  std::ifstream in(example_path(), std::ios::binary);
  const std::string original((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  REQUIRE(!original.empty());
  const char replacements[] = {'{', '}', '[',  ']', '"', ',', ':',
                               '/', '*', '\\', '0', 'x', ' ', '\n'};
  std::uint64_t state = 12345;  // fixed seed: deterministic
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  std::size_t rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text = original;
    const int edits = 1 + static_cast<int>(next() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = next() % text.size();
      switch (next() % 3) {
        case 0:
          text[pos] = replacements[next() % sizeof replacements];
          break;
        case 1:
          text.erase(pos, 1 + next() % 8);
          break;
        default:
          text.resize(pos);
          break;
      }
      if (text.empty()) text.push_back('{');
    }
    ConfigResult r = parse(text);
    if (r.ok()) {
      // Whatever the loader accepts, the scheduler accepts too.
      CHECK(sluice::core::validate(r.config->scheduler.core) == "");
      continue;
    }
    ++rejected;
    for (const auto& e : r.errors) {
      if (e.message.find("more errors") != std::string::npos) continue;
      INFO(text);
      INFO(e.to_string());
      CHECK(e.line >= 1);
    }
  }
  CHECK(rejected > 1000);
}

TEST_CASE("config: auth keys") {
  const std::string hash(64, 'a');
  Config c = parse_ok(R"({"auth": {"keys": [
      {"name": "acme", "sha256": ")" +
                      std::string(64, 'A') + R"(", "tier": "paid",
       "max_priority": 8},
      {"name": "gw", "sha256": ")" +
                      std::string(64, 'b') + R"(", "user": "gateway",
       "trusted_gateway": true}],
      "admin_token_sha256": ")" +
                      std::string(64, 'c') + R"("}})");
  REQUIRE(c.auth.keys.size() == 2);
  CHECK(c.auth.enabled());
  CHECK(c.auth.keys[0].sha256 == hash);  // stored lowercase
  CHECK(c.auth.keys[0].user == "acme");  // defaults to the name
  CHECK(c.auth.keys[0].tier == "paid");
  CHECK(c.auth.keys[0].max_priority == 8.0);
  CHECK_FALSE(c.auth.keys[0].trusted_gateway);
  CHECK(c.auth.keys[1].user == "gateway");
  CHECK(c.auth.keys[1].trusted_gateway);
  CHECK_FALSE(c.auth.keys[1].max_priority);
  CHECK(c.auth.admin_token_sha256 == std::string(64, 'c'));
  CHECK_FALSE(parse_ok("{}").auth.enabled());

  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k", "sha256": "abc"}]}})"),
                 "sluice.json:1: auth.keys[0].sha256: must be a SHA-256 digest"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k"}]}})"),
                 "auth.keys[0].sha256: required"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"sha256": ")" + hash + R"("}]}})"),
                 "auth.keys[0].name: required"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k", "sha256": ")" + hash +
                            R"(", "max_priority": 0}]}})"),
                 "auth.keys[0].max_priority: must be a number > 0"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k", "sha256": ")" + hash +
                            R"("}, {"name": "k", "sha256": ")" + std::string(64, 'd') + R"("}]}})"),
                 "auth.keys[1].name: name \"k\" is used twice"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k", "sha256": ")" + hash +
                            R"("}, {"name": "j", "sha256": ")" + hash + R"("}]}})"),
                 "auth.keys[1].sha256: the same key hash is listed twice"));
  CHECK(contains(only_error(R"({"auth": {"keys": [{"name": "k", "sha256": ")" + hash +
                            R"(", "key": "plaintext"}]}})"),
                 "auth.keys[0].key: unknown key"));
  CHECK(contains(only_error(R"({"auth": {"admin_token_sha256": "secret"}})"),
                 "auth.admin_token_sha256: must be a SHA-256 digest"));
  // Round trip through dump_config keeps every field.
  CHECK(dump_config(parse_ok(dump_config(c))) == dump_config(c));
}

TEST_CASE("config: a number too large for a double is an error with its line, not a crash") {
  // Found by tests/fuzz/fuzz_config: nlohmann throws out_of_range (not parse_error) for 1e999.
  ConfigResult r = parse("{\n  \"scheduler\": {\n    \"max_concurrency\": 1e999\n  }\n}");
  CHECK_FALSE(r.ok());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors.front().to_string() == "sluice.json:3: number out of range: 1e999");
}
