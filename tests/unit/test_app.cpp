// The sluice program's pure logic: command line and overrides, reload decisions and change
// descriptions, the /admin/state document, admin routing, what `sluice healthcheck` probes.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sluice/app/admin_server.hpp"
#include "sluice/app/cli.hpp"
#include "sluice/app/healthcheck.hpp"
#include "sluice/app/readiness.hpp"
#include "sluice/app/reload.hpp"
#include "sluice/app/state_json.hpp"

using namespace std::chrono_literals;
using namespace sluice::app;
using sluice::config::Config;
using sluice::config::ConfigResult;
using sluice::config::parse_config;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

CliParse parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "sluice");
  std::vector<const char*> argv;
  for (const std::string& a : args)
    argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

Config parse_ok(const std::string& text) {
  ConfigResult r = parse_config(text, "test.json");
  INFO(r.error_text());
  REQUIRE(r.ok());
  return *r.config;
}

// A temporary config file, removed at scope end.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path =
        std::filesystem::temp_directory_path() / ("sluice-app-test-" + std::to_string(::getpid()) +
                                                  "-" + std::to_string(++counter) + ".json");
    write(text);
  }
  void write(const std::string& text) const { std::ofstream(path) << text; }
  ~TempFile() { std::filesystem::remove(path); }
};

}  // namespace

TEST_CASE("cli: flags are parsed into options") {
  CliParse p = parse_args({"--config", "x.json", "--listen", "127.0.0.1:0", "--admin-listen",
                           "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--max-concurrency",
                           "3", "--log-level", "debug", "--log-format", "json"});
  REQUIRE_FALSE(p.exit_code);
  CHECK(p.options.config_file == "x.json");
  CHECK_FALSE(p.options.check_config);
  CHECK(p.options.overrides.listen == "127.0.0.1:0");
  CHECK(p.options.overrides.admin_listen == "127.0.0.1:0");
  CHECK(p.options.overrides.upstream_url == "http://127.0.0.1:9");
  CHECK(p.options.overrides.max_concurrency == 3);
  CHECK(p.options.overrides.log_level == "debug");
  CHECK(p.options.overrides.log_format == "json");
}

TEST_CASE("cli: --help lists every flag and exits 0; --version prints the version") {
  CliParse help = parse_args({"--help"});
  REQUIRE(help.exit_code == 0);
  for (const char* flag :
       {"--config", "--check-config", "--listen", "--admin-listen", "--upstream", "--backend",
        "--max-concurrency", "--log-level", "--log-format", "--version", "--help"}) {
    INFO(flag);
    CHECK(contains(help.output, flag));
  }
  CliParse version = parse_args({"--version"});
  REQUIRE(version.exit_code == 0);
  CHECK(contains(version.output, version_string()));
}

TEST_CASE("cli: usage errors exit with EX_USAGE and say what is wrong") {
  CliParse unknown = parse_args({"--frobnicate"});
  REQUIRE(unknown.exit_code == kExitUsage);
  CHECK(contains(unknown.error_output, "frobnicate"));
  CliParse not_a_number = parse_args({"--max-concurrency", "lots"});
  REQUIRE(not_a_number.exit_code == kExitUsage);
  CHECK(contains(not_a_number.error_output, "max-concurrency"));
  CliParse missing_value = parse_args({"--config"});
  REQUIRE(missing_value.exit_code == kExitUsage);
}

TEST_CASE("overrides: applied on top of the file and validated by the config parser") {
  Config base = parse_ok(R"({"scheduler": {"max_concurrency": 2}, "log": {"level": "warn"}})");
  Overrides o;
  o.listen = "127.0.0.1:0";
  o.admin_listen = "";
  o.upstream_url = "http://10.1.2.3:8080/ollama";
  o.max_concurrency = 7;
  o.log_format = "json";
  ConfigResult r = apply_overrides(base, o);
  INFO(r.error_text());
  REQUIRE(r.ok());
  CHECK(r.config->listen.port == 0);
  CHECK_FALSE(r.config->admin_listen.has_value());
  CHECK(r.config->upstream.host == "10.1.2.3");
  CHECK(r.config->upstream.port == 8080);
  CHECK(r.config->upstream.base_path == "/ollama");
  CHECK(r.config->scheduler.core.max_concurrency == 7);
  CHECK(r.config->log.level == sluice::config::LogLevel::warn);  // from the file
  CHECK(r.config->log.format == sluice::config::LogFormat::json);
}

