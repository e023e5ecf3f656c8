// Reloading a fleet, end to end: an in-process sluice (net::Proxy::reconfigure, what SIGHUP and
// POST /admin/reload call) in front of three sluice-sim processes. A backend added by a reload
// takes the parked requests for its model at once, in fair order; a removed backend's stream
// finishes normally while new requests go elsewhere, and the backend shows as retired, then is
// gone; a backend resized from 1 to 3 slots admits its parked requests; a reload that moves a
// backend to another url under the same name is refused and changes nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "generate_requests.hpp"
#include "hardening_support.hpp"
#include "proxy_harness.hpp"

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

struct BackendSetting {
  std::string name;
  std::string url;
  int max_concurrency = 1;
};

/// A fleet of `backends`, fast health checks, a paid and a free workload matched on X-Tier.
std::string fleet_config(const std::vector<BackendSetting>& backends) {
  std::string text = R"({"admin_listen": "", "upstreams": [)";
  for (std::size_t i = 0; i < backends.size(); ++i) {
    if (i > 0) text.append(", ");
    text.append(R"({"name": ")");
    text.append(backends[i].name);
    text.append(R"(", "url": ")");
    text.append(backends[i].url);
    text.append(R"(", "max_concurrency": )");
    text.append(std::to_string(backends[i].max_concurrency));
    text.append("}");
  }
  text.append(R"(],
    "fleet": {"health_interval": "100ms", "health_timeout": "100ms"},
    "scheduler": {"max_queue": 100, "workloads": [
      {"name": "paid", "match": {"tier": "paid"}, "priority": 8},
      {"name": "free", "match": {"tier": "free"}, "priority": 1}]}})");
  return text;
}

std::shared_ptr<const config::Config> load(const std::string& text) {
  auto parsed = config::parse_config(text, "reload");
  if (!parsed.ok()) throw std::runtime_error("bad test config: " + parsed.error_text());
  parsed.config->listen = config::HostPort{"127.0.0.1", 0};
  return std::make_shared<const config::Config>(std::move(*parsed.config));
}

std::string reload(ProxyUnderTest& proxy, const std::string& text) {
  auto next = load(text);
  return proxy.on_io([&] { return proxy.proxy().reconfigure(next); });
}

/// POST /api/generate for `model`, X-Request-Id `id`, X-Tier `tier`, X-User-Id `user`.
HttpRequest generate(const std::string& model, const std::string& id, int num_predict, bool stream,
                     const std::string& tier = "free", const std::string& user = "u") {
  nlohmann::json body = {{"model", model},
                         {"prompt", "reload"},
                         {"stream", stream},
                         {"options", {{"num_predict", num_predict}}}};
  return post_json("/api/generate", body.dump(),
                   {{"X-Request-Id", id}, {"X-Tier", tier}, {"X-User-Id", user}});
}

std::future<HttpResponse> send_async(std::uint16_t port, HttpRequest request) {
  return std::async(std::launch::async,
                    [port, request] { return http_request(port, request, 15000ms); });
}

const core::BackendView* find_backend(const core::Snapshot&&, const std::string&) = delete;
const core::BackendView* find_backend(const core::Snapshot& snap, const std::string& name) {
  for (const core::BackendView& b : snap.backends) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

/// Every backend in `names` is configured, up and has its catalog.
auto ready(std::vector<std::string> names) {
  return [names = std::move(names)](const core::Snapshot& snap) {
    for (const std::string& name : names) {
      const core::BackendView* b = find_backend(snap, name);
      if (!b || !b->up || !b->catalog_known) return false;
    }
    return true;
  };
}

/// The X-Request-Id of the requests a simulator received, in the order it started them.
std::vector<std::string> started_ids(const Simulator& sim) {
  nlohmann::json records = sim.stats()["records"];
  std::vector<std::pair<std::int64_t, std::string>> starts;
  for (const auto& r : records) {
    if (!r["headers"].contains("x-request-id")) continue;
    starts.emplace_back(r["arrival_ns"].get<std::int64_t>(),
                        r["headers"]["x-request-id"].get<std::string>());
  }
  std::sort(starts.begin(), starts.end());
  std::vector<std::string> ids;
  for (auto& [at, id] : starts)
    ids.push_back(std::move(id));
  return ids;
}

/// The sim options every backend runs with: model `m` (and `other` on gpu-c), 10x real time.
std::vector<std::string> sim_args(const std::string& models, int parallel = 1) {
  return {"--models",      models, "--time-scale", "10",
          "--decode-rate", "50",   "--parallel",   std::to_string(parallel)};
}

}  // namespace

