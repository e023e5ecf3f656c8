// The fleet's configuration (issue 12): `upstreams` and its rules, the single upstream as a fleet
// of one, the derived defaults (a backend's settings from `upstream`, the global cap from the
// backends' slots), the `fleet` section, the dump round trip and what a reload may change.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "config_test_support.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/fleet.hpp"
#include "sluice/core/limits.hpp"

using namespace std::chrono_literals;
using sluice::config::BackendConfig;
using sluice::config::Config;
using sluice::config::ConfigResult;
using sluice::config::dump_config;
using sluice::config::parse_config;
using sluice::config::Placement;
using sluice::config::reload_incompatibility;
using sluice::test::only_error;
using sluice::test::parse;
using sluice::test::parse_ok;

namespace {

// A fleet of `backends` (a JSON array's contents) with `rest` more root members.
std::string fleet(const std::string& backends, const std::string& rest = "") {
  return "{\"upstreams\": [" + backends + "]" + (rest.empty() ? "" : ", " + rest) + "}";
}

const std::string kTwo = R"(
    {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
    {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4,
     "models": ["llama3.1:8b", "mistral"]})";

}  // namespace

TEST_CASE("fleet config: without upstreams, the single upstream is a fleet of one") {
  Config defaults = parse_ok("{}");
  CHECK_FALSE(defaults.fleet);
  REQUIRE(defaults.backends.size() == 1);
  const BackendConfig& only = defaults.backends[0];
  CHECK(only.name == "127.0.0.1:11434");
  CHECK(only.upstream.url == "http://127.0.0.1:11434");
  CHECK(only.max_concurrency == 2);
  CHECK(only.models.empty());
  CHECK(defaults.scheduler.core.backends.empty());  // the core's implicit single backend

  Config c = parse_ok(R"({"upstream": {"url": "http://[::1]:8080/ollama", "header_timeout": "9s",
                          "max_idle_connections": 3},
                          "scheduler": {"max_concurrency": 5}})");
  REQUIRE(c.backends.size() == 1);
  CHECK(c.backends[0].name == "[::1]:8080");
  CHECK(c.backends[0].upstream.base_path == "/ollama");
  CHECK(c.backends[0].upstream.header_timeout == 9s);
  CHECK(c.backends[0].upstream.max_idle_connections == 3);
  CHECK(c.backends[0].max_concurrency == 5);
  CHECK(c.scheduler.core.max_concurrency == 5);
  CHECK(c.scheduler.core.backends.empty());
}