TEST_CASE("overrides: a bad value is reported under the flag's name") {
  Config base = parse_ok("{}");
  Overrides o;
  o.max_concurrency = 0;
  o.upstream_url = "https://x";
  o.log_level = "loud";
  ConfigResult r = apply_overrides(base, o);
  REQUIRE_FALSE(r.ok());
  std::string text = r.error_text();
  INFO(text);
  CHECK(r.errors.size() == 3);
  CHECK(contains(text, "command line: --max-concurrency: "));
  CHECK(contains(text, "command line: --upstream: "));
  CHECK(contains(text, "command line: --log-level: "));
  CHECK_FALSE(contains(text, "command line:1"));  // no meaningless line numbers
}

TEST_CASE("overrides: --upstream with upstreams in the config is an error naming the conflict") {
  Config fleet = parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2}]})");
  Overrides o;
  o.upstream_url = "http://10.1.2.3:8080";
  o.log_level = "loud";
  ConfigResult r = apply_overrides(fleet, o);
  REQUIRE_FALSE(r.ok());
  INFO(r.error_text());
  REQUIRE(r.errors.size() == 2);  // the conflict, and the other flags' own errors
  CHECK(r.errors[0].to_string() ==
        "command line: --upstream: the config lists upstreams (a fleet); --upstream replaces "
        "upstream.url, the single Ollama of a config without upstreams: use upstreams or "
        "--upstream, not both");
  CHECK(contains(r.errors[1].to_string(), "command line: --log-level: "));

  // The other overrides apply to a fleet; --max-concurrency is then the global cap.
  Overrides cap;
  cap.max_concurrency = 1;
  ConfigResult capped = apply_overrides(fleet, cap);
  INFO(capped.error_text());
  REQUIRE(capped.ok());
  CHECK(capped.config->fleet);
  CHECK(capped.config->backends.size() == 1);
  CHECK(capped.config->scheduler.core.max_concurrency == 1);
  CHECK(capped.config->backends[0].max_concurrency == 2);

  // Without upstreams, --upstream moves the single backend.
  ConfigResult single = apply_overrides(parse_ok("{}"), o);
  REQUIRE(single.errors.size() == 1);
  o.log_level.reset();
  single = apply_overrides(parse_ok("{}"), o);
  REQUIRE(single.ok());
  REQUIRE(single.config->backends.size() == 1);
  CHECK(single.config->backends[0].name == "10.1.2.3:8080");
}

TEST_CASE("overrides: --backend NAME=URL[,SLOTS] replaces the backends with a fleet") {
  CliParse p = parse_args({"--backend", "gpu-a=http://127.0.0.1:9001,2", "--backend",
                           "gpu-b=http://127.0.0.1:9002", "--log-level", "warn"});
  REQUIRE_FALSE(p.exit_code);
  REQUIRE(p.options.overrides.backends.size() == 2);

  // The file's single upstream and its slots are replaced; the cap is the sum of the slots.
  Config file = parse_ok(R"({"upstream": {"url": "http://10.0.0.1:11434", "header_timeout": "9s"},
      "scheduler": {"max_concurrency": 2}})");
  ConfigResult r = apply_overrides(file, p.options.overrides);
  INFO(r.error_text());
  REQUIRE(r.ok());
  CHECK(r.config->fleet);
  REQUIRE(r.config->backends.size() == 2);
  CHECK(r.config->backends[0].name == "gpu-a");
  CHECK(r.config->backends[0].max_concurrency == 2);
  CHECK(r.config->backends[0].upstream.port == 9001);
  CHECK(r.config->backends[0].upstream.header_timeout == 9s);  // the shared timeouts stay
  CHECK(r.config->backends[1].max_concurrency == 1);
  CHECK(r.config->scheduler.core.max_concurrency == 3);
  // --max-concurrency caps the fleet.
  Overrides capped = p.options.overrides;
  capped.max_concurrency = 2;
  ConfigResult c = apply_overrides(file, capped);
  REQUIRE(c.ok());
  CHECK(c.config->scheduler.core.max_concurrency == 2);

  // Bad shapes and bad values name the flag.
  Overrides bad;
  bad.backends = {"gpu-a", "gpu-b=http://127.0.0.1:9002,many", "gpu-c=ftp://x,1"};
  ConfigResult e = apply_overrides(file, bad);
  REQUIRE_FALSE(e.ok());
  const std::string text = e.error_text();
  INFO(text);
  CHECK(contains(text, "command line: --backend: expected NAME=URL[,SLOTS]"));
  CHECK(contains(text, "command line: --backend: SLOTS after the last ',' must be an integer"));
  CHECK(contains(text, "command line: --backend (upstreams[0].url): scheme must be http"));
  CHECK_FALSE(contains(text, "command line:1"));
  // Not with --upstream.
  Overrides both = p.options.overrides;
  both.upstream_url = "http://127.0.0.1:9";
  ConfigResult b = apply_overrides(file, both);
  REQUIRE_FALSE(b.ok());
  CHECK(contains(b.error_text(), "--upstream (one Ollama) and --backend (a fleet) exclude"));
}

