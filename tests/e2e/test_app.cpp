// End-to-end tests of the `sluice` binary: real processes (sluice and sluice-sim) on 127.0.0.1
// port 0, driven over HTTP and signals. What they pin down: the command line (--help,
// --check-config, bad configs), the admin listener (/healthz, /readyz against a live and a dead
// upstream, /metrics names, /admin/state, 404/405), live reload (POST /admin/reload and SIGHUP
// raise max_concurrency without dropping parked requests; a broken file changes nothing), graceful
// shutdown (parked -> 503 shutting_down, the stream in flight completes, exit 0 within the drain
// timeout), `sluice healthcheck` (the container probe) against each of those states, and
// scripts/run.sh starting the simulator when no Ollama answers.
//
// Timing: the simulator decodes at a known rate (--decode-rate), so a request with num_predict N
// takes about N / rate seconds; tests wait for states by polling with bounded deadlines and only
// assert orderings and generous bounds.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A config file in a fresh temporary directory, removed at scope end.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-e2e-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    std::filesystem::create_directories(dir_);
    write(text);
  }
  ~ConfigFile() { std::filesystem::remove_all(dir_); }
  void write(const std::string& text) const {
    const auto tmp = path() + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path());  // atomic, like an operator's editor or deploy tool
  }
  std::string path() const { return (dir_ / "sluice.json").string(); }

 private:
  std::filesystem::path dir_;
};

struct Sim {
  explicit Sim(std::vector<std::string> extra = {}) : proc(SLUICE_SIM_PATH, args(extra)) {
    port = proc.wait_for_port();
  }
  static std::vector<std::string> args(std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--listen", "127.0.0.1:0", "--log-level", "warn"});
    return extra;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  json stats() const {
    return json::parse(http_request(port, HttpRequest{"GET", "/sim/stats?limit=0", {}, ""}).body);
  }
  ChildProcess proc;
  std::uint16_t port = 0;
};

// A config for tests: given upstream and scheduler settings, both listeners on port 0.
std::string config_text(const std::string& upstream, int max_concurrency,
                        const std::string& extra = "") {
  return R"({
  "listen": "127.0.0.1:0",
  "admin_listen": "127.0.0.1:0",
  "upstream": {"url": ")" +
         upstream + R"("},
  "scheduler": {
    "max_concurrency": )" +
         std::to_string(max_concurrency) + R"(,
    "workloads": [{"name": "paid", "match": {"tier": "paid"}, "priority": 8}]
  },
  "log": {"level": "info", "access_log": false})" +
         extra + "\n}\n";
}

struct Sluice {
  explicit Sluice(std::vector<std::string> args) : proc(SLUICE_PATH, std::move(args)) {
    port = proc.wait_for_port();
    admin_port = proc.wait_for_port("admin listening on http://127.0.0.1:");
  }
  static Sluice with_config(const ConfigFile& file) { return Sluice({"--config", file.path()}); }