TEST_CASE("fleet config: upstreams lists the backends, and the scheduler sees them") {
  Config c = parse_ok(fleet(kTwo));
  CHECK(c.fleet);
  REQUIRE(c.backends.size() == 2);
  CHECK(c.backends[0].name == "gpu-a");
  CHECK(c.backends[0].upstream.host == "10.0.0.5");
  CHECK(c.backends[0].upstream.port == 11434);
  CHECK(c.backends[0].upstream.host_header == "10.0.0.5:11434");
  CHECK(c.backends[0].max_concurrency == 2);
  CHECK(c.backends[0].models.empty());
  CHECK(c.backends[1].name == "gpu-b");
  CHECK(c.backends[1].models == std::vector<std::string>{"llama3.1:8b", "mistral"});

  const auto& core = c.scheduler.core;
  REQUIRE(core.backends.size() == 2);
  CHECK(core.backends[0].name == "gpu-a");
  CHECK(core.backends[0].max_concurrency == 2);
  CHECK(core.backends[0].models.empty());
  CHECK(core.backends[1].name == "gpu-b");
  CHECK(core.backends[1].max_concurrency == 4);
  CHECK(core.backends[1].models == c.backends[1].models);
  CHECK(sluice::core::validate(core) == "");
  CHECK(core.model_aware);

  // Two backends may share a URL (two names for one Ollama, e.g. for separate slot pools).
  CHECK(parse(fleet(R"({"name": "a", "url": "http://h:1", "max_concurrency": 1},
                       {"name": "b", "url": "http://h:1", "max_concurrency": 1})"))
            .ok());
  // The names' alphabet, and the longest name.
  CHECK(parse(fleet(R"({"name": "A-z_0.9", "url": "http://h:1", "max_concurrency": 1})")).ok());
  CHECK(parse(fleet(R"({"name": ")" + std::string(64, 'n') +
                    R"(", "url": "http://h:1", "max_concurrency": 1})"))
            .ok());
  // An empty models list is no static catalog: discovered.
  CHECK(parse_ok(fleet(R"({"name": "a", "url": "http://h:1", "max_concurrency": 1,
                           "models": []})"))
            .backends[0]
            .models.empty());
}

TEST_CASE("fleet config: derived defaults — the global cap and a backend's settings") {
  // Unset, scheduler.max_concurrency is the fleet's slots: it never holds a backend back.
  CHECK(parse_ok(fleet(kTwo)).scheduler.core.max_concurrency == 6);
  // Set, it is the global cap, below or above the sum.
  CHECK(parse_ok(fleet(kTwo, R"("scheduler": {"max_concurrency": 3})"))
            .scheduler.core.max_concurrency == 3);
  CHECK(parse_ok(fleet(kTwo, R"("scheduler": {"max_concurrency": 10})"))
            .scheduler.core.max_concurrency == 10);
  // The sum is capped at the scheduler's bound.
  CHECK(parse_ok(fleet(R"({"name": "a", "url": "http://a:1", "max_concurrency": 60000},
                          {"name": "b", "url": "http://b:1", "max_concurrency": 60000})"))
            .scheduler.core.max_concurrency == sluice::core::kMaxConcurrency);

  // Each setting a backend leaves out is the shared upstream block's (set or default).
  Config c =
      parse_ok(fleet(R"(
      {"name": "a", "url": "http://a:1", "max_concurrency": 1},
      {"name": "b", "url": "http://b:1", "max_concurrency": 1, "header_timeout": "5s",
       "connect_timeout": 250, "idle_timeout": "2s", "max_idle_connections": 0})",
                     R"("upstream": {"header_timeout": "100s", "max_idle_connections": 8})"));
  const auto& a = c.backends[0].upstream;
  const auto& b = c.backends[1].upstream;
  CHECK(a.header_timeout == 100s);
  CHECK(a.max_idle_connections == 8);
  CHECK(a.connect_timeout == 5s);  // default of the shared block
  CHECK(a.idle_timeout == 60s);
  CHECK(b.header_timeout == 5s);
  CHECK(b.connect_timeout == 250ms);
  CHECK(b.idle_timeout == 2s);
  CHECK(b.max_idle_connections == 0);
  CHECK(c.upstream.header_timeout == 100s);  // the shared block itself is kept
}

TEST_CASE("fleet config: a backend's required fields, named with the backend and the line") {
  CHECK(only_error("{\n  \"upstreams\": [\n    {\"name\": \"gpu-a\", \"max_concurrency\": 2}\n"
                   "  ]\n}") == "sluice.json:3: upstreams[0].url: required (backend \"gpu-a\")");
  CHECK(only_error("{\"upstreams\": [\n{\"name\": \"a\", \"url\": \"http://a:1\", "
                   "\"max_concurrency\": 1},\n"
                   "{\"name\": \"gpu-b\", \"url\": \"http://b:1\"}]}") ==
        "sluice.json:3: upstreams[1].max_concurrency: required (backend \"gpu-b\")");
  CHECK(only_error("{\"upstreams\": [\n\n{\"url\": \"http://b:1\", \"max_concurrency\": 1}]}") ==
        "sluice.json:3: upstreams[0].name: required");
  ConfigResult all = parse("{\"upstreams\": [\n  {}\n]}");
  REQUIRE(all.errors.size() == 3);
  CHECK(all.errors[0].to_string() == "sluice.json:2: upstreams[0].name: required");
  CHECK(all.errors[1].to_string() == "sluice.json:2: upstreams[0].url: required");
  CHECK(all.errors[2].to_string() == "sluice.json:2: upstreams[0].max_concurrency: required");
}

TEST_CASE("fleet config: names, counts and values of backends") {
  CHECK(only_error(fleet(R"(
{"name": "gpu a", "url": "http://a:1", "max_concurrency": 1})")) ==
        "sluice.json:2: upstreams[0].name: must be 1 to 64 letters, digits, '.', '_' or '-', not "
        "\"gpu a\"");
  CHECK(only_error(fleet(R"({"name": "", "url": "http://a:1", "max_concurrency": 1})")) ==
        "sluice.json:1: upstreams[0].name: must be 1 to 64 letters, digits, '.', '_' or '-', not "
        "\"\"");
  CHECK(only_error(fleet(R"({"name": ")" + std::string(65, 'n') +
                         R"(", "url": "http://a:1", "max_concurrency": 1})"))
            .find("upstreams[0].name: must be 1 to 64 letters") != std::string::npos);
  CHECK(only_error(fleet(R"({"name": "a:1", "url": "http://a:1", "max_concurrency": 1})"))
            .find("upstreams[0].name: must be 1 to 64") != std::string::npos);
  CHECK(only_error(fleet(R"(
{"name": "gpu-a", "url": "http://a:1", "max_concurrency": 1},
{"name": "gpu-b", "url": "http://b:1", "max_concurrency": 1},
{"name": "gpu-a", "url": "http://c:1", "max_concurrency": 1})")) ==
        "sluice.json:4: upstreams[2].name: duplicate backend name \"gpu-a\" (also upstreams[0])");

  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 0})")) ==
        "sluice.json:2: upstreams[0].max_concurrency: must be an integer from 1 to 100000, not 0");
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "https://a:1", "max_concurrency": 1})")) ==
        "sluice.json:2: upstreams[0].url: scheme must be http (https upstreams are not supported "
        "yet), not \"https\"");
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1,
 "header_timout": "1s"})")) ==
        "sluice.json:3: upstreams[0].header_timout: unknown key; did you mean \"header_timeout\"?");
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1, "idle_timeout": "0s"})"))
            .starts_with("sluice.json:2: upstreams[0].idle_timeout: "));

  // The array itself: not empty, at most kMaxBackends, an array.
  CHECK(only_error("{\n\"upstreams\": []}") ==
        "sluice.json:2: upstreams: must list at least one backend (for a single Ollama, set "
        "upstream.url instead)");
  CHECK(only_error("{\n\"upstreams\": {\"name\": \"a\"}}") ==
        "sluice.json:2: upstreams: must be an array of backends, not an object");
  std::string many;
  for (std::size_t i = 0; i <= sluice::core::kMaxBackends; ++i) {
    if (!many.empty()) many += ",";
    many += R"({"name": "b)";
    many += std::to_string(i);
    many += R"(", "url": "http://h:1", "max_concurrency": 1})";
  }
  CHECK(only_error(fleet(many)) == "sluice.json:1: upstreams: at most 64 backends");
  many = many.substr(many.find("},") + 2);  // exactly kMaxBackends
  CHECK(parse_ok(fleet(many)).backends.size() == sluice::core::kMaxBackends);
}