TEST_CASE("describe_changes: backends are matched by name") {
  Config a = parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4,
       "models": ["llama3.1:8b"]},
      {"name": "gpu-c", "url": "http://10.0.0.7:11434", "max_concurrency": 1}],
      "scheduler": {"max_concurrency": 8}})");
  // gpu-a removed, gpu-b resized with a model more, gpu-d added: one line each, not a line per
  // shifted position.
  Config b = parse_ok(R"({"upstreams": [
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 6,
       "models": ["llama3.1:8b", "qwen2.5:7b"]},
      {"name": "gpu-c", "url": "http://10.0.0.7:11434", "max_concurrency": 1},
      {"name": "gpu-d", "url": "http://10.0.0.8:11434", "max_concurrency": 1}],
      "scheduler": {"max_concurrency": 8}})");
  std::vector<std::string> changes = describe_changes(a, b);
  std::string all;
  for (const std::string& c : changes)
    all += c + "\n";
  INFO(all);
  CHECK(contains(all, "upstreams[gpu-a]: removed (was {\"name\":\"gpu-a\","));
  CHECK(contains(all, "upstreams[gpu-b].max_concurrency: 4 -> 6\n"));
  CHECK(contains(all, "upstreams[gpu-b].models[1]: added \"qwen2.5:7b\"\n"));
  CHECK(contains(all, "upstreams[gpu-d]: added {\"name\":\"gpu-d\","));
  CHECK(changes.size() == 4);

  // The same backends in another order: placement breaks ties by it.
  Config c = parse_ok(R"({"upstreams": [
      {"name": "gpu-c", "url": "http://10.0.0.7:11434", "max_concurrency": 1},
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4,
       "models": ["llama3.1:8b"]}],
      "scheduler": {"max_concurrency": 8}})");
  changes = describe_changes(a, c);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0] == "upstreams: order gpu-a, gpu-b, gpu-c -> gpu-c, gpu-a, gpu-b");
  CHECK(describe_changes(a, a).empty());

  // The cut counts what it leaves out.
  std::vector<std::string> cut = describe_changes(a, b, 2);
  REQUIRE(cut.size() == 3);
  CHECK(cut.back() == "... and 2 more");
}

TEST_CASE("plan_reload: a fleet's backends change live, a backend's url needs a new name") {
  TempFile file(R"({"listen": "127.0.0.1:0", "upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2}]})");
  Config running = *load_effective_config(file.path.string(), {}).config;
  file.write(R"({"listen": "127.0.0.1:0", "upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4}]})");
  ReloadPlan added = plan_reload(running, file.path.string(), {});
  CHECK(added.outcome.status == ReloadOutcome::Status::applied);
  REQUIRE(added.next);
  CHECK(added.next->backends.size() == 2);
  CHECK(added.next->scheduler.core.max_concurrency == 6);  // derived: the fleet's slots
  std::string all;
  for (const std::string& c : added.outcome.changes)
    all += c + "\n";
  INFO(all);
  CHECK(contains(all, "upstreams[gpu-b]: added {"));
  CHECK(contains(all, "scheduler.max_concurrency: 2 -> 6\n"));

  file.write(R"({"listen": "127.0.0.1:0", "upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.9:11434", "max_concurrency": 2}]})");
  ReloadPlan moved = plan_reload(running, file.path.string(), {});
  CHECK(moved.outcome.status == ReloadOutcome::Status::needs_restart);
  CHECK(moved.outcome.message ==
        "upstreams[0].url of gpu-a changed; remove and re-add it under a new name, or restart; "
        "nothing changed");
  CHECK_FALSE(moved.next);

  file.write(R"({"listen": "127.0.0.1:0"})");
  ReloadPlan single = plan_reload(running, file.path.string(), {});
  CHECK(single.outcome.status == ReloadOutcome::Status::needs_restart);
  CHECK(contains(single.outcome.message, "switching from upstreams (a fleet) to upstream.url"));
}

TEST_CASE("load_effective_config: file errors keep file, line and field; no file = defaults") {
  TempFile bad("{\n  \"scheduler\": {\n    \"max_concurency\": 3\n  }\n}\n");
  ConfigResult r = load_effective_config(bad.path.string(), {});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error_text(), bad.path.string() + ":3: scheduler.max_concurency: unknown key"));

  ConfigResult defaults = load_effective_config(std::nullopt, {});
  REQUIRE(defaults.ok());
  CHECK(defaults.config->scheduler.core.max_concurrency == 2);

  Overrides o;
  o.max_concurrency = 5;
  TempFile good(R"({"scheduler": {"max_concurrency": 1}})");
  ConfigResult overridden = load_effective_config(good.path.string(), o);
  REQUIRE(overridden.ok());
  CHECK(overridden.config->scheduler.core.max_concurrency == 5);
}

