// The operator's view of a fleet end to end: an in-process sluice in front of two sluice-sim
// processes. After real requests, the scrape has per-backend request counts by outcome, a model
// load when a non-resident model was loaded (and none for a warm one), the in-flight gauge of a
// backend during a slow request, and sluice_backend_up 0 for a killed backend; /admin/state's
// document (state_json on the proxy's snapshot, as the admin server builds it) shows the models
// resident on a backend as its /api/ps does, and the health of the killed one.
#include <doctest/doctest.h>

#include <future>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "proxy_harness.hpp"
#include "sluice/app/state_json.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string fleet_config(const Simulator& a, const Simulator& b) {
  return R"({"admin_listen": "",
    "upstreams": [
      {"name": "gpu-a", "url": ")" +
         a.url() + R"(", "max_concurrency": 1},
      {"name": "gpu-b", "url": ")" +
         b.url() + R"(", "max_concurrency": 2}],
    "fleet": {"health_interval": "100ms", "health_timeout": "80ms"},
    "scheduler": {"max_queue": 100}})";
}

HttpRequest generate(const std::string& model, int tokens = 3, std::vector<Header> headers = {}) {
  return HttpRequest{.method = "POST",
                     .target = "/api/generate",
                     .headers = std::move(headers),
                     .body = R"({"model":")" + model +
                             R"(","prompt":"hi","stream":false,"options":{"num_predict":)" +
                             std::to_string(tokens) + "}}"};
}

// The value of the sample whose name-and-labels part is exactly `key`; nullopt when absent.
std::optional<double> sample(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " ", 0) == 0) return std::stod(line.substr(key.size() + 1));
  }
  return std::nullopt;
}

// Requests are counted when their session records them, just after the client got the answer:
// poll the scrape until `key` reads `value` (bounded).
bool scrape_reaches(ProxyUnderTest& proxy, const std::string& key, double value) {
  const auto until = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    if (sample(proxy.scrape(), key) == value) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
}

nlohmann::json state(ProxyUnderTest& proxy) {
  return nlohmann::json::parse(proxy.on_io([&proxy] {
    return sluice::app::state_json(proxy.proxy().snapshot(), *proxy.proxy().config(), {});
  }));
}

std::set<std::string> ps_names(const Simulator& sim) {
  nlohmann::json ps =
      nlohmann::json::parse(http_request(sim.port(), HttpRequest{.target = "/api/ps"}).body);
  std::set<std::string> names;
  for (const auto& m : ps["models"])
    names.insert(m["name"].get<std::string>());
  return names;
}

std::set<std::string> loaded_names(const nlohmann::json& backend) {
  std::set<std::string> names;
  for (const auto& m : backend["loaded"])
    names.insert(m["model"].get<std::string>());
  return names;
}

// Polls /admin/state until backend `index` shows what `sim`'s /api/ps says is resident.
bool loaded_matches_ps(ProxyUnderTest& proxy, std::size_t index, const Simulator& sim) {
  const auto until = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    const std::set<std::string> ps = ps_names(sim);
    if (!ps.empty() && loaded_names(state(proxy)["backends"][index]) == ps) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
}

const char* const kLoadsAlpha =
    R"(sluice_backend_model_loads_total{backend="gpu-a",model="alpha:latest"})";
const char* const kLoadsBeta =
    R"(sluice_backend_model_loads_total{backend="gpu-a",model="beta:latest"})";

}  // namespace