TEST_CASE("fleet config: a backend's static models") {
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1,
 "models": ["llama3.1:8b",
            ""]})")) == "sluice.json:4: upstreams[0].models[1]: must not be empty");
  // Ollama's spelling: "mistral" is "mistral:latest".
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1,
 "models": ["mistral",
            "mistral:latest"]})")) ==
        "sluice.json:4: upstreams[0].models[1]: model \"mistral:latest\" is listed twice (also "
        "upstreams[0].models[0])");
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1, "models": "mistral"})")) ==
        "sluice.json:2: upstreams[0].models: must be an array of model names, not a string");
  CHECK(only_error(fleet(R"(
{"name": "a", "url": "http://a:1", "max_concurrency": 1, "models": [3]})")) ==
        "sluice.json:2: upstreams[0].models[0]: must be a string, not a number");
  nlohmann::json models = nlohmann::json::array();
  for (std::size_t i = 0; i <= sluice::core::kMaxModels; ++i) {
    std::string name = "m";
    name += std::to_string(i);
    models.push_back(name);
  }
  const std::string too_many =
      R"({"name": "a", "url": "http://a:1", "max_concurrency": 1, "models": )" + models.dump() +
      "}";
  CHECK(only_error(fleet(too_many)) ==
        "sluice.json:1: upstreams[0].models: at most 4096 model names");
  models.erase(models.size() - 1);
  const std::string most =
      R"({"name": "a", "url": "http://a:1", "max_concurrency": 1, "models": )" + models.dump() +
      "}";
  CHECK(parse_ok(fleet(most)).backends[0].models.size() == sluice::core::kMaxModels);
}

