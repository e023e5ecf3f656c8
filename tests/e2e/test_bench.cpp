// End-to-end tests of sluice-bench: the real binary runs small scenarios against sluice-sim on
// 127.0.0.1:0 (time-scaled, so each run takes well under a second of real time). The checks
// recompute the summary from the per-request CSV and compare, and compare the CSV with what the
// simulator itself recorded; they never assert absolute latencies.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "child_process.hpp"
#include "http_client.hpp"
#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/report.hpp"
#include "sluice/bench/stats.hpp"

using namespace sluice::test;
using namespace sluice::bench;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr double kScale = 50;

struct TempDir {
  TempDir() {
    path = fs::temp_directory_path() /
           ("sluice-bench-e2e-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
  static inline int counter = 0;
};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::vector<std::string> sim_args(std::vector<std::string> extra, double scale = kScale) {
  std::vector<std::string> args = {
      "--listen", "127.0.0.1:0",  "--log-level",         "warn",   "--parallel",
      "1",        "--time-scale", std::to_string(scale), "--seed", "3"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

struct Sim {
  explicit Sim(std::vector<std::string> extra = {}, double scale = kScale)
      : proc(SLUICE_SIM_PATH, sim_args(std::move(extra), scale)) {
    port = proc.wait_for_port();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  json stats() {
    auto r = http_request(port, HttpRequest{"GET", "/sim/stats", {}, ""});
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  ChildProcess proc;
  std::uint16_t port = 0;
};

// Runs sluice-bench to completion; returns its exit code (and the child, for its output).
int bench(std::vector<std::string> args, std::string* output = nullptr) {
  ChildProcess proc(SLUICE_BENCH_PATH, std::move(args));
  const auto code = proc.wait_exit(60s);
  if (output) *output = proc.output();
  INFO(proc.output());
  REQUIRE(code.has_value());
  return *code;
}

// Three groups, one per arrival mode; small answers so the run is short.
const char* kScenario = R"({
  "name": "e2e",
  "seed": 11,
  "prompts": {
    "paid": ["Summarise this ticket in one line.", "Draft a two-sentence reply, please."],
    "open-source": ["What is a mutex?", "Explain git rebase briefly."]
  },
  "num_predict": {"distribution": "uniform", "min": 8, "max": 16},
  "groups": [
    {"name": "paid", "tier": "paid", "users": 2, "requests_per_user": 3,
     "arrival": {"mode": "burst"}},
    {"name": "chatty", "tier": "open-source", "users": 2, "requests_per_user": 3,
     "arrival": {"mode": "poisson", "rate_per_s": 1.0}},
    {"name": "batch", "tier": "open-source", "users": 1, "requests_per_user": 3,
     "arrival": {"mode": "closed_loop", "think_time_s": 1.0}, "num_predict": 12}
  ],
  "max_duration_s": 600,
  "request_timeout_s": 300
})";

void check_distribution(const json& j, const Distribution& d) {
  CHECK(j["n"].get<std::size_t>() == d.n);
  const char* keys[] = {"p50", "p90", "p99", "max", "mean"};
  const std::optional<double>* values[] = {&d.p50, &d.p90, &d.p99, &d.max, &d.mean};
  for (std::size_t i = 0; i < 5; ++i) {
    INFO(keys[i]);
    REQUIRE(j[keys[i]].is_null() == !values[i]->has_value());
    // The CSV keeps microseconds; the summary was computed before rounding.
    if (*values[i]) CHECK(j[keys[i]].get<double>() == doctest::Approx(**values[i]).epsilon(1e-5));
  }
}

void check_subject(const json& j, const SubjectSummary& s) {
  INFO("subject ", s.name);
  CHECK(j["count"].get<std::size_t>() == s.count);
  CHECK(j["ok"].get<std::size_t>() == s.ok);
  CHECK(j["failed"].get<std::size_t>() == s.failed);
  CHECK(j["output_tokens"].get<long>() == s.output_tokens);
  check_distribution(j["latency_s"], s.latency);
  check_distribution(j["ttft_s"], s.ttft);
  REQUIRE(j["jain_user_mean_latency"].is_null() == !s.jain);
  if (s.jain) CHECK(j["jain_user_mean_latency"].get<double>() == doctest::Approx(*s.jain));
  REQUIRE(j["tokens_per_s"].is_number());
  CHECK(j["tokens_per_s"].get<double>() == doctest::Approx(*s.tokens_per_s).epsilon(1e-4));
}

}  // namespace

TEST_CASE("a small scenario end to end: the summary matches the per-request records") {
  Sim sim;
  TempDir dir;
  write(dir.path / "e2e.json", kScenario);
  const fs::path out = dir.path / "run";
  const auto t0 = Clock::now();
  REQUIRE(bench({"run", "--scenario", (dir.path / "e2e.json").string(), "--target", sim.url(),
                 "--sim-stats", sim.url(), "--label", "direct", "--out", out.string(), "--run-id",
                 "e2e-run"}) == 0);
  CHECK(Clock::now() - t0 < 30s);

  const auto records = parse_csv(read(out / "requests.csv"));
  const json summary = json::parse(read(out / "summary.json"));
  REQUIRE(records.size() == 15);

  // Every request completed, with the tokens it asked for, and sane timings.
  std::map<std::string, int> per_group;
  for (const auto& r : records) {
    INFO("request ", r.index, " ", r.error);
    CHECK(r.outcome == "ok");
    CHECK(r.status == 200);
    REQUIRE(r.num_predict);
    CHECK(r.output_tokens == std::optional<long>(*r.num_predict));
    CHECK(r.done_reason == "length");
    REQUIRE(r.ttft_s);
    REQUIRE(r.latency_s);
    CHECK(*r.ttft_s <= *r.latency_s);
    CHECK(*r.latency_s > 0);
    CHECK(r.request_id == "e2e-run-" + std::to_string(r.index));
    ++per_group[r.group];
    // A burst at t = 0: sent at once (bound generous for a loaded machine: 0.5 s real).
    if (r.group == "paid") CHECK(r.sent_s < 0.5 * kScale);
    if (r.group == "batch") CHECK(*r.num_predict == 12);
  }
  CHECK(per_group == std::map<std::string, int>{{"paid", 6}, {"chatty", 6}, {"batch", 3}});

  // The closed-loop user waits for each answer, then thinks 1 s, before sending again.
  std::vector<const RequestRecord*> batch;
  for (const auto& r : records)
    if (r.group == "batch") batch.push_back(&r);
  std::sort(batch.begin(), batch.end(), [](auto* a, auto* b) { return a->sent_s < b->sent_s; });
  for (std::size_t i = 1; i < batch.size(); ++i)
    CHECK(batch[i]->sent_s >= batch[i - 1]->end_s() + 1.0 - 1e-3);

  // Recompute the summary from the CSV and compare with the JSON the run wrote.
  const Summary again = summarize(records, {});
  CHECK(summary["requests"] == 15);
  CHECK(summary["ok"] == 15);
  CHECK(summary["failed"] == 0);
  CHECK(summary["time_scale"].get<double>() == kScale);  // learnt from /sim/stats
  CHECK(summary["span_s"].get<double>() == doctest::Approx(again.span_s).epsilon(1e-5));
  check_subject(summary["all"], again.all);
  REQUIRE(summary["tiers"].size() == 2);
  for (const auto& t : summary["tiers"]) {
    const auto* s = again.find("tier", t["name"].get<std::string>());
    REQUIRE(s);
    check_subject(t, *s);
  }
  REQUIRE(summary["groups"].size() == 3);
  for (const auto& g : summary["groups"]) {
    const auto* s = again.find("group", g["name"].get<std::string>());
    REQUIRE(s);
    check_subject(g, *s);
  }
  // ...and by hand for one tier: nearest-rank p90 of the 6 paid latencies is the 6th.
  std::vector<double> paid;
  long paid_tokens = 0;
  for (const auto& r : records)
    if (r.tier == "paid") {
      paid.push_back(*r.latency_s);
      paid_tokens += *r.output_tokens;
    }
  std::sort(paid.begin(), paid.end());
  const json* paid_json = nullptr;
  for (const auto& t : summary["tiers"])
    if (t["name"] == "paid") paid_json = &t;
  REQUIRE(paid_json);
  CHECK((*paid_json)["latency_s"]["p90"].get<double>() == doctest::Approx(paid[5]).epsilon(1e-5));
  CHECK((*paid_json)["latency_s"]["p50"].get<double>() == doctest::Approx(paid[2]).epsilon(1e-5));
  CHECK((*paid_json)["output_tokens"].get<long>() == paid_tokens);

  // The simulator saw exactly these requests, with these token counts, one at a time.
  const json stats = sim.stats();
  std::map<std::string, const json*> seen;
  for (const auto& rec : stats["records"])
    if (rec["headers"].value("x-bench-run", "") == "e2e-run")
      seen[rec["headers"]["x-request-id"].get<std::string>()] = &rec;
  REQUIRE(seen.size() == 15);
  for (const auto& r : records) {
    REQUIRE(seen.count(r.request_id));
    const json& rec = *seen[r.request_id];
    CHECK(rec["tokens"].get<long>() == *r.output_tokens);
    CHECK(rec["headers"]["x-tier"] == r.tier);
    CHECK(rec["headers"]["x-user-id"] == r.user);
  }
  const json& up = summary["upstream"];
  CHECK(up["available"] == true);
  CHECK(up["records"] == 15);
  CHECK(up["peak_active"] == 1);  // --parallel 1
  const double utilisation = up["utilisation"].get<double>();
  CHECK(utilisation > 0);
  CHECK(utilisation <= 1);
  CHECK(up["busy_s"].get<double>() <= summary["span_s"].get<double>() + 1e-9);
  // Busy time is the sum of the (non-overlapping) generation intervals the simulator recorded.
  double busy = 0;
  for (const auto& [id, rec] : seen)
    busy +=
        double((*rec)["end_ns"].get<std::int64_t>() - (*rec)["start_ns"].get<std::int64_t>()) / 1e9;
  CHECK(up["busy_s"].get<double>() == doctest::Approx(busy).epsilon(0.02));

  // The other outputs.
  const std::string md = read(out / "summary.md");
  CHECK(md.find("| direct | paid | 6 | 0 |") != std::string::npos);
  CHECK(md.find("| · chatty |") != std::string::npos);
  const std::string svg = read(out / "chart.svg");
  std::size_t dots = 0;
  for (auto p = svg.find("<circle"); p != std::string::npos; p = svg.find("<circle", p + 1))
    ++dots;
  CHECK(dots == 15 + 2);  // one per request, one per tier in the legend
}

TEST_CASE(
    "failed requests are recorded as such and left out of the latency percentiles (chat API)") {
  Sim sim;
  TempDir dir;
  write(dir.path / "faults.json", R"({
    "name": "faults",
    "api": "chat",
    "prompts": {"p": ["hello there"]},
    "num_predict": 8,
    "groups": [
      {"name": "fine", "tier": "a", "users": 2, "requests_per_user": 2, "prompts": "p"},
      {"name": "refused", "tier": "b", "requests_per_user": 2,
       "headers": {"X-Sim-Fault": "error-500"}, "prompts": "p"},
      {"name": "broken", "tier": "b", "requests_per_user": 1,
       "headers": {"X-Sim-Fault": "error-line=3"}, "prompts": "p"}
    ]
  })");
  const fs::path out = dir.path / "run";
  std::string output;
  CHECK(bench({"run", "--scenario", (dir.path / "faults.json").string(), "--target", sim.url(),
               "--sim-stats", sim.url(), "--out", out.string(), "--no-progress"},
              &output) == 1);  // failures make the exit status 1
  const auto records = parse_csv(read(out / "requests.csv"));
  REQUIRE(records.size() == 7);
  for (const auto& r : records) {
    INFO(r.group, " ", r.error);
    if (r.group == "fine") {
      CHECK(r.outcome == "ok");  // /api/chat: the same NDJSON stream, "message" chunks
      CHECK(r.output_tokens == std::optional<long>(8));
    } else if (r.group == "refused") {
      CHECK(r.outcome == "http_error");
      CHECK(r.status == 500);
      CHECK(r.error.find("HTTP 500: simulated failure") == 0);
    } else {
      CHECK(r.outcome == "stream_error");
      CHECK(r.status == 200);
      CHECK(r.error.find("simulated failure") != std::string::npos);
    }
  }
  const json summary = json::parse(read(out / "summary.json"));
  CHECK(summary["failed"] == 3);
  CHECK(summary["ok"] == 4);
  for (const auto& t : summary["tiers"]) {
    if (t["name"] == "b") {
      CHECK(t["failed"] == 3);
      CHECK(t["latency_s"]["n"] == 0);
      CHECK(t["latency_s"]["p50"].is_null());
    } else {
      CHECK(t["latency_s"]["n"] == 4);
    }
  }
}

TEST_CASE("report compares runs and checks the scenario's targets") {
  Sim sim;
  TempDir dir;
  std::string scenario = kScenario;
  scenario.replace(scenario.rfind('}'), 1, R"(,
    "targets": [
      {"name": "no failures", "run": "after", "metric": "failures", "max": 0},
      {"name": "same ballpark", "run": "after", "baseline": "before", "metric": "latency_p90",
       "subject": "tier:paid", "max_ratio": 100},
      {"name": "impossible", "run": "after", "baseline": "before", "metric": "latency_p90",
       "subject": "tier:paid", "max_ratio": 0.001},
      {"name": "absent", "run": "strict", "metric": "jain", "min": 0.9}
    ]})");
  write(dir.path / "e2e.json", scenario);
  for (const char* label : {"before", "after"})
    REQUIRE(bench({"run", "--scenario", (dir.path / "e2e.json").string(), "--target", sim.url(),
                   "--sim-stats", sim.url(), "--label", label, "--out", (dir.path / label).string(),
                   "--no-progress"}) == 0);
  const std::vector<std::string> args = {"report",
                                         "--out",
                                         (dir.path / "cmp").string(),
                                         "--scenario",
                                         (dir.path / "e2e.json").string(),
                                         "--baseline",
                                         "before",
                                         (dir.path / "before").string(),
                                         (dir.path / "after").string()};
  std::string output;
  CHECK(bench(args, &output) == 0);
  auto strict_args = args;
  strict_args.insert(strict_args.begin() + 1, "--fail-on-missed");
  CHECK(bench(strict_args) == 1);

  const json cmp = json::parse(read(dir.path / "cmp" / "comparison.json"));
  REQUIRE(cmp["runs"].size() == 2);
  CHECK(cmp["runs"][0]["label"] == "before");
  REQUIRE(cmp["targets"].size() == 4);
  CHECK(cmp["targets"][0]["status"] == "met");
  CHECK(cmp["targets"][1]["status"] == "met");
  CHECK(cmp["targets"][2]["status"] == "missed");
  CHECK(cmp["targets"][3]["status"] == "skipped");
  const std::string md = read(dir.path / "cmp" / "comparison.md");
  CHECK(md.find("| p50 vs before | p90 vs before |") != std::string::npos);
  CHECK(md.find("| impossible | missed |") != std::string::npos);
  CHECK(output.find("| no failures | **met** |") != std::string::npos);  // printed too
  const std::string svg = read(dir.path / "cmp" / "chart.svg");
  CHECK(svg.find(">before</text>") != std::string::npos);
  CHECK(svg.find(">after</text>") != std::string::npos);
}

TEST_CASE("bad input: a clear message and exit status 2; an unreachable target fails fast") {
  TempDir dir;
  write(dir.path / "bad.json", R"({"name": "bad", "prompts": {"a": ["x"]},
    "groups": [{"name": "g", "tier": "a", "users": -1}]})");
  std::string output;
  CHECK(bench({"run", "--scenario", (dir.path / "bad.json").string(), "--target",
               "http://127.0.0.1:1", "--out", (dir.path / "o").string()},
              &output) == 2);
  CHECK(output.find("groups[0].users: must be between 1 and 10000, not -1") != std::string::npos);