TEST_CASE("fleet reload: a backend added by a reload takes the parked requests, in fair order") {
  Simulator a(sim_args("m"));
  Simulator b(sim_args("m"));
  Simulator c(sim_args("other"));
  const std::vector<BackendSetting> before = {{"gpu-a", a.url(), 1}, {"gpu-c", c.url(), 1}};
  ProxyUnderTest proxy(fleet_config(before));
  REQUIRE(proxy.wait_for(ready({"gpu-a", "gpu-c"})));

  // A slow stream holds gpu-a's only slot (the simulator caps it at 4096 tokens: at 50/s and
  // 10x real time, about 8 s).
  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("m", "blocker", 20000, true));
  REQUIRE(blocker.read_head(3000ms) == ReadStatus::ok);
  CHECK(blocker.response().header("X-Sluice-Backend") == "gpu-a");

  // Three free requests park, then a paid one: fair order runs the paid one first.
  std::vector<std::future<HttpResponse>> parked;
  for (int i = 0; i < 3; ++i) {
    std::string id = "free-";
    id.append(std::to_string(i));
    parked.push_back(send_async(proxy.port(), generate("m", id, 3, false, "free", "f")));
    const std::int64_t expected = i + 1;
    REQUIRE(proxy.wait_for([&](const core::Snapshot& s) { return s.parked == expected; }));
  }
  parked.push_back(send_async(proxy.port(), generate("m", "paid-0", 3, false, "paid", "p")));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 4; }));
  // gpu-c (another model) is no place for them.
  std::this_thread::sleep_for(200ms);
  CHECK(proxy.snapshot().parked == 4);

  std::vector<BackendSetting> after = before;
  after.push_back({"gpu-b", b.url(), 1});
  const auto reloaded_at = Clock::now();
  REQUIRE(reload(proxy, fleet_config(after)) == "");

  for (auto& f : parked) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    HttpResponse r = f.get();
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-b");
  }
  // At once: long before the blocker could have freed gpu-a (before the fix in aim_at(), they
  // were sent to gpu-a's address and waited there behind it).
  CHECK(elapsed_ms(reloaded_at) < 5000);
  // The blocker, still on gpu-a (the last slot on gpu-b is released just after its client got
  // the last byte).
  CHECK(proxy.wait_for([](const core::Snapshot& snap) { return snap.in_flight == 1; }));
  CHECK(started_ids(b) == std::vector<std::string>{"paid-0", "free-0", "free-1", "free-2"});
  CHECK(started_ids(c).empty());

  blocker.abort();
  expect_idle(proxy);
}