TEST_CASE("describe_changes: one readable line per changed field") {
  Config a = parse_ok(R"({"scheduler": {"max_concurrency": 1,
      "workloads": [{"name": "paid", "match": {"tier": "paid"}, "priority": 8}]}})");
  Config b = parse_ok(R"({"scheduler": {"max_concurrency": 3,
      "workloads": [{"name": "paid", "match": {"tier": "paid"}, "priority": 4},
                    {"name": "free", "match": {"tier": "free"}}]}, "log": {"level": "debug"}})");
  std::vector<std::string> changes = describe_changes(a, b);
  std::string all;
  for (const std::string& c : changes)
    all += c + "\n";
  INFO(all);
  CHECK(contains(all, "scheduler.max_concurrency: 1 -> 3\n"));
  CHECK(contains(all, "scheduler.workloads[0].priority: 8.0 -> 4.0\n"));
  CHECK(contains(all, "scheduler.workloads[1]: added {"));
  CHECK(contains(all, "log.level: \"info\" -> \"debug\"\n"));
  CHECK(changes.size() == 4);
  CHECK(describe_changes(a, a).empty());
  std::vector<std::string> cut = describe_changes(a, b, 2);
  REQUIRE(cut.size() == 3);
  CHECK(cut.back() == "... and 2 more");
}

TEST_CASE("describe_changes: places read as config messages write them, indexes only in arrays") {
  // A label may be named "1": it is a key of match, not an index.
  Config a = parse_ok(R"({"scheduler": {"workloads": [{"name": "w", "match": {"1": "x"}}]}})");
  Config b = parse_ok(R"({"scheduler": {"workloads": [{"name": "w", "match": {"1": "y"}}]}})");
  std::vector<std::string> changes = describe_changes(a, b);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0] == "scheduler.workloads[0].match.1: \"x\" -> \"y\"");
}

TEST_CASE("plan_reload: invalid, needs restart, unchanged, applied") {
  TempFile file(R"({"listen": "127.0.0.1:0", "scheduler": {"max_concurrency": 1}})");
  Config running = *load_effective_config(file.path.string(), {}).config;

  ReloadPlan same = plan_reload(running, file.path.string(), {});
  CHECK(same.outcome.status == ReloadOutcome::Status::unchanged);
  CHECK(same.outcome.http_status() == 200);
  CHECK_FALSE(same.next);

  file.write("{\"listen\": \"127.0.0.1:0\",\n \"scheduler\": {\"max_concurrency\": 3}}");
  ReloadPlan raised = plan_reload(running, file.path.string(), {});
  CHECK(raised.outcome.status == ReloadOutcome::Status::applied);
  REQUIRE(raised.next);
  CHECK(raised.next->scheduler.core.max_concurrency == 3);
  REQUIRE(raised.outcome.changes.size() == 1);
  CHECK(raised.outcome.changes[0] == "scheduler.max_concurrency: 1 -> 3");
  nlohmann::json body = nlohmann::json::parse(raised.outcome.to_json());
  CHECK(body["status"] == "applied");
  CHECK(body["changes"][0] == "scheduler.max_concurrency: 1 -> 3");

  // The command-line overrides given at start are re-applied, so they do not count as changes.
  Overrides o;
  o.max_concurrency = 3;
  Config running_with_flag = *load_effective_config(file.path.string(), o).config;
  CHECK(plan_reload(running_with_flag, file.path.string(), o).outcome.status ==
        ReloadOutcome::Status::unchanged);

  file.write("{\"listen\": \"127.0.0.1:0\",\n \"scheduler\": {\"max_concurrency\": -1}}");
  ReloadPlan invalid = plan_reload(running, file.path.string(), {});
  CHECK(invalid.outcome.status == ReloadOutcome::Status::invalid);
  CHECK(invalid.outcome.http_status() == 400);
  CHECK_FALSE(invalid.next);
  REQUIRE(invalid.outcome.errors.size() == 1);
  CHECK(contains(invalid.outcome.errors[0], ":2: scheduler.max_concurrency: "));
  nlohmann::json err = nlohmann::json::parse(invalid.outcome.to_json());
  CHECK(err["status"] == "invalid");
  CHECK(err["error"].get<std::string>().find("nothing changed") != std::string::npos);

  file.write(R"({"listen": "127.0.0.1:1234", "scheduler": {"max_concurrency": 1}})");
  ReloadPlan restart = plan_reload(running, file.path.string(), {});
  CHECK(restart.outcome.status == ReloadOutcome::Status::needs_restart);
  CHECK(restart.outcome.http_status() == 409);
  CHECK(contains(restart.outcome.message, "listen"));
  CHECK_FALSE(restart.next);

  ReloadPlan no_file = plan_reload(running, std::nullopt, {});
  CHECK(no_file.outcome.status == ReloadOutcome::Status::needs_restart);
  CHECK(contains(no_file.outcome.message, "--config"));

  std::filesystem::remove(file.path);
  ReloadPlan missing = plan_reload(running, file.path.string(), {});
  CHECK(missing.outcome.status == ReloadOutcome::Status::invalid);
  CHECK(contains(missing.outcome.errors.at(0), "cannot open"));
}