  HttpResponse admin(const std::string& method, const std::string& target) const {
    HttpRequest req{method, target, {}, ""};
    return http_request(admin_port, req);
  }
  json state() const {
    HttpResponse r = admin("GET", "/admin/state");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  // Polls /admin/state until `pred` holds; returns the last state. Bounded.
  template <class Pred>
  json wait_state(Pred pred, std::chrono::milliseconds timeout = 5000ms) const {
    const auto deadline = Clock::now() + timeout;
    json s = state();
    while (!pred(s) && Clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      s = state();
    }
    return s;
  }
  ChildProcess proc;
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;
};

// Runs `args` to completion (bounded); returns the exit code.
int run_to_exit(ChildProcess& proc, std::chrono::milliseconds timeout = 10000ms) {
  std::optional<int> code = proc.wait_exit(timeout);
  REQUIRE_MESSAGE(code.has_value(), proc.output());
  return *code;
}

HttpRequest generate(const std::string& user, int num_predict, const std::string& tier = "free") {
  json body = {{"model", "mistral"},
               {"prompt", "Why is the sky blue?"},
               {"options", {{"num_predict", num_predict}}}};
  return post_json("/api/generate", body.dump(), {{"X-User-Id", user}, {"X-Tier", tier}});
}

// The NDJSON objects of a complete body.
std::vector<json> ndjson(const std::string& body) {
  std::vector<json> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t nl = body.find('\n', pos);
    if (nl == std::string::npos) nl = body.size();
    if (nl > pos) out.push_back(json::parse(body.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return out;
}

bool ended_with_done(const HttpResponse& r) {
  std::vector<json> lines = ndjson(r.body);
  return !lines.empty() && lines.back().value("done", false);
}

// Waits (bounded) until the child's stderr contains `text`.
bool wait_for_stderr(const ChildProcess& proc, const std::string& text,
                     std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  while (!contains(proc.stderr_text(), text)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool port_refuses(std::uint16_t port) {
  try {
    HttpClient c("127.0.0.1", port);
    c.connect(1000ms);
    return false;
  } catch (const std::exception&) {
    return true;
  }
}

}  // namespace

TEST_CASE("sluice --help lists the flags; --version; --check-config accepts the example") {
  ChildProcess help(SLUICE_PATH, {"--help"});
  REQUIRE(run_to_exit(help) == 0);
  for (const char* flag :
       {"--config", "--check-config", "--listen", "--admin-listen", "--upstream",
        "--max-concurrency", "--log-level", "--log-format", "--version", "hash-key"}) {
    CAPTURE(flag);
    CHECK(contains(help.stdout_text(), flag));
  }
  ChildProcess version(SLUICE_PATH, {"--version"});
  REQUIRE(run_to_exit(version) == 0);
  CHECK(contains(version.stdout_text(), "sluice "));

  const std::string example = std::string(SLUICE_SOURCE_DIR) + "/config/sluice.json";
  ChildProcess check(SLUICE_PATH, {"--check-config", example});
  REQUIRE_MESSAGE(run_to_exit(check) == 0, check.output());
  CHECK(contains(check.stdout_text(), "ok"));
}

TEST_CASE("sluice --check-config on broken files: non-zero, every error with file, line, field") {
  ConfigFile file(
      "{\n  \"scheduler\": {\n    \"max_concurrency\": 0,\n    \"workloadz\": []\n  },\n"
      "  \"upstream\": {\"url\": \"ftp://x\"}\n}\n");
  ChildProcess check(SLUICE_PATH, {"--check-config", file.path()});
  CHECK(run_to_exit(check) == 2);
  const std::string err = check.stderr_text();
  INFO(err);
  CHECK(contains(err, file.path() + ":3: scheduler.max_concurrency: "));
  CHECK(contains(err, file.path() + ":4: scheduler.workloadz: unknown key"));
  CHECK(contains(err, file.path() + ":6: upstream.url: "));

  ConfigFile syntax("{\n  \"listen\": \"127.0.0.1:0\",\n  \"scheduler\": {\n}\n");
  ChildProcess check2(SLUICE_PATH, {"--check-config", syntax.path()});
  CHECK(run_to_exit(check2) == 2);
  CHECK(contains(check2.stderr_text(), syntax.path() + ":"));

  ChildProcess missing(SLUICE_PATH, {"--check-config", "/nonexistent/sluice.json"});
  CHECK(run_to_exit(missing) == 2);
  CHECK(contains(missing.stderr_text(), "/nonexistent/sluice.json"));

  ChildProcess bad_flag(SLUICE_PATH,
                        {"--check-config", std::string(SLUICE_SOURCE_DIR) + "/config/sluice.json",
                         "--max-concurrency", "0"});
  CHECK(run_to_exit(bad_flag) == 2);
  CHECK(contains(bad_flag.stderr_text(), "--max-concurrency"));
}

TEST_CASE("starting with a bad config or a taken port fails clearly, before serving") {
  ConfigFile file(
      "{\n  \"listen\": \"127.0.0.1:0\",\n  \"scheduler\": {\"max_concurency\": 2}\n}\n");
  ChildProcess bad(SLUICE_PATH, {"--config", file.path()});
  CHECK(run_to_exit(bad) == 2);
  CHECK(contains(bad.stderr_text(), file.path() + ":3: scheduler.max_concurency: unknown key"));
  CHECK(contains(bad.stderr_text(), "not started"));
  CHECK_FALSE(contains(bad.stdout_text(), "listening on"));

  ChildProcess usage(SLUICE_PATH, {"--no-such-flag"});
  CHECK(run_to_exit(usage) == 64);

  Sim sim;
  ConfigFile good(config_text(sim.url(), 1));
  Sluice first = Sluice::with_config(good);
  ChildProcess taken(SLUICE_PATH, {"--config", good.path(), "--listen",
                                   "127.0.0.1:" + std::to_string(first.port)});
  CHECK(run_to_exit(taken) == 1);
  CHECK(contains(taken.stderr_text(), "cannot listen on 127.0.0.1:" + std::to_string(first.port)));
}

TEST_CASE("admin: healthz, readyz (live and dead upstream), metrics, state, 404, 405") {
  auto sim = std::make_unique<Sim>(std::vector<std::string>{"--time-scale", "50"});
  ConfigFile file(config_text(sim->url(), 2));
  Sluice sluice = Sluice::with_config(file);

  HttpResponse health = sluice.admin("GET", "/healthz");
  CHECK(health.status == 200);
  HttpResponse ready = sluice.admin("GET", "/readyz");
  CHECK(ready.status == 200);
  CHECK(json::parse(ready.body)["status"] == "ready");
  // A single upstream: the message names its url, and there is no backends list.
  CHECK(json::parse(ready.body)["detail"] == "upstream " + sim->url() + " answered");
  CHECK_FALSE(json::parse(ready.body).contains("backends"));

  // One request through the proxy so counters move.
  HttpResponse r = http_request(sluice.port, generate("alice", 3, "paid"));
  REQUIRE(r.status == 200);
  CHECK(r.header("X-Sluice-Workload") == "paid");

  HttpResponse metrics = sluice.admin("GET", "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(contains(*metrics.header("Content-Type"), "text/plain"));
  for (const char* name : {"sluice_requests_total", "sluice_queue_length", "sluice_inflight",
                           "sluice_queue_wait_seconds", "sluice_request_duration_seconds",
                           "sluice_time_to_first_byte_seconds", "sluice_tokens_total",
                           "sluice_upstream_errors_total", "sluice_concurrency_limit"}) {
    CAPTURE(name);
    CHECK(contains(metrics.body, std::string("\n") + name));
  }
  const bool counted =
      contains(metrics.body, "sluice_requests_total{outcome=\"ok\",workload=\"paid\"} 1") ||
      contains(metrics.body, "sluice_requests_total{workload=\"paid\",outcome=\"ok\"} 1");
  CHECK(counted);
  CHECK(contains(metrics.body, "sluice_concurrency_limit 2"));

  json state = sluice.state();
  CHECK(state["limits"]["max_concurrency"] == 2);
  CHECK(state["totals"]["parked"] == 0);
  CHECK(state["draining"] == false);
  REQUIRE(state["workloads"].is_array());
  CHECK(state["workloads"][0]["name"] == "paid");
  for (const char* key : {"priority", "band", "parked", "in_flight", "oldest_wait_ms"}) {
    CAPTURE(key);
    CHECK(state["workloads"][0].contains(key));
  }
  CHECK(state["keys"].is_array());

  HttpResponse missing = sluice.admin("GET", "/nope");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body).contains("error"));
  HttpResponse wrong = sluice.admin("DELETE", "/admin/state");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("Allow") == "GET, HEAD");
  CHECK(json::parse(wrong.body).contains("error"));

  // The upstream goes away: /readyz turns 503 (after the 1 s probe cache), /healthz stays 200.
  sim.reset();
  std::this_thread::sleep_for(1100ms);
  HttpResponse down = sluice.admin("GET", "/readyz");
  CHECK(down.status == 503);
  CHECK(contains(json::parse(down.body)["detail"].get<std::string>(), "unreachable"));
  CHECK(sluice.admin("GET", "/healthz").status == 200);
}

TEST_CASE("readyz in a fleet: ready while one backend is up, each backend listed") {
  auto a = std::make_unique<Sim>(std::vector<std::string>{"--time-scale", "50"});
  auto b = std::make_unique<Sim>(std::vector<std::string>{"--time-scale", "50"});
  const std::string url_a = a->url();
  ConfigFile file(R"({"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
    "upstreams": [{"name": "gpu-a", "url": ")" +
                  url_a + R"(", "max_concurrency": 1},
                  {"name": "gpu-b", "url": ")" +
                  b->url() + R"(", "max_concurrency": 1}],
    "fleet": {"health_interval": "100ms", "health_timeout": "100ms"},
    "log": {"level": "info", "access_log": false}})");
  Sluice sluice = Sluice::with_config(file);
  // Polls /readyz until its detail is `detail` (the health checks run every 100 ms).
  auto readyz_until = [&](const std::string& detail) {
    HttpResponse r;
    for (int i = 0; i < 100; ++i) {
      r = sluice.admin("GET", "/readyz");
      if (json::parse(r.body)["detail"].get<std::string>().starts_with(detail)) break;
      std::this_thread::sleep_for(50ms);
    }
    return r;
  };

  HttpResponse both = readyz_until("2 of 2 backends up");
  CHECK(both.status == 200);
  json body = json::parse(both.body);
  CHECK(body["status"] == "ready");
  CHECK(body["detail"] == "2 of 2 backends up");
  REQUIRE(body["backends"].size() == 2);
  CHECK(body["backends"][0] ==
        json{{"name", "gpu-a"}, {"up", true}, {"state", "up"}, {"reason", ""}});
  CHECK(body["backends"][1]["name"] == "gpu-b");
  CHECK_FALSE(contains(both.body, url_a));  // no single upstream.url to name

  b.reset();  // one backend left: still ready, and the body says which one is not
  HttpResponse one = readyz_until("1 of 2 backends up");
  CHECK(one.status == 200);
  body = json::parse(one.body);
  CHECK(contains(body["detail"].get<std::string>(), "not up: gpu-b (down: "));
  CHECK(body["backends"][1]["up"] == false);
  CHECK(body["backends"][1]["state"] == "down");
  CHECK_FALSE(body["backends"][1]["reason"].get<std::string>().empty());

  a.reset();  // none left: not ready
  HttpResponse none = readyz_until("none of 2 backends up");
  CHECK(none.status == 503);
  body = json::parse(none.body);
  CHECK(body["status"] == "not ready");
  CHECK(contains(body["detail"].get<std::string>(), "not up: gpu-a (down: "));
  CHECK(sluice.admin("GET", "/healthz").status == 200);
}

TEST_CASE("an upstream given by host name: scheduled, pass-through and /readyz work") {
  // The sluice binary, so the io_context is the one production runs (a concurrency hint that
  // disables Asio's resolver made every host-name upstream answer 502).
  Sim sim({"--time-scale", "50"});
  ConfigFile file(config_text("http://localhost:" + std::to_string(sim.port), 2));
  Sluice sluice = Sluice::with_config(file);

  HttpResponse ready = sluice.admin("GET", "/readyz");
  CHECK(ready.status == 200);
  CHECK(json::parse(ready.body)["status"] == "ready");
  HttpResponse scheduled = http_request(sluice.port, generate("alice", 3, "paid"));
  CHECK(scheduled.status == 200);
  CHECK(ended_with_done(scheduled));
  HttpResponse passthrough = http_request(sluice.port, HttpRequest{"GET", "/api/version", {}, ""});
  CHECK(passthrough.status == 200);
  CHECK(json::parse(passthrough.body).contains("version"));
  // The resolved addresses are logged once, naming the host.
  CHECK(wait_for_stderr(sluice.proc, "upstream host localhost -> 127.0.0.1"));
  CHECK(sim.stats()["total"] == 1);
}

TEST_CASE("an upstream host name that does not resolve: 502 and /readyz say so, promptly") {
  // RFC 2606: .invalid never resolves. connect_timeout bounds a lookup that gets no answer.
  ConfigFile file(R"({"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
    "upstream": {"url": "http://sluice-no-such-host.invalid:11434", "connect_timeout": "1s"},
    "log": {"level": "info", "access_log": false}})");
  Sluice sluice = Sluice::with_config(file);
  const auto start = Clock::now();
  HttpResponse scheduled = http_request(sluice.port, generate("alice", 3), 5000ms);
  CHECK(scheduled.status == 502);
  CHECK(contains(json::parse(scheduled.body)["error"].get<std::string>(),
                 "upstream host \"sluice-no-such-host.invalid\" could not be resolved"));
  HttpResponse passthrough =
      http_request(sluice.port, HttpRequest{"GET", "/api/tags", {}, ""}, 5000ms);
  CHECK(passthrough.status == 502);
  HttpResponse ready = sluice.admin("GET", "/readyz");
  CHECK(ready.status == 503);
  CHECK(contains(json::parse(ready.body)["detail"].get<std::string>(),
                 "resolve sluice-no-such-host.invalid"));
  CHECK(Clock::now() - start < 8000ms);
}