  CHECK(bench({"run", "--scenario", (dir.path / "bad.json").string(), "--target", "https://x",
               "--out", (dir.path / "o").string()},
              &output) == 2);

  // Nothing listens on port 1: every request is a transport error, recorded, and the run ends.
  write(dir.path / "ok.json", R"({"name": "ok", "prompts": {"a": ["x"]},
    "groups": [{"name": "g", "tier": "a", "users": 3, "requests_per_user": 2}]})");
  const auto t0 = Clock::now();
  CHECK(bench({"run", "--scenario", (dir.path / "ok.json").string(), "--target",
               "http://127.0.0.1:1", "--out", (dir.path / "o").string(), "--no-progress"}) == 1);
  CHECK(Clock::now() - t0 < 10s);
  const auto records = parse_csv(read(dir.path / "o" / "requests.csv"));
  REQUIRE(records.size() == 6);
  for (const auto& r : records) {
    CHECK(r.outcome == "transport_error");
    CHECK(r.error.find("connect:") == 0);
  }
  const json summary = json::parse(read(dir.path / "o" / "summary.json"));
  CHECK(summary["upstream"]["available"] == false);
}

TEST_CASE("a fleet of two simulators: models drawn per request, users split, loads summed") {
  // Each simulator holds one of three models at a time and takes 2 s (simulated) to switch.
  const std::vector<std::string> residency = {"--models", "m1:7b,m2:7b,m3:7b", "--max-loaded",
                                              "1",        "--load-time",       "2s"};
  Sim a(residency), b(residency);
  TempDir dir;
  write(dir.path / "fleet.json", R"({
    "name": "fleet-e2e", "seed": 8,
    "models": [{"name": "m1:7b", "weight": 3}, {"name": "m2:7b", "weight": 2},
               {"name": "m3:7b", "weight": 1}],
    "prompts": {"p": ["Summarise this ticket in one line.", "What is a mutex?"]},
    "num_predict": 8,
    "groups": [{"name": "g", "tier": "free", "prompts": "p", "users": 4, "requests_per_user": 4,
                "arrival": {"mode": "poisson", "rate_per_s": 2}}],
    "max_duration_s": 300, "request_timeout_s": 120
  })");
  const fs::path out = dir.path / "run";
  const auto t0 = Clock::now();
  REQUIRE(bench({"run", "--scenario", (dir.path / "fleet.json").string(), "--target", a.url(),
                 "--target", b.url(), "--sim-stats", a.url(), "--sim-stats", b.url(), "--label",
                 "direct", "--out", out.string(), "--run-id", "fleet-run", "--no-progress"}) == 0);
  CHECK(Clock::now() - t0 < 15s);

  const auto records = parse_csv(read(out / "requests.csv"));
  REQUIRE(records.size() == 16);
  std::map<std::string, const RequestRecord*> by_id;
  std::set<std::string> models;
  for (const auto& r : records) {
    INFO(r.request_id, " ", r.error);
    CHECK(r.outcome == "ok");
    models.insert(r.model);
    by_id[r.request_id] = &r;
  }
  CHECK(models.size() > 1);  // drawn per request, not one for all
  for (const auto& m : models)
    CHECK((m == "m1:7b" || m == "m2:7b" || m == "m3:7b"));

  // Each simulator saw exactly its users' requests (user i -> target i mod 2), for the model the
  // CSV says; its loads are what its counter says.
  std::uint64_t loads = 0;
  std::size_t seen_total = 0;
  const json summary = json::parse(read(out / "summary.json"));
  const json& backends = summary["upstream"]["backends"];
  REQUIRE(backends.size() == 2);
  Sim* sims[] = {&a, &b};
  for (std::size_t i = 0; i < 2; ++i) {
    const json stats = sims[i]->stats();
    std::size_t seen = 0;
    for (const auto& rec : stats["records"]) {
      const auto id = rec["headers"].value("x-request-id", "");
      REQUIRE(by_id.count(id));
      const RequestRecord& r = *by_id[id];
      CHECK(rec["model"] == r.model);
      const int user = std::stoi(r.user.substr(r.user.rfind('-') + 1)) - 1;  // "g-1" -> 0
      CHECK(user % 2 == int(i));
      ++seen;
    }
    seen_total += seen;
    CHECK(backends[i]["records"] == seen);
    CHECK(backends[i]["target"] == sims[i]->url());
    CHECK(backends[i]["model_loads"] == stats["loads"]);
    CHECK(backends[i]["load_s"].get<double>() ==
          doctest::Approx(double(stats["load_ns_total"].get<std::int64_t>()) / 1e9));
    loads += stats["loads"].get<std::uint64_t>();
  }
  CHECK(seen_total == 16);
  CHECK(loads > 0);  // three models through one resident place each: some loads
  CHECK(summary["model_loads"] == loads);
  CHECK(summary["upstream"]["model_loads"] == loads);
  CHECK(summary["upstream"]["records"] == 16);
  CHECK(summary["upstream"]["load_s"].get<double>() ==
        doctest::Approx(2.0 * double(loads)).epsilon(0.05));
  // Output tokens/s: every token over the span.
  CHECK(summary["tokens_per_s"].get<double>() ==
        doctest::Approx(16.0 * 8 / summary["span_s"].get<double>()).epsilon(1e-6));
  CHECK(summary["target"] == a.url() + "," + b.url());
  // The fleet table: two backends, loads per backend.
  const std::string md = read(out / "summary.md");
  CHECK(md.find("| model loads |") != std::string::npos);
  CHECK(md.find("| direct | 16 | 0 |") != std::string::npos);

  // A target on the loads, checked by report.
  std::string scenario = read(dir.path / "fleet.json");
  scenario.replace(scenario.rfind('}'), 1, R"(, "targets": [
      {"name": "loads", "run": "direct", "metric": "model_loads", "max": 1000},
      {"name": "tokens", "run": "direct", "metric": "tokens_per_s", "min": 0.001}]})");
  write(dir.path / "targets.json", scenario);
  std::string output;
  CHECK(bench({"report", "--out", (dir.path / "cmp").string(), "--scenario",
               (dir.path / "targets.json").string(), "--fail-on-missed", out.string()},
              &output) == 0);
  CHECK(output.find("| loads | **met** | direct " + std::to_string(loads)) != std::string::npos);
  CHECK(output.find("| tokens | **met** |") != std::string::npos);
}

