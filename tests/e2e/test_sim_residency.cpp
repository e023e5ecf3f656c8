// End-to-end tests of sluice-sim as a fleet member: model residency (--max-loaded, --load-time,
// --keep-alive and the request's keep_alive; load_duration, /api/ps, load counts in /sim/stats)
// and live changes through /sim/config. The real binary on 127.0.0.1:0, with a fast simulated
// clock; times are asserted as lower bounds (timers never fire early) in simulated ns.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "child_process.hpp"
#include "http_client.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr std::int64_t kMs = 1'000'000;

struct Sim {
  explicit Sim(std::vector<std::string> args) : proc(SLUICE_SIM_PATH, with_defaults(args)) {
    port = proc.wait_for_port();
  }
  static std::vector<std::string> with_defaults(std::vector<std::string> args) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0", "--log-level", "warn"});
    return args;
  }
  json get(const std::string& target) {
    auto r = http_request(port, HttpRequest{"GET", target, {}, ""}, 5000ms);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  HttpResponse post(const std::string& target, const json& body) {
    return http_request(port, post_json(target, body.dump()), 10000ms);
  }
  // A whole (non-streamed) generate; returns its final object.
  json generate(const std::string& model, int num_predict, json extra = json::object()) {
    json body = {{"model", model},
                 {"prompt", "Why is the sky blue?"},
                 {"stream", false},
                 {"options", {{"num_predict", num_predict}}}};
    body.update(extra);
    auto r = post("/api/generate", body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  std::set<std::string> resident() {
    std::set<std::string> names;
    const json ps = get("/api/ps");
    for (const auto& m : ps["models"])
      names.insert(m["name"].get<std::string>());
    return names;
  }
  template <typename Pred>
  json wait_stats(Pred pred, milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    json s = get("/sim/stats");
    while (!pred(s) && Clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
      s = get("/sim/stats");
    }
    return s;
  }
  ChildProcess proc;
  std::uint16_t port = 0;
};

std::int64_t load_of(const json& final_object) {
  return final_object.value("load_duration", std::int64_t(0));
}

HttpRequest generate_request(const std::string& model, int num_predict, bool stream) {
  return post_json("/api/generate", json{{"model", model},
                                         {"prompt", "Tell me a story."},
                                         {"stream", stream},
                                         {"options", {{"num_predict", num_predict}}}}
                                        .dump());
}

}  // namespace

TEST_CASE("--max-loaded 2 --load-time 300ms: a load is reported, the LRU idle model is evicted") {
  Sim sim({"--models", "a,b,c", "--max-loaded", "2", "--load-time", "300ms", "--time-scale", "10"});
  using Names = std::set<std::string>;
  CHECK(sim.resident() == Names{"a:latest", "b:latest"});  // the first two start resident
  const auto ps = sim.get("/api/ps")["models"][0];
  for (const char* key : {"name", "model", "size", "digest", "details", "expires_at", "size_vram"})
    CHECK(ps.contains(key));

  const auto c = sim.generate("c", 3);
  CHECK(load_of(c) >= 300 * kMs);
  CHECK(load_of(c) < 2000 * kMs);
  CHECK(sim.resident() == Names{"b:latest", "c:latest"});  // a and b idle since start: a goes

  const auto b = sim.generate("b", 3);
  CHECK(load_of(b) < 300 * kMs);  // resident: only scheduling
  const auto a = sim.generate("a", 3);
  CHECK(load_of(a) >= 300 * kMs);
  CHECK(sim.resident() == Names{"a:latest", "b:latest"});  // c was used before b

  const auto stats = sim.get("/sim/stats");
  CHECK(stats["max_loaded"] == 2);
  CHECK(stats["loads"] == 2);
  CHECK(stats["load_ns_total"] == 600 * kMs);
  CHECK(stats["models"]["a:latest"]["loads"] == 1);
  CHECK(stats["models"]["b:latest"]["loads"] == 0);
  CHECK(stats["models"]["c:latest"]["loads"] == 1);
  CHECK(stats["models"]["c:latest"]["state"] == "unloaded");
  int triggered = 0;
  for (const auto& r : stats["records"])
    triggered += r["triggered_load"].get<bool>();
  CHECK(triggered == 2);

  // /sim/reset zeroes the load counters too.
  REQUIRE(sim.post("/sim/reset", json::object()).status == 200);
  CHECK(sim.get("/sim/stats")["loads"] == 0);
}

TEST_CASE("a request waits while every resident model is busy; one load serves all who wait") {
  Sim sim({"--models", "a,b,c", "--max-loaded", "2", "--load-time", "300ms", "--time-scale", "10",
           "--parallel", "2"});
  // a and b generate (streams: the head comes with the first token, so both hold their model).
  HttpClient busy_a("127.0.0.1", sim.port), busy_b("127.0.0.1", sim.port);
  busy_a.send(generate_request("a", 60, true));
  busy_b.send(generate_request("b", 90, true));
  REQUIRE(busy_a.read_head(5000ms) == ReadStatus::ok);
  REQUIRE(busy_b.read_head(5000ms) == ReadStatus::ok);
  // Two requests for c: the first waits for a place, the second queues behind it.
  HttpClient first("127.0.0.1", sim.port), second("127.0.0.1", sim.port);
  first.send(generate_request("c", 2, false));
  second.send(generate_request("c", 2, false));
  const auto mid = sim.wait_stats([](const json& s) { return s["waiting_for_model"] == 2; });
  CHECK(mid["waiting_for_model"] == 2);
  CHECK(mid["models"]["c:latest"]["state"] == "unloaded");
  for (auto* c : {&busy_a, &busy_b, &first, &second})
    REQUIRE(c->read_to_end(10000ms) == ReadStatus::end);

  const auto stats = sim.get("/sim/stats");
  CHECK(stats["models"]["c:latest"]["loads"] == 1);  // not loaded twice
  std::map<std::string, std::vector<json>> by_model;
  for (const auto& r : stats["records"])
    by_model[r["model"].get<std::string>()].push_back(r);
  REQUIRE(by_model["c:latest"].size() == 2);
  const auto& a_rec = by_model["a:latest"].at(0);
  const auto& c1 = by_model["c:latest"][0];
  const auto& c2 = by_model["c:latest"][1];
  // a finished first (60 tokens against 90) and was evicted for c, which then loaded 300 ms.
  const auto a_end = a_rec["end_ns"].get<std::int64_t>();
  CHECK(c1["arrival_ns"].get<std::int64_t>() < a_end);
  CHECK(c1["model_ready_ns"].get<std::int64_t>() >= a_end + 300 * kMs);
  CHECK(c1["triggered_load"] == true);
  CHECK(c1["load_duration_ns"].get<std::int64_t>() >=
        a_end + 300 * kMs - c1["arrival_ns"].get<std::int64_t>());
  CHECK(c2["triggered_load"] == false);
  CHECK(c2["model_ready_ns"] == c1["model_ready_ns"]);
  CHECK(stats["models"]["a:latest"]["state"] == "unloaded");
  CHECK(stats["models"]["b:latest"]["state"] == "resident");
}

TEST_CASE("keep-alive: --keep-alive expires idle models; keep_alive 0 unloads, negative keeps") {
  Sim sim({"--models", "a,b", "--keep-alive", "2s", "--time-scale", "10"});
  // Idle since start, both leave after 2 simulated seconds (0.2 s real).
  const auto deadline = Clock::now() + 5000ms;
  while (!sim.resident().empty() && Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(sim.resident().empty());

  // keep_alive -1: kept forever (Ollama shows an expiry ~292 years out).
  sim.generate("a", 2, {{"keep_alive", -1}});
  const auto ps = sim.get("/api/ps")["models"];
  REQUIRE(ps.size() == 1);
  CHECK(ps[0]["expires_at"].get<std::string>().substr(0, 2) == "23");
  // keep_alive "0": unloaded right after the answer.
  sim.generate("b", 2, {{"keep_alive", "0"}});
  CHECK(sim.resident() == std::set<std::string>{"a:latest"});
  // An empty prompt loads (done_reason "load"); with keep_alive 0 it unloads.
  auto loaded = sim.post("/api/generate", {{"model", "b"}, {"stream", false}});
  CHECK(json::parse(loaded.body)["done_reason"] == "load");
  CHECK(sim.resident().count("b:latest") == 1);
  auto unloaded = sim.post("/api/generate", {{"model", "a"}, {"keep_alive", 0}});
  CHECK(json::parse(unloaded.body)["done_reason"] == "unload");
  CHECK(sim.resident().count("a:latest") == 0);
  // A keep_alive that is not a duration is a 400 naming the problem, as in Ollama.
  auto bad = sim.post("/api/generate", {{"model", "a"}, {"prompt", "x"}, {"keep_alive", "soon"}});
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"] == "time: invalid duration \"soon\"");
}

TEST_CASE("/sim/config changes parallel and decode_rate while requests run") {
  Sim sim({"--parallel", "1", "--time-scale", "10"});
  auto cfg = sim.get("/sim/config");
  CHECK(cfg["parallel"] == 1);
  CHECK(cfg["decode_rate"] == 60.0);

  auto bad = sim.post("/sim/config", {{"parallel", 0}});
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"].get<std::string>().find("\"parallel\"") !=
        std::string::npos);
  auto unknown = sim.post("/sim/config", {{"parallel", 2}, {"turbo", true}});
  CHECK(unknown.status == 400);
  CHECK(json::parse(unknown.body)["error"].get<std::string>().find("unknown field \"turbo\"") !=
        std::string::npos);
  CHECK(sim.get("/sim/config")["parallel"] == 1);  // a rejected change changes nothing

  // One long stream holds the only slot; a second request waits for it.
  HttpClient running("127.0.0.1", sim.port), waiting("127.0.0.1", sim.port);
  running.send(generate_request("mistral", 200, true));  // ~3.3 s simulated
  REQUIRE(running.read_head(5000ms) == ReadStatus::ok);
  waiting.send(generate_request("mistral", 2, false));
  sim.wait_stats([](const json& s) { return s["waiting"] == 1; });
  auto changed = sim.post("/sim/config", {{"parallel", 2}, {"decode_rate", 30}});
  REQUIRE(changed.status == 200);
  CHECK(json::parse(changed.body)["parallel"] == 2);
  // More slots go to waiters at once: the waiting request finishes while the long one runs.
  REQUIRE(waiting.read_to_end(5000ms) == ReadStatus::end);
  auto s = sim.get("/sim/stats");
  CHECK(s["parallel"] == 2);
  CHECK(s["records"][0]["end_ns"].is_null());
  REQUIRE(running.read_to_end(10000ms) == ReadStatus::end);

  // The new decode rate: 30 tokens alone at 30 tokens/s take at least a simulated second.
  const auto solo = sim.generate("mistral", 30);
  CHECK(solo["eval_duration"].get<std::int64_t>() >= 29 * 1000 * kMs / 30);
  CHECK(sim.get("/sim/config")["decode_rate"] == 30.0);
}