// `sluice healthcheck ARGS...` run to completion: its exit code and its output.
struct Probe {
  int code = -1;
  std::string out, err;
};
Probe healthcheck(std::vector<std::string> args) {
  args.insert(args.begin(), "healthcheck");
  ChildProcess proc(SLUICE_PATH, std::move(args));
  Probe p;
  p.code = run_to_exit(proc);
  p.out = proc.stdout_text();
  p.err = proc.stderr_text();
  return p;
}

TEST_CASE("healthcheck: 0 while sluice serves (admin /healthz, /readyz or client port), else 1") {
  auto sim = std::make_unique<Sim>();
  ConfigFile file(config_text(sim->url(), 1));
  Sluice sluice = Sluice::with_config(file);
  // The test config listens on port 0; the probe is told the bound ports with the overrides
  // (and --config after the subcommand's name, as the image's HEALTHCHECK may give it).
  const std::string admin = "127.0.0.1:" + std::to_string(sluice.admin_port);
  const std::string listen = "127.0.0.1:" + std::to_string(sluice.port);

  Probe live = healthcheck({"--config", file.path(), "--admin-listen", admin});
  CHECK_MESSAGE(live.code == 0, live.err);
  CHECK(contains(live.out, "healthy: GET http://" + admin + "/healthz: 200"));
  Probe ready = healthcheck({"--ready", "--config", file.path(), "--admin-listen", admin});
  CHECK_MESSAGE(ready.code == 0, ready.err);
  CHECK(contains(ready.out, "/readyz: 200"));

  // The upstream goes: /readyz fails (with sluice's reason), /healthz still passes.
  sim.reset();
  std::this_thread::sleep_for(1100ms);  // the readiness result is reused for 1 s
  Probe not_ready = healthcheck({"--ready", "--config", file.path(), "--admin-listen", admin});
  CHECK(not_ready.code == 1);
  CHECK(contains(not_ready.err, "unhealthy: GET http://" + admin + "/readyz: 503"));
  CHECK(contains(not_ready.err, "unreachable"));
  CHECK(healthcheck({"--config", file.path(), "--admin-listen", admin}).code == 0);

  // Admin disabled by the config: the probe checks that the client listener accepts.
  ConfigFile no_admin(R"({"listen": ")" + listen + R"(", "admin_listen": ""})");
  Probe tcp = healthcheck({"--config", no_admin.path()});
  CHECK_MESSAGE(tcp.code == 0, tcp.err);
  CHECK(contains(tcp.out, "healthy: connect to " + listen + ": accepted"));
  Probe tcp_ready = healthcheck({"--ready", "--config", no_admin.path()});
  CHECK(tcp_ready.code == 1);
  CHECK(contains(tcp_ready.err, "cannot check"));

  // sluice gone: both probes fail, saying so.
  sluice.proc.stop();
  Probe gone = healthcheck({"--admin-listen", admin});
  CHECK(gone.code == 1);
  CHECK(contains(gone.err, "unhealthy: GET http://" + admin + "/healthz: connect: "));
  CHECK(healthcheck({"--config", no_admin.path()}).code == 1);

  // A config the probe cannot read, or a port 0 it cannot probe: 1 (never 2: health checks
  // know only 0 and 1).
  CHECK(healthcheck({"--config", "/nonexistent/sluice.json"}).code == 1);
  CHECK(healthcheck({"--config", file.path()}).code == 1);
}