TEST_CASE("fleet reload: a removed backend's stream finishes, then the backend is gone") {
  Simulator a(sim_args("m"));
  Simulator b(sim_args("m"));
  Simulator c(sim_args("other"));
  const std::vector<BackendSetting> all = {
      {"gpu-a", a.url(), 1}, {"gpu-b", b.url(), 1}, {"gpu-c", c.url(), 1}};
  ProxyUnderTest proxy(fleet_config(all));
  REQUIRE(proxy.wait_for(ready({"gpu-a", "gpu-b", "gpu-c"})));

  // gpu-a is taken by a blocker, so the stream goes to gpu-b; then the blocker leaves.
  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("m", "blocker", 20000, true));
  REQUIRE(blocker.read_head(3000ms) == ReadStatus::ok);
  REQUIRE(blocker.response().header("X-Sluice-Backend") == "gpu-a");
  // 500 tokens at 50/s, 10x real time: about 1 s of wall time.
  HttpClient stream("127.0.0.1", proxy.port());
  stream.send(generate("m", "stream", 500, true));
  REQUIRE(stream.read_head(3000ms) == ReadStatus::ok);
  REQUIRE(stream.response().header("X-Sluice-Backend") == "gpu-b");
  blocker.abort();
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));

  REQUIRE(reload(proxy, fleet_config({all[0], all[2]})) == "");
  const core::Snapshot during = proxy.snapshot();
  const core::BackendView* retired = find_backend(during, "gpu-b");
  REQUIRE(retired != nullptr);
  CHECK(retired->retired);
  CHECK(retired->in_flight == 1);

  // New requests go to gpu-a while the stream runs on.
  HttpResponse next = http_request(proxy.port(), generate("m", "next", 3, false));
  CHECK(next.status == 200);
  CHECK(next.header("X-Sluice-Backend") == "gpu-a");

  REQUIRE(stream.read_to_end(10000ms) == ReadStatus::end);
  const std::string& body = stream.response().body;
  CHECK(body.find("\"error\"") == std::string::npos);
  std::vector<nlohmann::json> lines;
  for (std::size_t pos = 0; pos < body.size();) {
    std::size_t nl = body.find('\n', pos);
    if (nl == std::string::npos) nl = body.size();
    if (nl > pos) lines.push_back(nlohmann::json::parse(body.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back()["done"] == true);
  CHECK(lines.back()["eval_count"] == 500);

  CHECK(proxy.wait_for([](const core::Snapshot& s) {
    return s.backends.size() == 2 && find_backend(s, "gpu-b") == nullptr;
  }));
  CHECK(b.stats()["records"].size() == 1);
  expect_idle(proxy);
}

TEST_CASE("fleet reload: resizing a backend from 1 to 3 slots admits its parked requests") {
  Simulator a(sim_args("m", 4));
  Simulator b(sim_args("other"));
  Simulator c(sim_args("other"));
  std::vector<BackendSetting> fleet = {
      {"gpu-a", a.url(), 1}, {"gpu-b", b.url(), 1}, {"gpu-c", c.url(), 1}};
  ProxyUnderTest proxy(fleet_config(fleet));
  REQUIRE(proxy.wait_for(ready({"gpu-a", "gpu-b", "gpu-c"})));

  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("m", "blocker", 20000, true));
  REQUIRE(blocker.read_head(3000ms) == ReadStatus::ok);
  auto first = send_async(proxy.port(), generate("m", "parked-0", 3, false));
  auto second = send_async(proxy.port(), generate("m", "parked-1", 3, false));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 2; }));
  std::this_thread::sleep_for(200ms);
  CHECK(proxy.snapshot().parked == 2);

  fleet[0].max_concurrency = 3;
  const auto reloaded_at = Clock::now();
  REQUIRE(reload(proxy, fleet_config(fleet)) == "");
  for (auto* f : {&first, &second}) {
    REQUIRE(f->wait_for(10s) == std::future_status::ready);
    HttpResponse r = f->get();
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-a");
  }
  CHECK(elapsed_ms(reloaded_at) < 5000);
  const core::Snapshot after = proxy.snapshot();  // (find_backend points into it)
  const core::BackendView* resized = find_backend(after, "gpu-a");
  REQUIRE(resized != nullptr);
  CHECK(resized->max_concurrency == 3);
  blocker.abort();
  expect_idle(proxy);
}

TEST_CASE("fleet reload: a backend's url changed under the same name is refused, nothing changes") {
  Simulator a(sim_args("m"));
  Simulator b(sim_args("m"));
  Simulator c(sim_args("other"));
  const std::vector<BackendSetting> fleet = {{"gpu-a", a.url(), 1}, {"gpu-c", c.url(), 1}};
  ProxyUnderTest proxy(fleet_config(fleet));
  REQUIRE(proxy.wait_for(ready({"gpu-a", "gpu-c"})));
  const auto config_before = proxy.on_io([&] { return proxy.proxy().config(); });

  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("m", "blocker", 20000, true));
  REQUIRE(blocker.read_head(3000ms) == ReadStatus::ok);
  auto parked = send_async(proxy.port(), generate("m", "parked", 3, false));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));

  // gpu-a moved to b's address, and more slots: refused as a whole.
  std::vector<BackendSetting> moved = fleet;
  moved[0].url = b.url();
  moved[0].max_concurrency = 2;
  CHECK(reload(proxy, fleet_config(moved)) ==
        "upstreams[0].url of gpu-a changed; remove and re-add it under a new name, or restart");
  CHECK(proxy.on_io([&] { return proxy.proxy().config(); }) == config_before);
  std::this_thread::sleep_for(200ms);
  const core::Snapshot snap = proxy.snapshot();
  CHECK(snap.parked == 1);
  CHECK(snap.in_flight == 1);
  const core::BackendView* kept = find_backend(snap, "gpu-a");
  REQUIRE(kept != nullptr);
  CHECK(kept->max_concurrency == 1);

  blocker.abort();
  REQUIRE(parked.wait_for(10s) == std::future_status::ready);
  HttpResponse r = parked.get();
  CHECK(r.status == 200);
  CHECK(r.header("X-Sluice-Backend") == "gpu-a");
  CHECK(b.stats()["records"].empty());  // nothing ever went to the other address
  expect_idle(proxy);
}