TEST_CASE("fleet config: upstreams and upstream.url together are an error") {
  CHECK(only_error("{\"upstreams\": [{\"name\": \"a\", \"url\": \"http://a:1\", "
                   "\"max_concurrency\": 1}],\n"
                   " \"upstream\": {\"connect_timeout\": \"1s\",\n"
                   "               \"url\": \"http://h:1\"}}") ==
        "sluice.json:3: upstream.url: use upstreams, or upstream.url for a single Ollama, not "
        "both");
  // The shared block without url is fine with upstreams: it holds the backends' defaults.
  CHECK(parse(fleet(kTwo, R"("upstream": {"connect_timeout": "1s"})")).ok());
}

TEST_CASE("fleet config: the fleet section") {
  Config defaults = parse_ok("{}");
  const auto& f = defaults.fleet_settings;
  CHECK(f.placement == Placement::model_aware);
  CHECK(f.health_interval == 5s);
  CHECK(f.health_timeout == 2s);
  CHECK(f.discover_every == 6);
  CHECK(f.health.unhealthy_after == 2);
  CHECK(f.health.eject_after == 3);
  CHECK(f.health.base_ejection == 10s);
  CHECK(f.health.max_ejection == 5min);
  CHECK(f.retry_before_headers);
  CHECK(f.load_time == 5s);
  CHECK(f.load_threshold == 250ms);
  CHECK(defaults.scheduler.core.model_aware);
  CHECK(defaults.scheduler.core.assumed_load_time == 5s);
  CHECK(defaults.scheduler.core.load_threshold == 250ms);

  Config set = parse_ok(fleet(kTwo, R"("fleet": {"placement": "least_loaded",
      "health_interval": "1s", "health_timeout": "500ms", "discover_every": 1,
      "unhealthy_after": 5, "eject_after": 1, "base_ejection": "1s", "max_ejection": "1m",
      "retry_before_headers": false, "load_time": "20s", "load_threshold": 40})"));
  const auto& s = set.fleet_settings;
  CHECK(s.load_time == 20s);
  CHECK(s.load_threshold == 40ms);
  CHECK(set.scheduler.core.assumed_load_time == 20s);
  CHECK(set.scheduler.core.load_threshold == 40ms);
  CHECK(s.placement == Placement::least_loaded);
  CHECK_FALSE(set.scheduler.core.model_aware);
  CHECK(s.health_interval == 1s);
  CHECK(s.health_timeout == 500ms);
  CHECK(s.discover_every == 1);
  CHECK(s.health.unhealthy_after == 5);
  CHECK(s.health.eject_after == 1);
  CHECK(s.health.base_ejection == 1s);
  CHECK(s.health.max_ejection == 1min);
  CHECK_FALSE(s.retry_before_headers);
  CHECK(sluice::core::validate(s.health) == "");

  // Accepted without upstreams (the single upstream is not health-gated).
  Config single = parse_ok(R"({"fleet": {"placement": "least_loaded", "eject_after": 9}})");
  CHECK_FALSE(single.fleet);
  CHECK(single.fleet_settings.health.eject_after == 9);

  CHECK(only_error("{\"fleet\": {\n\"placement\": \"random\"}}") ==
        "sluice.json:2: fleet.placement: must be \"model_aware\" or \"least_loaded\", not "
        "\"random\"");
  CHECK(only_error(R"({"fleet": {"health_interval": "50ms"}})")
            .starts_with("sluice.json:1: fleet.health_interval: "));
  CHECK(only_error(R"({"fleet": {"health_interval": "2h"}})")
            .starts_with("sluice.json:1: fleet.health_interval: "));
  CHECK(only_error(R"({"fleet": {"health_timeout": "0s"}})")
            .starts_with("sluice.json:1: fleet.health_timeout: "));
  CHECK(only_error(R"({"fleet": {"discover_every": 0}})") ==
        "sluice.json:1: fleet.discover_every: must be an integer from 1 to 1000, not 0");
  CHECK(only_error(R"({"fleet": {"discover_every": 1001}})") ==
        "sluice.json:1: fleet.discover_every: must be an integer from 1 to 1000, not 1001");
  CHECK(only_error(R"({"fleet": {"unhealthy_after": 0}})") ==
        "sluice.json:1: fleet.unhealthy_after: must be an integer from 1 to 1000, not 0");
  CHECK(only_error(R"({"fleet": {"eject_after": 0}})") ==
        "sluice.json:1: fleet.eject_after: must be an integer from 1 to 1000, not 0");
  CHECK(only_error(R"({"fleet": {"retry_before_headers": "yes"}})") ==
        "sluice.json:1: fleet.retry_before_headers: must be true or false, not a string");
  CHECK(only_error(R"({"fleet": {"health": 1}})")
            .starts_with("sluice.json:1: fleet.health: unknown key; "));
}