TEST_CASE("healthcheck: a listener that accepts and never answers fails after --timeout") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 8) == 0);  // the kernel completes the handshake; nobody ever reads
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string where = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  const auto start = Clock::now();
  Probe silent = healthcheck({"--timeout", "300ms", "--admin-listen", where});
  const auto took = Clock::now() - start;
  ::close(fd);
  CHECK(silent.code == 1);
  CHECK(contains(silent.err, "GET http://" + where + "/healthz: timeout after 300ms"));
  CHECK(took >= 300ms);
  CHECK(took < 3s);
}

TEST_CASE("reload: POST /admin/reload raises max_concurrency live; parked requests start") {
  Sim sim({"--parallel", "8", "--decode-rate", "40"});
  ConfigFile file(config_text(sim.url(), 1));
  Sluice sluice = Sluice::with_config(file);

  // Four users' requests of ~1.5 s each; one runs, three park.
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<HttpClient>("127.0.0.1", sluice.port));
    clients.back()->send(generate("user" + std::to_string(i), 60));
  }
  json parked = sluice.wait_state([](const json& s) { return s["totals"]["parked"] == 3; });
  REQUIRE(parked["totals"]["parked"] == 3);
  CHECK(parked["totals"]["in_flight"] == 1);

  file.write(config_text(sim.url(), 3));
  HttpResponse reload = sluice.admin("POST", "/admin/reload");
  INFO(reload.body);
  REQUIRE(reload.status == 200);
  json outcome = json::parse(reload.body);
  CHECK(outcome["status"] == "applied");
  REQUIRE(outcome["changes"].size() == 1);
  CHECK(outcome["changes"][0] == "scheduler.max_concurrency: 1 -> 3");

  json after = sluice.wait_state([](const json& s) { return s["totals"]["in_flight"] == 3; });
  CHECK(after["totals"]["in_flight"] == 3);
  CHECK(after["totals"]["parked"] == 1);
  CHECK(after["limits"]["max_concurrency"] == 3);
  const auto deadline = Clock::now() + 5s;
  while (sim.stats()["peak_active"] < 3 && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  json stats = sim.stats();
  CHECK(stats["peak_active"] == 3);

  for (auto& c : clients) {
    REQUIRE(c->read_head(10000ms) == ReadStatus::ok);
    CHECK(c->response().status == 200);
    REQUIRE(c->read_to_end(10000ms) == ReadStatus::end);
    CHECK(ended_with_done(c->response()));
  }
  CHECK(sim.stats()["completed"] == 4);  // nothing was dropped
  CHECK(contains(sluice.proc.stderr_text(), "scheduler.max_concurrency: 1 -> 3"));
  CHECK(sluice.admin("POST", "/admin/reload").status == 200);  // unchanged now
  CHECK(json::parse(sluice.admin("POST", "/admin/reload").body)["status"] == "unchanged");
}