TEST_CASE("state_json: shape, workload details, keys busiest first and bounded") {
  Config config = parse_ok(R"({"scheduler": {"max_concurrency": 4,
      "per_key": {"label": "user", "max_queue": 10},
      "workloads": [{"name": "paid", "match": {"tier": "paid"}, "priority": 8, "band": 1,
                     "queue_timeout": "30s"}]}})");
  sluice::core::Snapshot s;
  s.max_concurrency = 4;
  s.parked = 5;
  s.in_flight = 4;
  s.in_flight_tokens = 400;
  s.workloads.push_back({.name = "paid",
                         .id = 0,
                         .priority = 8,
                         .band = 1,
                         .parked = 5,
                         .in_flight = 3,
                         .in_flight_tokens = 300,
                         .oldest_wait = 1500ms});
  s.workloads.push_back({.name = "default", .id = 1, .priority = 1, .in_flight = 1});
  s.workloads.push_back({.name = "gone", .id = 2, .priority = 2, .in_flight = 0, .retired = true});
  s.keys.push_back({"user", "alice", 1, 1});
  s.keys.push_back({"user", "bob", 4, 2});
  s.keys.push_back({"user", "carol", 0, 1});

  nlohmann::json doc = nlohmann::json::parse(
      state_json(s, config, {.draining = true, .uptime_seconds = 12.5, .max_keys = 2}));
  CHECK(doc["draining"] == true);
  CHECK(doc["uptime_seconds"] == 12.5);
  CHECK(doc["limits"]["max_concurrency"] == 4);
  CHECK(doc["limits"]["per_key"][0]["label"] == "user");
  CHECK(doc["limits"]["per_key"][0]["max_queue"] == 10);
  CHECK(doc["totals"]["parked"] == 5);
  CHECK(doc["totals"]["in_flight"] == 4);
  REQUIRE(doc["workloads"].size() == 3);
  const nlohmann::json& paid = doc["workloads"][0];
  CHECK(paid["name"] == "paid");
  CHECK(paid["priority"] == 8.0);
  CHECK(paid["band"] == 1);
  CHECK(paid["parked"] == 5);
  CHECK(paid["in_flight"] == 3);
  CHECK(paid["oldest_wait_ms"] == 1500.0);
  CHECK(paid["queue_timeout_ms"] == 30000.0);
  CHECK(paid["fairness_key"] == "user");
  CHECK(doc["workloads"][1]["oldest_wait_ms"].is_null());
  CHECK(doc["workloads"][2]["retired"] == true);
  CHECK_FALSE(doc["workloads"][2].contains("queue_timeout_ms"));
  REQUIRE(doc["keys"].size() == 2);
  CHECK(doc["keys"][0]["value"] == "bob");
  CHECK(doc["keys"][1]["value"] == "alice");
  CHECK(doc["keys_total"] == 3);
  CHECK(doc["keys_truncated"] == true);
}