TEST_CASE("fleet config: derived defaults in the fleet section") {
  // health_timeout <= health_interval: the one left out follows the one set.
  auto settings = [](const std::string& text) { return parse_ok(text).fleet_settings; };
  CHECK(settings(R"({"fleet": {"health_interval": "1s"}})").health_timeout == 1s);
  CHECK(settings(R"({"fleet": {"health_interval": "1m"}})").health_timeout == 2s);
  CHECK(settings(R"({"fleet": {"health_timeout": "30s"}})").health_interval == 30s);
  CHECK(settings(R"({"fleet": {"health_timeout": "1s"}})").health_interval == 5s);
  CHECK(only_error("{\"fleet\": {\"health_interval\": \"1s\",\n \"health_timeout\": \"3s\"}}") ==
        "sluice.json:2: fleet.health_timeout: must not exceed health_interval (1s)");
  // base_ejection <= max_ejection, the same way.
  CHECK(settings(R"({"fleet": {"base_ejection": "10m"}})").health.max_ejection == 10min);
  CHECK(settings(R"({"fleet": {"base_ejection": "1s"}})").health.max_ejection == 5min);
  CHECK(settings(R"({"fleet": {"max_ejection": "3s"}})").health.base_ejection == 3s);
  CHECK(settings(R"({"fleet": {"max_ejection": "1h"}})").health.base_ejection == 10s);
  CHECK(only_error("{\"fleet\": {\"base_ejection\": \"1m\",\n \"max_ejection\": \"30s\"}}") ==
        "sluice.json:2: fleet.max_ejection: must be at least base_ejection (1m)");
  for (const char* text :
       {R"({"fleet": {"base_ejection": "10m"}})", R"({"fleet": {"max_ejection": "3s"}})"}) {
    CHECK(sluice::core::validate(parse_ok(text).fleet_settings.health) == "");
  }
}