TEST_CASE("reload: SIGHUP raises max_concurrency live; parked requests start") {
  Sim sim({"--parallel", "8", "--decode-rate", "40"});
  ConfigFile file(config_text(sim.url(), 1));
  Sluice sluice = Sluice::with_config(file);
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<HttpClient>("127.0.0.1", sluice.port));
    clients.back()->send(generate("user" + std::to_string(i), 60));
  }
  REQUIRE(sluice.wait_state(
              [](const json& s) { return s["totals"]["parked"] == 2; })["totals"]["parked"] == 2);
  file.write(config_text(sim.url(), 3));
  sluice.proc.signal(SIGHUP);
  json after = sluice.wait_state([](const json& s) { return s["totals"]["in_flight"] == 3; });
  CHECK(after["totals"]["in_flight"] == 3);
  CHECK(after["totals"]["parked"] == 0);
  for (auto& c : clients) {
    REQUIRE(c->read_head(10000ms) == ReadStatus::ok);
    CHECK(c->response().status == 200);
    REQUIRE(c->read_to_end(10000ms) == ReadStatus::end);
    CHECK(ended_with_done(c->response()));
  }
  CHECK(sim.stats()["peak_active"] == 3);
  const std::string err = sluice.proc.stderr_text();
  CHECK(contains(err, "reload (SIGHUP)"));
  CHECK(contains(err, "scheduler.max_concurrency: 1 -> 3"));
}