TEST_CASE("state_json: backends of a fleet, with health, residency and what was learned") {
  Config config = parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4,
       "models": ["llama3.1:8b"]}]})");
  sluice::core::Snapshot s;
  sluice::core::BackendView a{.id = 0,
                              .name = "gpu-a",
                              .up = true,
                              .in_flight = 1,
                              .max_concurrency = 2,
                              .catalog_known = true,
                              .models = {"mistral:latest", "qwen2:7b"},
                              .loaded = {{"qwen2:7b", 1}, {"mistral:latest", 0}},
                              .resident_capacity = 2,
                              .tokens_per_second = 41.5,
                              .speed_known = true,
                              .load_times = {{"qwen2:7b", 3200ms}},
                              .requests = 17};
  a.health = sluice::core::HealthView{.state = sluice::core::Health::State::up};
  sluice::core::BackendView b{.id = 1, .name = "gpu-b", .max_concurrency = 4};
  b.health = sluice::core::HealthView{.state = sluice::core::Health::State::ejected,
                                      .reason = "3 requests in a row failed (connect: refused)",
                                      .ejected_for = 7500ms,
                                      .ejections = 1,
                                      .failed_requests = 3};
  sluice::core::BackendView gone{.id = 2, .name = "gpu-c", .retired = true, .in_flight = 1};
  s.backends = {a, b, gone};

  nlohmann::json doc = nlohmann::json::parse(state_json(s, config, {}));
  CHECK(doc["upstream"].is_null());  // no single upstream in a fleet
  CHECK(doc["fleet"] == true);
  REQUIRE(doc["backends"].size() == 3);
  const nlohmann::json& ja = doc["backends"][0];
  CHECK(ja["name"] == "gpu-a");
  CHECK(ja["url"] == "http://10.0.0.5:11434");
  CHECK(ja["up"] == true);
  CHECK(ja["health"]["state"] == "up");
  CHECK(ja["in_flight"] == 1);
  CHECK(ja["max_concurrency"] == 2);
  CHECK(ja["requests"] == 17);
  CHECK(ja["models"] == nlohmann::json::array({"mistral:latest", "qwen2:7b"}));
  CHECK(ja["models_total"] == 2);
  REQUIRE(ja["loaded"].size() == 2);
  CHECK(ja["loaded"][0]["model"] == "qwen2:7b");
  CHECK(ja["loaded"][0]["in_flight"] == 1);
  CHECK(ja["resident_capacity"] == 2);
  CHECK(ja["load_time_ms"]["qwen2:7b"] == 3200.0);
  CHECK(ja["tokens_per_second"] == 41.5);
  const nlohmann::json& jb = doc["backends"][1];
  CHECK(jb["up"] == false);
  CHECK(jb["health"]["state"] == "ejected");
  CHECK(jb["health"]["ejected_for_ms"] == 7500.0);
  CHECK(jb["health"]["failed_requests"] == 3);
  CHECK(contains(jb["health"]["reason"].get<std::string>(), "connect: refused"));
  CHECK(jb["models"].is_null());  // catalog not known yet: serves every model
  CHECK(jb["loaded"] == nlohmann::json::array());
  CHECK(jb["tokens_per_second"].is_null());
  CHECK(jb["load_time_ms"] == nlohmann::json::object());
  CHECK(doc["backends"][2]["retired"] == true);
  CHECK(doc["backends"][2]["url"].is_null());  // removed from the config
}

TEST_CASE("fleet_readiness: ready while one backend is up; lists each backend, bounded") {
  using sluice::core::BackendView;
  using sluice::core::Health;
  using sluice::core::HealthView;
  auto backend = [](std::string name, Health::State state, std::string reason) {
    BackendView b{.name = std::move(name), .up = state == Health::State::up};
    b.health = HealthView{.state = state, .reason = std::move(reason)};
    return b;
  };
  sluice::core::Snapshot s;
  s.backends = {backend("gpu-a", Health::State::up, ""),
                backend("gpu-b", Health::State::down, "connect: Connection refused"),
                backend("gpu-c", Health::State::unknown, "not checked yet")};
  BackendView leaving = backend("gpu-old", Health::State::up, "");
  leaving.retired = true;  // removed by a reload, finishing its requests: not counted
  s.backends.push_back(leaving);

  sluice::app::Readiness one = sluice::app::fleet_readiness(s);
  CHECK(one.ready);
  CHECK(one.detail ==
        "1 of 3 backends up; not up: gpu-b (down: connect: Connection refused), gpu-c (unknown: "
        "not checked yet)");
  REQUIRE(one.backends.size() == 3);
  CHECK(one.backends[0].name == "gpu-a");
  CHECK(one.backends[0].up);
  CHECK(one.backends[0].state == "up");
  CHECK(one.backends[0].reason.empty());
  CHECK(one.backends[1].state == "down");
  CHECK(one.backends[1].reason == "connect: Connection refused");
  CHECK(one.backends[2].state == "unknown");

  s.backends[0] = backend("gpu-a", Health::State::ejected, std::string(1000, 'x'));
  sluice::app::Readiness none = sluice::app::fleet_readiness(s);
  CHECK_FALSE(none.ready);  // the retired gpu-old being up does not make sluice ready
  CHECK(contains(none.detail, "none of 3 backends up; not up: gpu-a (ejected: xxx"));
  CHECK(none.backends[0].reason.size() == sluice::app::kReadinessReasonBytes + 3);

  s.backends = {backend("gpu-a", Health::State::up, ""), backend("gpu-b", Health::State::up, "")};
  CHECK(sluice::app::fleet_readiness(s).detail == "2 of 2 backends up");

  // Many backends down: the detail names the first few, the list has them all.
  s.backends.clear();
  for (int i = 0; i < 20; ++i) {
    std::string name = "gpu-";
    name.append(std::to_string(i));
    s.backends.push_back(backend(name, Health::State::down, "status 500"));
  }
  sluice::app::Readiness many = sluice::app::fleet_readiness(s);
  CHECK_FALSE(many.ready);
  CHECK(many.backends.size() == 20);
  CHECK(contains(many.detail, "gpu-7 (down: status 500), and 12 more"));
  CHECK_FALSE(contains(many.detail, "gpu-8"));
}

