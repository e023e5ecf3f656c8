// A fleet end to end: an in-process sluice in front of two sluice-sim processes that serve
// different models. Model routing by discovered catalogs, Ollama's 404 for a model nobody
// serves, and a backend that dies: detected by its health check, its model's requests wait and
// end with 503 no_backend, the other backend keeps serving.
#include <doctest/doctest.h>

#include <optional>

#include "proxy_harness.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string fleet_config(const Simulator& a, const Simulator& b) {
  return R"({"admin_listen": "",
    "upstreams": [
      {"name": "gpu-a", "url": ")" +
         a.url() + R"(", "max_concurrency": 1},
      {"name": "gpu-b", "url": ")" +
         b.url() + R"(", "max_concurrency": 1}],
    "fleet": {"health_interval": "100ms", "health_timeout": "80ms"},
    "scheduler": {"max_queue": 100}})";
}

HttpRequest generate(const std::string& model, std::vector<Header> headers = {}) {
  return HttpRequest{.method = "POST",
                     .target = "/api/generate",
                     .headers = std::move(headers),
                     .body = R"({"model":")" + model +
                             R"(","prompt":"hi","stream":false,"options":{"num_predict":3}})"};
}

bool all_up_and_known(const sluice::core::Snapshot& snap) {
  if (snap.backends.size() != 2) return false;
  for (const auto& b : snap.backends) {
    if (!b.up || !b.catalog_known) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("fleet: requests go where their model is served; unknown models get Ollama's 404") {
  std::optional<Simulator> a(std::vector<std::string>{"--models", "alpha", "--time-scale", "50"});
  std::optional<Simulator> b(std::vector<std::string>{"--models", "beta", "--time-scale", "50"});
  ProxyUnderTest proxy(fleet_config(*a, *b));
  REQUIRE(proxy.wait_for(all_up_and_known));

  for (int i = 0; i < 3; ++i) {
    HttpResponse ra = http_request(proxy.port(), generate("alpha"));
    CHECK(ra.status == 200);
    CHECK(ra.header("X-Sluice-Backend") == "gpu-a");
    HttpResponse rb = http_request(proxy.port(), generate("beta:latest"));
    CHECK(rb.status == 200);
    CHECK(rb.header("X-Sluice-Backend") == "gpu-b");
  }
  // The scheduler places scheduled requests: a client's X-Sluice-Backend does not steer them,
  // and sluice's header never reaches the backend.
  HttpResponse steered =
      http_request(proxy.port(), generate("alpha", {{"X-Sluice-Backend", "gpu-b"}}));
  CHECK(steered.status == 200);
  CHECK(steered.header("X-Sluice-Backend") == "gpu-a");
  const nlohmann::json records = a->stats()["records"];
  REQUIRE_FALSE(records.empty());
  CHECK_FALSE(records.back()["headers"].contains("x-sluice-backend"));
  CHECK(records.back()["headers"].contains("x-request-id"));

  HttpResponse missing = http_request(proxy.port(), generate("gamma"));
  CHECK(missing.status == 404);
  CHECK(missing.header("X-Sluice-Reason") == "model_not_found");
  CHECK(nlohmann::json::parse(missing.body)["error"] ==
        "model \"gamma\" not found, try pulling it first");

  // gpu-b dies: its health check notices, beta waits for it and times out with no_backend,
  // alpha keeps being served by gpu-a.
  b.reset();
  REQUIRE(proxy.wait_for([](const sluice::core::Snapshot& snap) {
    return snap.backends.size() == 2 && snap.backends[0].up && !snap.backends[1].up;
  }));
  HttpResponse waited = http_request(proxy.port(), generate("beta", {{"X-Queue-Timeout", "300"}}));
  CHECK(waited.status == 503);
  CHECK(waited.header("X-Sluice-Reason") == "no_backend");
  HttpResponse still = http_request(proxy.port(), generate("alpha"));
  CHECK(still.status == 200);
  CHECK(still.header("X-Sluice-Backend") == "gpu-a");
}