TEST_CASE(
    "fleet: the scenario's simulators as flags; simulators at different time scales refused") {
  TempDir dir;
  write(dir.path / "f.json", R"({"name": "f", "prompts": {"a": ["x"]},
    "models": [{"name": "m1", "weight": 2}, {"name": "m2"}],
    "groups": [{"name": "g", "tier": "a"}],
    "fleet": {"parallel": 2, "max_loaded": 1, "load_time": "3s", "backends": [
      {"name": "gpu-a", "models": ["m1", "m2"]},
      {"name": "gpu-b", "models": ["m2", "m1"], "decode_rate_factor": 0.5}]}})");
  std::string output;
  REQUIRE(bench({"fleet", (dir.path / "f.json").string()}, &output) == 0);
  // (output() frames stdout and stderr)
  CHECK(output.find("---\ngpu-a --parallel 2 --max-loaded 1 --load-time 3s --keep-alive 5m "
                    "--decode-rate 60 --models m1,m2\n"
                    "gpu-b --parallel 2 --max-loaded 1 --load-time 3s --keep-alive 5m "
                    "--decode-rate 30 --models m2,m1\n---") != std::string::npos);
  write(dir.path / "plain.json", R"({"name": "p", "prompts": {"a": ["x"]},
    "groups": [{"name": "g", "tier": "a"}]})");
  REQUIRE(bench({"fleet", (dir.path / "plain.json").string()}, &output) == 0);
  CHECK(output.find("--parallel") == std::string::npos);  // no fleet, no lines

  Sim fast({}, 50), slow({}, 20);
  CHECK(bench({"run", "--scenario", (dir.path / "plain.json").string(), "--target", fast.url(),
               "--sim-stats", fast.url(), "--sim-stats", slow.url(), "--out",
               (dir.path / "o").string(), "--no-progress"},
              &output) == 2);
  CHECK(output.find("different time scales") != std::string::npos);
}