TEST_CASE("fleet config: dump_config round-trips, with upstreams only for a fleet") {
  for (const std::string& text :
       {fleet(kTwo), fleet(kTwo, R"("upstream": {"header_timeout": "100s"},
            "scheduler": {"max_concurrency": 3},
            "fleet": {"placement": "least_loaded", "health_interval": "1s"})"),
        std::string(R"({"fleet": {"max_ejection": "3s"}, "upstream": {"url": "http://h:8"}})")}) {
    CAPTURE(text);
    const Config c = parse_ok(text);
    const std::string dumped = dump_config(c);
    const Config again = parse_ok(dumped);
    CHECK(dump_config(again) == dumped);
    CHECK(again.fleet == c.fleet);
    REQUIRE(again.backends.size() == c.backends.size());
    for (std::size_t i = 0; i < c.backends.size(); ++i) {
      CHECK(again.backends[i].name == c.backends[i].name);
      CHECK(again.backends[i].upstream.url == c.backends[i].upstream.url);
      CHECK(again.backends[i].upstream.header_timeout == c.backends[i].upstream.header_timeout);
      CHECK(again.backends[i].max_concurrency == c.backends[i].max_concurrency);
      CHECK(again.backends[i].models == c.backends[i].models);
    }
    CHECK(again.scheduler.core.max_concurrency == c.scheduler.core.max_concurrency);
    CHECK(again.scheduler.core.backends.size() == c.scheduler.core.backends.size());
    CHECK(again.scheduler.core.model_aware == c.scheduler.core.model_aware);
    CHECK(again.fleet_settings.health_timeout == c.fleet_settings.health_timeout);
    CHECK(again.fleet_settings.health.base_ejection == c.fleet_settings.health.base_ejection);

    const nlohmann::json doc = nlohmann::json::parse(dumped);
    CHECK(doc.contains("fleet"));
    CHECK(doc.contains("upstreams") == c.fleet);
    CHECK(doc["upstream"].contains("url") == !c.fleet);
  }
  // Every backend setting is written out, the derived ones included.
  const nlohmann::json doc = nlohmann::json::parse(
      dump_config(parse_ok(fleet(kTwo, R"("upstream": {"header_timeout": "100s"})"))));
  CHECK(doc["upstreams"][0]["header_timeout"] == "100s");
  CHECK(doc["upstreams"][0]["models"] == nlohmann::json::array());
  CHECK(doc["upstreams"][1]["models"][1] == "mistral");
  CHECK(doc["scheduler"]["max_concurrency"] == 6);
}

TEST_CASE("fleet config: reload adds, removes and resizes backends; addresses need a restart") {
  const Config base = parse_ok(fleet(kTwo));
  // Live: a backend added, one removed, one resized, models and timeouts changed, the order.
  CHECK(reload_incompatibility(base, parse_ok(fleet(R"(
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 8,
       "models": ["qwen2.5:7b"], "header_timeout": "10s", "connect_timeout": "1s"},
      {"name": "gpu-c", "url": "http://10.0.0.7:11434", "max_concurrency": 1})",
                                                    R"("fleet": {"placement": "least_loaded"},
      "upstream": {"idle_timeout": "5s"})"))) == "");
  CHECK(reload_incompatibility(base, base) == "");
  // The same URL written differently is the same address.
  CHECK(reload_incompatibility(base, parse_ok(fleet(R"(
      {"name": "gpu-a", "url": "http://10.0.0.5:11434/", "max_concurrency": 2})"))) == "");

  // A backend's url or idle connections under the same name: remove and re-add it, or restart.
  CHECK(reload_incompatibility(base, parse_ok(fleet(R"(
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.9:11434", "max_concurrency": 4})"))) ==
        "upstreams[1].url of gpu-b changed; remove and re-add it under a new name, or restart");
  CHECK(reload_incompatibility(base, parse_ok(fleet(R"(
      {"name": "gpu-a", "url": "http://10.0.0.5:11434/v1", "max_concurrency": 2,
       "max_idle_connections": 1})"))) ==
        "upstreams[0].url and max_idle_connections of gpu-a changed; remove and re-add it under "
        "a new name, or restart");
  // A new name for a new address is live.
  CHECK(reload_incompatibility(base, parse_ok(fleet(R"(
      {"name": "gpu-b2", "url": "http://10.0.0.9:11434", "max_concurrency": 4})"))) == "");

  // Switching between the two forms needs a restart, either way.
  const Config single = parse_ok("{}");
  CHECK(reload_incompatibility(single, base) ==
        "switching from upstream.url (a single Ollama) to upstreams (a fleet) needs a restart");
  CHECK(reload_incompatibility(base, single) ==
        "switching from upstreams (a fleet) to upstream.url (a single Ollama) needs a restart");
  // Other reasons come first, joined.
  CHECK(reload_incompatibility(single, parse_ok(fleet(kTwo, R"("listen": "127.0.0.1:1")"))) ==
        "changing listen needs a restart; switching from upstream.url (a single Ollama) to "
        "upstreams (a fleet) needs a restart");
  // With a fleet, the shared upstream block holds defaults only: the backends are compared.
  CHECK(reload_incompatibility(
            base, parse_ok(fleet(kTwo, R"("upstream": {"header_timeout": "1s"})"))) == "");
}