TEST_CASE("reload: a broken file or a restart-only change changes nothing and says why") {
  Sim sim({"--time-scale", "50"});
  ConfigFile file(config_text(sim.url(), 2));
  Sluice sluice = Sluice::with_config(file);

  file.write(
      "{\n  \"listen\": \"127.0.0.1:0\",\n  \"scheduler\": {\"max_concurrency\": \"many\"}\n}\n");
  HttpResponse invalid = sluice.admin("POST", "/admin/reload");
  CHECK(invalid.status == 400);
  json body = json::parse(invalid.body);
  CHECK(body["status"] == "invalid");
  REQUIRE(body["errors"].size() == 1);
  CHECK(contains(body["errors"][0].get<std::string>(),
                 file.path() + ":3: scheduler.max_concurrency: "));
  CHECK(sluice.state()["limits"]["max_concurrency"] == 2);

  sluice.proc.signal(SIGHUP);
  CHECK(wait_for_stderr(sluice.proc, "reload (SIGHUP): config " + file.path() +
                                         " is invalid (1 error); nothing changed"));
  CHECK(sluice.state()["limits"]["max_concurrency"] == 2);

  // A change only a restart can apply.
  file.write(R"({"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                 "upstream": {"url": ")" +
             sim.url() + R"(", "max_idle_connections": 3},
                 "scheduler": {"max_concurrency": 5}})");
  HttpResponse restart = sluice.admin("POST", "/admin/reload");
  CHECK(restart.status == 409);
  CHECK(contains(json::parse(restart.body)["error"].get<std::string>(),
                 "upstream.max_idle_connections"));
  CHECK(sluice.state()["limits"]["max_concurrency"] == 2);

  // Still serving.
  HttpResponse r = http_request(sluice.port, generate("alice", 2));
  CHECK(r.status == 200);
}