TEST_CASE("state_json: a single upstream keeps \"upstream\", its backend has no health") {
  Config config = parse_ok(R"({"upstream": {"url": "http://127.0.0.1:11434"}})");
  sluice::core::Snapshot s;
  s.backends.push_back({.id = 0,
                        .name = config.backends.at(0).name,
                        .up = true,
                        .max_concurrency = 2,
                        .loaded = {{"", 0}}});
  nlohmann::json doc = nlohmann::json::parse(state_json(s, config, {}));
  CHECK(doc["upstream"] == "http://127.0.0.1:11434");
  CHECK(doc["fleet"] == false);
  REQUIRE(doc["backends"].size() == 1);
  CHECK(doc["backends"][0]["url"] == "http://127.0.0.1:11434");
  CHECK(doc["backends"][0]["health"].is_null());
  CHECK(doc["backends"][0]["loaded"].is_null());  // sluice does not ask /api/ps here
}

TEST_CASE("state_json: model lists are capped") {
  Config config = parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2}]})");
  sluice::core::BackendView a{.id = 0, .name = "gpu-a", .catalog_known = true};
  for (std::size_t i = 0; i < kMaxStateModels + 10; ++i) {
    std::string name = "m";
    name += std::to_string(i);
    a.models.push_back(name);
    a.loaded.push_back({name, 0});
  }
  sluice::core::Snapshot s;
  s.backends = {a};
  nlohmann::json doc = nlohmann::json::parse(state_json(s, config, {}));
  CHECK(doc["backends"][0]["models"].size() == kMaxStateModels);
  CHECK(doc["backends"][0]["models_total"] == kMaxStateModels + 10);
  CHECK(doc["backends"][0]["loaded"].size() == kMaxStateModels);
}