#ifdef SLUICE_PATH
TEST_CASE("through sluice: queue times and workloads are recorded; paid goes first") {
  Sim sim;
  TempDir dir;
  ChildProcess proxy(
      SLUICE_PATH, {"--config", std::string(SLUICE_SOURCE_DIR) + "/config/experiment/after.json",
                    "--listen", "127.0.0.1:0", "--upstream", sim.url(), "--max-concurrency", "2"});
  const auto port = proxy.wait_for_port();
  write(dir.path / "tiers.json", R"({
    "name": "tiers", "seed": 5,
    "prompts": {"p": ["Summarise this ticket in one line.", "What is a mutex?"]},
    "num_predict": {"distribution": "uniform", "min": 40, "max": 60},
    "groups": [
      {"name": "paid", "tier": "paid", "prompts": "p", "users": 2, "requests_per_user": 4},
      {"name": "open-source", "tier": "open-source", "prompts": "p", "users": 3,
       "requests_per_user": 4}
    ]
  })");
  const fs::path out = dir.path / "run";
  REQUIRE(bench({"run", "--scenario", (dir.path / "tiers.json").string(), "--target",
                 "http://127.0.0.1:" + std::to_string(port), "--sim-stats", sim.url(), "--label",
                 "after", "--out", out.string(), "--no-progress"}) == 0);
  const auto records = parse_csv(read(out / "requests.csv"));
  REQUIRE(records.size() == 20);
  std::vector<double> paid, free;
  for (const auto& r : records) {
    INFO(r.request_id, " ", r.error);
    CHECK(r.outcome == "ok");
    CHECK(r.workload == r.tier);  // X-Sluice-Workload: the config's workload names
    REQUIRE(r.queue_s);           // X-Sluice-Queue-Ms, scaled to simulated seconds
    CHECK(*r.queue_s >= 0);
    CHECK(*r.queue_s <= *r.latency_s);
    (r.tier == "paid" ? paid : free).push_back(*r.latency_s);
  }
  // Weights 8:1: the 8 paid requests are through long before most open-source ones.
  CHECK(*percentile(paid, 100) < *percentile(free, 90));
  const json summary = json::parse(read(out / "summary.json"));
  CHECK(summary["upstream"]["records"] == 20);
  CHECK(summary["upstream"]["peak_active"] == 1);  // the simulator runs one at a time
  const Summary again = summarize(records, {});
  for (const auto& t : summary["tiers"]) {
    const auto* s = again.find("tier", t["name"].get<std::string>());
    REQUIRE(s);
    check_subject(t, *s);
    check_distribution(t["queue_s"], s->queue);
  }
}

