// Adaptive concurrency end to end (issue 13): an in-process sluice with "max_concurrency":
// "auto" in front of a sluice-sim whose parallelism it is not told, under a standing backlog.
// The limit climbs to the simulator's --parallel, and follows it down when POST /sim/config
// lowers it live; /admin/state and the gauge show it. Bounded: a few seconds at --time-scale 4
// with durations in wall time (--wall-durations), so sluice's own clock and Ollama's timings
// agree.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "proxy_harness.hpp"
#include "sluice/app/state_json.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A GPU whose streams do not slow each other (decode scaling 1 up to 8): only its slots limit
// it, so the right limit is exactly --parallel.
std::vector<std::string> sim_args(int parallel) {
  return {"--parallel",       std::to_string(parallel), "--time-scale", "4",
          "--wall-durations", "--decode-scaling",       "1:1,8:1"};
}

std::string auto_config(const Simulator& sim) {
  return R"({"admin_listen": "",
    "upstream": {"url": ")" +
         sim.url() + R"(", "max_concurrency": "auto", "auto_concurrency": {"max": 8}},
    "scheduler": {"max_queue": 1000}})";
}

// Clients that keep the queue full: each sends one request after another until stopped.
class Load {
 public:
  Load(std::uint16_t port, int clients) {
    for (int i = 0; i < clients; ++i) {
      threads_.emplace_back([this, port, i] {
        const std::string user = "u" + std::to_string(i);
        while (!stop_) {
          // Lengths differ per client, so completions do not all fall together.
          std::string body = R"({"model":"mistral","prompt":"tell me","stream":false,)";
          body += R"("options":{"num_predict":)";
          body += std::to_string(40 + 5 * i);
          body += "}}";
          HttpResponse r =
              http_request(port, post_json("/api/generate", body, {{"X-User-Id", user}}));
          if (r.status == 200)
            ++ok_;
          else
            ++failed_;
        }
      });
    }
  }
  ~Load() {
    stop_ = true;
    for (auto& t : threads_)
      t.join();
  }
  int ok() const { return ok_; }
  int failed() const { return failed_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::vector<std::thread> threads_;
};

// What the controller saw, for a failure message.
std::string describe(const sluice::core::Snapshot& snap) {
  if (snap.backends.empty() || !snap.backends[0].auto_concurrency) return "no controller";
  const auto& v = *snap.backends[0].auto_concurrency;
  std::string out = "limit " + std::to_string(v.limit) + ", last change: " + v.last_change;
  for (const auto& l : v.levels) {
    out += "\n  level " + std::to_string(l.in_flight) + ": " + std::to_string(l.samples) +
           " samples, " + std::to_string(l.waited) + " waited, p50 wait " +
           std::to_string(l.median_wait_ms) + " ms, " + std::to_string(l.tokens_per_second) +
           " tokens/s";
  }
  return out;
}

std::int64_t limit(const sluice::core::Snapshot& snap) {
  return snap.backends.empty() ? 0 : snap.backends[0].max_concurrency;
}

}  // namespace

TEST_CASE("adaptive: the limit finds the backend's parallelism and follows a live change") {
  Simulator sim(sim_args(4));
  ProxyUnderTest proxy(auto_config(sim));
  CHECK(limit(proxy.snapshot()) == 1);  // starts at auto_concurrency.min
  Load load(proxy.port(), 12);

  // Up to --parallel 4 (probes of 5 make requests wait inside the simulator, and come back).
  const bool reached = proxy.wait_for([](const auto& snap) { return limit(snap) == 4; }, 20s);
  INFO(describe(proxy.snapshot()));
  INFO("ok " << load.ok() << ", failed " << load.failed());
  REQUIRE(reached);
  // Steady: within one of 4 for a while.
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(100ms);
    const std::int64_t now = limit(proxy.snapshot());
    CHECK(now >= 3);
    CHECK(now <= 5);
  }
  // Visible: /admin/state's backends[].concurrency_limit and the gauge.
  const auto snap = proxy.snapshot();
  sluice::config::Config config = *sluice::config::parse_config(auto_config(sim)).config;
  const auto state = nlohmann::json::parse(sluice::app::state_json(snap, config, {}));
  CHECK(state["backends"][0]["concurrency_limit"] == snap.backends[0].max_concurrency);
  CHECK(state["backends"][0]["auto_concurrency"]["max"] == 8);
  CHECK(proxy.scrape().find("sluice_concurrency_limit{backend=\"127.0.0.1:" +
                            std::to_string(sim.port()) + "\"}") != std::string::npos);

  // The backend's capacity halves under load: the limit follows it down, quickly.
  http_request(sim.port(), post_json("/sim/config", R"({"parallel": 2})"));
  const auto changed = std::chrono::steady_clock::now();
  REQUIRE(proxy.wait_for([](const auto& snap) { return limit(snap) <= 2; }, 10s));
  const auto took = std::chrono::steady_clock::now() - changed;
  MESSAGE("limit at 2 after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms");
  // Nothing was cancelled for it: every request so far succeeded.
  CHECK(load.failed() == 0);
  CHECK(load.ok() > 20);
  // Sluice's backlog waits in its own queue, not in the simulator's.
  std::this_thread::sleep_for(1s);
  const nlohmann::json stats = sim.stats();
  CHECK(stats["waiting"].get<int>() <= 1);
  CHECK(limit(proxy.snapshot()) >= 1);
  CHECK(limit(proxy.snapshot()) <= 3);
}