TEST_CASE("fleet admin: per-backend metrics and /admin/state backends follow real requests") {
  // gpu-a holds one of its two models at a time and takes 2 s (simulated) to load the other.
  Simulator a(
      {"--models", "alpha,beta", "--max-loaded", "1", "--load-time", "2s", "--time-scale", "50"});
  std::optional<Simulator> b(std::vector<std::string>{"--models", "gamma"});
  ProxyUnderTest proxy(fleet_config(a, *b));
  REQUIRE(proxy.wait_for([](const sluice::core::Snapshot& snap) {
    return snap.backends.size() == 2 && snap.backends[0].up && snap.backends[1].up &&
           snap.backends[0].catalog_known && snap.backends[1].catalog_known;
  }));

  nlohmann::json doc = state(proxy);
  CHECK(doc["fleet"] == true);
  CHECK(doc["upstream"].is_null());
  REQUIRE(doc["backends"].size() == 2);
  CHECK(doc["backends"][0]["name"] == "gpu-a");
  CHECK(doc["backends"][0]["url"] == a.url());
  CHECK(doc["backends"][0]["max_concurrency"] == 1);
  CHECK(doc["backends"][0]["models"] == nlohmann::json::array({"alpha:latest", "beta:latest"}));
  CHECK(doc["backends"][0]["health"]["state"] == "up");
  CHECK(doc["backends"][1]["max_concurrency"] == 2);
  CHECK(loaded_matches_ps(proxy, 0, a));  // alpha, the first of --models
  CHECK(ps_names(a) == std::set<std::string>{"alpha:latest"});

  std::string text = proxy.scrape();
  CHECK(sample(text, R"(sluice_backend_up{backend="gpu-a"})") == 1);
  CHECK(sample(text, R"(sluice_backend_up{backend="gpu-b"})") == 1);
  CHECK(sample(text, R"(sluice_backend_requests_total{backend="gpu-a",outcome="ok"})") == 0);
  CHECK(sample(text, R"(sluice_backend_faster_slot_waits_total{backend="gpu-b"})") == 0);
  CHECK(doc["backends"][1]["faster_slot_waits"] == 0);

  // alpha is warm on gpu-a: served, no load. beta is not: gpu-a loads it (evicting alpha).
  HttpResponse warm = http_request(proxy.port(), generate("alpha"));
  CHECK(warm.status == 200);
  CHECK(warm.header("X-Sluice-Backend") == "gpu-a");
  HttpResponse cold = http_request(proxy.port(), generate("beta"));
  CHECK(cold.status == 200);
  CHECK(cold.header("X-Sluice-Backend") == "gpu-a");
  CHECK(nlohmann::json::parse(cold.body)["load_duration"].get<double>() >= 2e9);
  HttpResponse other = http_request(proxy.port(), generate("gamma"));
  CHECK(other.status == 200);
  CHECK(other.header("X-Sluice-Backend") == "gpu-b");
  HttpResponse failed =
      http_request(proxy.port(), generate("gamma", 3, {{"X-Sim-Fault", "error-500"}}));
  CHECK(failed.status == 500);

  CHECK(scrape_reaches(proxy, R"(sluice_backend_requests_total{backend="gpu-a",outcome="ok"})", 2));
  CHECK(scrape_reaches(proxy, R"(sluice_backend_requests_total{backend="gpu-b",outcome="ok"})", 1));
  CHECK(scrape_reaches(
      proxy, R"(sluice_backend_requests_total{backend="gpu-b",outcome="upstream_5xx"})", 1));
  CHECK(scrape_reaches(proxy, kLoadsBeta, 1));
  text = proxy.scrape();
  CHECK_FALSE(sample(text, kLoadsAlpha).has_value());  // warm: never loaded
  CHECK(sample(text, R"(sluice_backend_requests_total{backend="gpu-a",outcome="upstream_5xx"})") ==
        0);

  // /admin/state: beta is what gpu-a's /api/ps shows now, its load time was learned, the
  // requests were counted.
  CHECK(loaded_matches_ps(proxy, 0, a));
  CHECK(ps_names(a) == std::set<std::string>{"beta:latest"});
  doc = state(proxy);
  CHECK(doc["backends"][0]["load_time_ms"]["beta:latest"].get<double>() >= 2000);
  CHECK(doc["backends"][0]["requests"] == 2);
  CHECK(doc["backends"][1]["requests"] == 2);
  CHECK(doc["backends"][0]["tokens_per_second"].is_number());

  // A slow request on gpu-b (60 tokens at 60/s, real time) shows in its in-flight gauge.
  auto slow = std::async(std::launch::async, [port = proxy.port()] {
    return http_request(port, generate("gamma", 60));
  });
  CHECK(scrape_reaches(proxy, R"(sluice_backend_inflight{backend="gpu-b"})", 1));
  CHECK(sample(proxy.scrape(), R"(sluice_backend_inflight{backend="gpu-a"})") == 0);
  CHECK(state(proxy)["backends"][1]["in_flight"] == 1);
  CHECK(slow.get().status == 200);
  CHECK(scrape_reaches(proxy, R"(sluice_backend_inflight{backend="gpu-b"})", 0));

  // gpu-b is killed: its health check notices; up reads 0 and /admin/state says why.
  b.reset();
  REQUIRE(proxy.wait_for([](const sluice::core::Snapshot& snap) {
    return snap.backends.size() == 2 && !snap.backends[1].up;
  }));
  text = proxy.scrape();
  CHECK(sample(text, R"(sluice_backend_up{backend="gpu-b"})") == 0);
  CHECK(sample(text, R"(sluice_backend_up{backend="gpu-a"})") == 1);
  const nlohmann::json down = state(proxy)["backends"][1]["health"];
  CHECK(down["state"] == "down");
  CHECK_FALSE(down["reason"].get<std::string>().empty());
  CHECK(down["failed_checks"].get<int>() >= 1);
}

TEST_CASE("fleet admin: a single upstream is a fleet of one named by its host and port") {
  Simulator sim({"--time-scale", "50"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  HttpResponse r = http_request(proxy.port(), generate("mistral"));
  CHECK(r.status == 200);
  const std::string name = "127.0.0.1:" + std::to_string(sim.port());
  CHECK(r.header("X-Sluice-Backend") == name);
  CHECK(scrape_reaches(
      proxy, R"(sluice_backend_requests_total{backend=")" + name + R"(",outcome="ok"})", 1));
  CHECK(sample(proxy.scrape(), R"(sluice_backend_up{backend=")" + name + R"("})") == 1);
  const nlohmann::json doc = state(proxy);
  CHECK(doc["upstream"] == sim.url());
  CHECK(doc["fleet"] == false);
  REQUIRE(doc["backends"].size() == 1);
  CHECK(doc["backends"][0]["name"] == name);
  CHECK(doc["backends"][0]["url"] == sim.url());
  CHECK(doc["backends"][0]["health"].is_null());
  CHECK(doc["backends"][0]["requests"] == 1);
}