TEST_CASE(
    "through sluice with auto: --sim-config-at changes the simulator, --watch-state the limit") {
  Sim sim({"--wall-durations"});
  TempDir dir;
  write(dir.path / "sluice.json", R"({ "admin_listen": "127.0.0.1:0",
    "upstream": { "url": ")" + sim.url() +
                                      R"(", "max_concurrency": "auto" },
    "log": { "level": "info", "access_log": false } })");
  ChildProcess proxy(SLUICE_PATH,
                     {"--config", (dir.path / "sluice.json").string(), "--listen", "127.0.0.1:0"});
  const auto port = proxy.wait_for_port();
  const auto admin = proxy.wait_for_port("admin listening on http://127.0.0.1:");
  write(dir.path / "live.json", R"({
    "name": "live", "seed": 5,
    "prompts": {"p": ["Summarise this ticket in one line.", "What is a mutex?"]},
    "num_predict": {"distribution": "uniform", "min": 20, "max": 30},
    "groups": [{"name": "users", "tier": "free", "prompts": "p", "users": 3,
                "requests_per_user": 6, "arrival": {"mode": "closed_loop", "think_time_s": 0}}]
  })");
  const fs::path out = dir.path / "run";
  REQUIRE(bench({"run", "--scenario", (dir.path / "live.json").string(), "--target",
                 "http://127.0.0.1:" + std::to_string(port), "--sim-stats", sim.url(),
                 "--watch-state", "http://127.0.0.1:" + std::to_string(admin), "--sim-config-at",
                 R"(0.5={"parallel":3})", "--label", "auto", "--out", out.string(),
                 "--no-progress"}) == 0);
  // The change reached the simulator, and the run says when it was applied.
  auto config = http_request(sim.port, HttpRequest{"GET", "/sim/config", {}, ""});
  REQUIRE(config.status == 200);
  CHECK(json::parse(config.body)["parallel"] == 3);
  const json summary = json::parse(read(out / "summary.json"));
  const std::string note = summary["notes"].value("watch_0", "");
  CHECK(note.find("live change at ") == 0);
  CHECK(note.find(R"({"parallel":3})") != std::string::npos);
  CHECK(note.find("failed") == std::string::npos);
  // The limit in force from the first poll on: "auto" starts at its min, 1.
  const auto limits = parse_limits_csv(read(out / "limits.csv"));
  REQUIRE_FALSE(limits.empty());
  CHECK(limits.front().limit == 1);
  CHECK(limits.front().t_s < 1.0);
  for (std::size_t i = 1; i < limits.size(); ++i) {
    CHECK(limits[i].t_s >= limits[i - 1].t_s);
    CHECK(limits[i].limit != limits[i - 1].limit);  // only changes are recorded
  }
}
#endif