TEST_CASE("upstreams_summary: the single URL, or every backend of a fleet by name") {
  CHECK(upstreams_summary(parse_ok(R"({"upstream": {"url": "http://127.0.0.1:11434"}})")) ==
        "proxying to http://127.0.0.1:11434");
  CHECK(upstreams_summary(parse_ok(R"({"upstreams": [
      {"name": "gpu-a", "url": "http://10.0.0.5:11434", "max_concurrency": 2},
      {"name": "gpu-b", "url": "http://10.0.0.6:11434", "max_concurrency": 4}]})")) ==
        "fleet of 2 backends: gpu-a=http://10.0.0.5:11434, gpu-b=http://10.0.0.6:11434");
}

TEST_CASE("route_admin: endpoints, 404 and 405 with Allow") {
  CHECK(route_admin("GET", "/metrics").endpoint == AdminEndpoint::metrics);
  CHECK(route_admin("HEAD", "/healthz").endpoint == AdminEndpoint::healthz);
  CHECK(route_admin("GET", "/readyz?verbose=1").endpoint == AdminEndpoint::readyz);
  CHECK(route_admin("GET", "/admin/state").endpoint == AdminEndpoint::state);
  CHECK(route_admin("POST", "/admin/reload").endpoint == AdminEndpoint::reload);

  AdminRoute missing = route_admin("GET", "/nope");
  CHECK_FALSE(missing.endpoint);
  CHECK(missing.error.status == 404);
  CHECK(nlohmann::json::parse(missing.error.body)["error"].get<std::string>().find("/nope") !=
        std::string::npos);

  AdminRoute wrong = route_admin("GET", "/admin/reload");
  CHECK_FALSE(wrong.endpoint);
  CHECK(wrong.error.status == 405);
  CHECK(wrong.error.allow == "POST");
  AdminRoute wrong2 = route_admin("DELETE", "/metrics");
  CHECK(wrong2.error.status == 405);
  CHECK(wrong2.error.allow == "GET, HEAD");
  CHECK(nlohmann::json::parse(wrong2.error.body).contains("error"));
}

TEST_CASE("cli: hash-key subcommand hashes stdin's first line or generates a key") {
  CliParse p = parse_args({"hash-key"});
  REQUIRE_FALSE(p.exit_code);
  CHECK(p.options.hash_key);
  CHECK_FALSE(p.options.generate_key);
  CliParse g = parse_args({"hash-key", "--generate"});
  CHECK(g.options.hash_key);
  CHECK(g.options.generate_key);
  CHECK_FALSE(parse_args({"--config", "x"}).options.hash_key);

  // sha256("abc")
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
  CHECK(hash_key_output(false, "abc") == abc);
  CHECK(hash_key_output(false, "  abc \r\nignored second line\n") == abc);
  CHECK_FALSE(hash_key_output(false, "\n"));
  CHECK_FALSE(hash_key_output(false, ""));

  std::optional<std::string> generated = hash_key_output(true, "");
  REQUIRE(generated);
  const std::size_t key_at = generated->find("key: sk-sluice-");
  const std::size_t digest_at = generated->find("\nsha256: ");
  REQUIRE(key_at == 0);
  REQUIRE(digest_at != std::string::npos);
  const std::string key = generated->substr(5, digest_at - 5);
  const std::string digest = generated->substr(digest_at + 9, 64);
  CHECK(hash_key_output(false, key) == digest + "\n");
  CHECK(hash_key_output(true, "") != generated);  // fresh each time
}

TEST_CASE("cli: healthcheck subcommand takes --config and overrides before or after its name") {
  CliParse before = parse_args({"--config", "/etc/sluice/sluice.json", "healthcheck"});
  REQUIRE_FALSE(before.exit_code);
  CHECK(before.options.healthcheck);
  CHECK_FALSE(before.options.health_ready);
  CHECK(before.options.health_timeout == 3s);
  CHECK(before.options.config_file == "/etc/sluice/sluice.json");

  CliParse after = parse_args({"healthcheck", "--ready", "--timeout", "500ms", "--config", "y.json",
                               "--admin-listen", "127.0.0.1:9"});
  INFO(after.error_output);
  REQUIRE_FALSE(after.exit_code);
  CHECK(after.options.healthcheck);
  CHECK(after.options.health_ready);
  CHECK(after.options.health_timeout == 500ms);
  CHECK(after.options.config_file == "y.json");
  CHECK(after.options.overrides.admin_listen == "127.0.0.1:9");

  CHECK_FALSE(parse_args({"--config", "x"}).options.healthcheck);
  for (const char* bad : {"soon", "0s", "-1s"}) {
    CAPTURE(bad);
    CliParse p = parse_args({"healthcheck", "--timeout", bad});
    CHECK(p.exit_code == kExitUsage);
    CHECK(contains(p.error_output, "--timeout"));
  }
  CHECK(contains(parse_args({"--help"}).output, "healthcheck"));
}

TEST_CASE("health_target: the admin listener (wildcards on loopback), else the client listener") {
  auto target = [](const std::string& text, bool ready) {
    return health_target(parse_ok(text), ready);
  };
  using T = HealthTarget;
  CHECK(std::get<T>(target(R"({"admin_listen": "0.0.0.0:11436"})", false)) ==
        T{"127.0.0.1", 11436, "/healthz"});
  CHECK(std::get<T>(target(R"({"admin_listen": "0.0.0.0:11436"})", true)) ==
        T{"127.0.0.1", 11436, "/readyz"});
  CHECK(std::get<T>(target(R"({"admin_listen": "[::]:11436"})", false)) ==
        T{"::1", 11436, "/healthz"});
  CHECK(std::get<T>(target(R"({"admin_listen": "10.1.2.3:7000"})", false)) ==
        T{"10.1.2.3", 7000, "/healthz"});
  CHECK(std::get<T>(target("{}", false)) == T{"127.0.0.1", 11436, "/healthz"});
  CHECK(std::get<T>(target("{}", false)).describe() == "GET http://127.0.0.1:11436/healthz");
  CHECK(std::get<T>(target(R"({"admin_listen": "[::]:11436"})", false)).describe() ==
        "GET http://[::1]:11436/healthz");

  // Admin disabled: the client listener must accept a connection; /readyz cannot be asked.
  const std::string no_admin = R"({"listen": "0.0.0.0:11435", "admin_listen": ""})";
  const T tcp = std::get<T>(target(no_admin, false));
  CHECK(tcp == T{"127.0.0.1", 11435, ""});
  CHECK(tcp.describe() == "connect to 127.0.0.1:11435");
  CHECK(contains(std::get<std::string>(target(no_admin, true)), "admin_listen is \"\""));

  // Port 0 is "any free port": nothing to probe.
  CHECK(contains(std::get<std::string>(target(R"({"admin_listen": "127.0.0.1:0"})", false)),
                 "free port"));
  CHECK(contains(
      std::get<std::string>(target(R"({"listen": "127.0.0.1:0", "admin_listen": ""})", false)),
      "free port"));
}