TEST_CASE("shutdown: SIGTERM answers parked 503 shutting_down, lets the stream finish, exits 0") {
  Sim sim({"--decode-rate", "40"});
  ConfigFile file(config_text(sim.url(), 1, R"(,
  "shutdown": {"drain_timeout": "20s"})"));
  Sluice sluice = Sluice::with_config(file);

  HttpClient running("127.0.0.1", sluice.port);
  running.send(generate("alice", 60));  // ~1.5 s
  REQUIRE(running.read_head(10000ms) == ReadStatus::ok);
  CHECK(running.response().status == 200);
  std::vector<std::unique_ptr<HttpClient>> parked;
  for (int i = 0; i < 2; ++i) {
    parked.push_back(std::make_unique<HttpClient>("127.0.0.1", sluice.port));
    parked.back()->send(generate("user" + std::to_string(i), 5));
  }
  REQUIRE(sluice.wait_state(
              [](const json& s) { return s["totals"]["parked"] == 2; })["totals"]["parked"] == 2);

  const auto term_at = Clock::now();
  sluice.proc.signal(SIGTERM);
  for (auto& p : parked) {
    REQUIRE(p->read_head(5000ms) == ReadStatus::ok);
    CHECK(p->response().status == 503);
    CHECK(p->response().header("X-Sluice-Reason") == "shutting_down");
    CHECK(p->response().header("Retry-After"));
    p->read_to_end(5000ms);
    CHECK(json::parse(p->response().body).contains("error"));
  }
  // No new connections once shutdown began.
  CHECK(port_refuses(sluice.port));
  // The stream in flight completes.
  REQUIRE(running.read_to_end(10000ms) == ReadStatus::end);
  const auto stream_done = Clock::now();
  CHECK(ended_with_done(running.response()));

  std::optional<int> code = sluice.proc.wait_exit(20000ms);
  REQUIRE_MESSAGE(code.has_value(), sluice.proc.output());
  CHECK(*code == 0);
  CHECK(Clock::now() - term_at < 20s);
  CHECK(Clock::now() >= stream_done);
  const std::string err = sluice.proc.stderr_text();
  CHECK(contains(err, "shutdown (SIGTERM): no longer accepting; 2 parked requests"));
  CHECK(contains(err, "shutdown: every request finished"));
  CHECK(contains(err, "sluice stopped"));
}

TEST_CASE("shutdown: a stream longer than drain_timeout is cut and sluice exits 0 in time") {
  Sim sim({"--decode-rate", "40"});
  ConfigFile file(config_text(sim.url(), 1, R"(,
  "shutdown": {"drain_timeout": "300ms"})"));
  Sluice sluice = Sluice::with_config(file);
  HttpClient running("127.0.0.1", sluice.port);
  running.send(generate("alice", 400));  // ~10 s
  REQUIRE(running.read_head(10000ms) == ReadStatus::ok);
  const auto term_at = Clock::now();
  sluice.proc.signal(SIGTERM);
  std::optional<int> code = sluice.proc.wait_exit(5000ms);
  REQUIRE_MESSAGE(code.has_value(), sluice.proc.output());
  CHECK(*code == 0);
  CHECK(Clock::now() - term_at >= 300ms);
  CHECK(Clock::now() - term_at < 5s);
  ReadStatus end = running.read_to_end(5000ms);
  CHECK(end != ReadStatus::timeout);
  CHECK_FALSE(ended_with_done(running.response()));
  CHECK(contains(sluice.proc.stderr_text(), "drain_timeout (300ms) passed with 1 requests"));
  // The upstream saw the client go away (Ollama would stop generating).
  const auto deadline = Clock::now() + 5s;
  while (sim.stats()["cancelled"] != 1 && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  CHECK(sim.stats()["cancelled"] == 1);
}

TEST_CASE("scripts/run.sh: no Ollama -> starts the simulator, serves, cleans up on SIGTERM") {
  // Nothing listens on port 1, so the Ollama probe fails at once.
  ChildProcess run("/bin/bash", {std::string(SLUICE_SOURCE_DIR) + "/scripts/run.sh", "--no-build",
                                 "--build-dir", SLUICE_BUILD_DIR, "--ollama", "http://127.0.0.1:1",
                                 "--", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"});
  const std::uint16_t port = run.wait_for_port("listening on http://127.0.0.1:", 20000ms);
  // The script says which simulator it started.
  std::smatch match;
  std::string err = run.stderr_text();
  const std::regex started(
      R"(no Ollama at http://127\.0\.0\.1:1; starting the bundled GPU simulator at http://127\.0\.0\.1:(\d+))");
  const auto deadline = Clock::now() + 5s;
  while (!std::regex_search(err, match, started) && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    err = run.stderr_text();
  }
  REQUIRE_MESSAGE(std::regex_search(err, match, started), run.output());
  const auto sim_port = static_cast<std::uint16_t>(std::stoul(match[1]));
  CHECK(http_request(sim_port, HttpRequest{"GET", "/api/version", {}, ""}).status == 200);

  HttpResponse r = http_request(port, generate("alice", 3, "paid"));
  CHECK(r.status == 200);
  CHECK(r.header("X-Sluice-Workload") == "paid");
  CHECK(ended_with_done(r));
  CHECK(wait_for_stderr(run, "curl -N http://127.0.0.1:" + std::to_string(port)));

  run.signal(SIGTERM);
  std::optional<int> code = run.wait_exit(15000ms);
  REQUIRE_MESSAGE(code.has_value(), run.output());
  CHECK(port_refuses(port));
  CHECK(port_refuses(sim_port));  // the simulator was stopped too
}

TEST_CASE("scripts/run.sh --fleet 3: three simulators behind one sluice, placed by model") {
  ChildProcess run("/bin/bash", {std::string(SLUICE_SOURCE_DIR) + "/scripts/run.sh", "--no-build",
                                 "--build-dir", SLUICE_BUILD_DIR, "--fleet", "3", "--", "--listen",
                                 "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"});
  const std::uint16_t port = run.wait_for_port("listening on http://127.0.0.1:", 20000ms);
  std::vector<std::uint16_t> sims;
  const std::regex started(R"(started gpu-(\d) at http://127\.0\.0\.1:(\d+))");
  const std::string err = run.stderr_text();
  for (auto it = std::sregex_iterator(err.begin(), err.end(), started);
       it != std::sregex_iterator(); ++it) {
    sims.push_back(static_cast<std::uint16_t>(std::stoul((*it)[2])));
  }
  REQUIRE_MESSAGE(sims.size() == 3, run.output());

  // gpu-1 serves mistral and llama3.1:8b, gpu-3 qwen2.5:7b and gemma2:9b: a request for gemma2
  // can only go to gpu-3, one for mistral only to gpu-1. (Backends are up after their first
  // health check: retry briefly.)
  auto ask = [&](const std::string& model) {
    const HttpRequest request = post_json(
        "/api/generate",
        R"({"model":")" + model + R"(","prompt":"hi","stream":false,"options":{"num_predict":3}})",
        {{"X-User-Id", "alice"}, {"X-Tier", "paid"}});
    HttpResponse r;
    for (int i = 0; i < 100; ++i) {
      try {
        r = http_request(port, request);
      } catch (const std::exception& e) {
        FAIL_CHECK(std::string(e.what()) << "\n" << run.output());
        return r;
      }
      if (r.status == 200) break;
      std::this_thread::sleep_for(100ms);
    }
    return r;
  };
  HttpResponse gemma = ask("gemma2:9b");
  CHECK(gemma.status == 200);
  CHECK(gemma.header("X-Sluice-Backend") == "gpu-3");
  HttpResponse mistral = ask("mistral");
  CHECK(mistral.status == 200);
  CHECK(mistral.header("X-Sluice-Backend") == "gpu-1");
  CHECK(wait_for_stderr(run, "run: the fleet: gpu-1=http://127.0.0.1:"));

  run.signal(SIGTERM);
  std::optional<int> code = run.wait_exit(15000ms);
  REQUIRE_MESSAGE(code.has_value(), run.output());
  CHECK(port_refuses(port));
  for (std::uint16_t sim : sims)
    CHECK(port_refuses(sim));  // every simulator was stopped
}
