// Pass-through routes in a fleet, end to end: an in-process sluice in front of three sluice-sim
// processes with overlapping model sets. The merged /api/tags, /v1/models and /api/ps (union,
// deduplicated, HEAD too), /api/show and /v1/models/{model} aimed at a backend serving the model
// (resident first), Ollama's 404 for a model nobody serves, management calls routed by the
// X-Sluice-Backend request header (400 without it, naming the backends; never forwarded), a
// backend that dies left out of the merge, 503 no_backend when none is up; and a fleet of one
// that behaves as before.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <set>

#include "proxy_harness.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string fleet_config(const std::vector<const Simulator*>& sims) {
  static const char* const kNames[] = {"gpu-a", "gpu-b", "gpu-c"};
  std::string text = R"({"admin_listen": "", "upstreams": [)";
  for (std::size_t i = 0; i < sims.size(); ++i) {
    if (i > 0) text += ",";
    text += R"({"name": ")";
    text += kNames[i];
    text += R"(", "url": ")" + sims[i]->url() + R"(", "max_concurrency": 2})";
  }
  text += R"(], "fleet": {"health_interval": "250ms", "health_timeout": "250ms"},
             "scheduler": {"max_queue": 100}})";
  return text;
}

Simulator sim(const std::string& models, int max_loaded) {
  return Simulator({"--models", models, "--max-loaded", std::to_string(max_loaded), "--time-scale",
                    "50", "--load-time", "100ms"});
}

std::set<std::string> names_in(const json& list, const char* array, const char* key) {
  std::set<std::string> names;
  for (const json& entry : list.at(array))
    names.insert(entry.at(key).get<std::string>());
  return names;
}

std::size_t count_in(const json& list, const char* array) {
  return list.at(array).size();
}

HttpResponse get(std::uint16_t port, const std::string& target, std::vector<Header> headers = {}) {
  return http_request(port, HttpRequest{.target = target, .headers = std::move(headers)});
}

/// The calls (/api/show, /api/pull) a simulator received.
json calls_of(const Simulator& s) {
  return s.stats().at("calls");
}

bool up_and_known(const sluice::core::Snapshot& snap, std::size_t n) {
  if (snap.backends.size() != n) return false;
  for (const auto& b : snap.backends) {
    if (!b.up || !b.catalog_known) return false;
  }
  return true;
}

bool resident(const sluice::core::Snapshot& snap, std::size_t backend, const std::string& model) {
  if (backend >= snap.backends.size()) return false;
  const auto& loaded = snap.backends[backend].loaded;
  return std::any_of(loaded.begin(), loaded.end(), [&](const auto& r) { return r.model == model; });
}

}  // namespace

TEST_CASE("fleet pass-through: merged lists, routing by model, management by header") {
  // gpu-a: alpha, beta (both resident); gpu-b: beta, gamma (beta resident); gpu-c: gamma, delta
  // (gamma resident).
  Simulator a = sim("alpha,beta", 2);
  Simulator b = sim("beta,gamma", 1);
  std::optional<Simulator> c = sim("gamma,delta", 1);
  ProxyUnderTest proxy(fleet_config({&a, &b, &*c}));
  REQUIRE(proxy.wait_for(
      [](const auto& snap) { return up_and_known(snap, 3) && resident(snap, 2, "gamma:latest"); }));

  SUBCASE("the lists are the union over the backends, each model once") {
    HttpResponse tags = get(proxy.port(), "/api/tags");
    REQUIRE(tags.status == 200);
    CHECK(tags.header("Content-Type")->starts_with("application/json"));
    CHECK(tags.header("X-Sluice-Backend") == "gpu-a,gpu-b,gpu-c");
    const json merged = json::parse(tags.body);
    CHECK(count_in(merged, "models") == 4);
    CHECK(names_in(merged, "models", "name") ==
          std::set<std::string>{"alpha:latest", "beta:latest", "gamma:latest", "delta:latest"});

    HttpResponse head =
        http_request(proxy.port(), HttpRequest{.method = "HEAD", .target = "/api/tags"});
    CHECK(head.status == 200);
    CHECK(head.body.empty());
    CHECK(head.header("Content-Length") == std::to_string(tags.body.size()));

    HttpResponse models = get(proxy.port(), "/v1/models");
    REQUIRE(models.status == 200);
    const json openai = json::parse(models.body);
    CHECK(openai["object"] == "list");
    CHECK(count_in(openai, "data") == 4);
    CHECK(names_in(openai, "data", "id") ==
          std::set<std::string>{"alpha:latest", "beta:latest", "gamma:latest", "delta:latest"});

    // Resident: alpha and beta on gpu-a, beta on gpu-b, gamma on gpu-c.
    HttpResponse ps = get(proxy.port(), "/api/ps");
    REQUIRE(ps.status == 200);
    const json running = json::parse(ps.body);
    CHECK(count_in(running, "models") == 3);
    CHECK(names_in(running, "models", "name") ==
          std::set<std::string>{"alpha:latest", "beta:latest", "gamma:latest"});
    // A request for delta (only gpu-c has it) loads it there, evicting gamma.
    HttpResponse generated = http_request(
        proxy.port(),
        post_json("/api/generate",
                  R"({"model":"delta","prompt":"hi","stream":false,"options":{"num_predict":2}})"));
    CHECK(generated.status == 200);
    CHECK(generated.header("X-Sluice-Backend") == "gpu-c");
    const json after = json::parse(get(proxy.port(), "/api/ps").body);
    CHECK(names_in(after, "models", "name") ==
          std::set<std::string>{"alpha:latest", "beta:latest", "delta:latest"});

    // The header asks one backend: its own list, as it sent it.
    HttpResponse one = get(proxy.port(), "/api/tags", {{"X-Sluice-Backend", "gpu-c"}});
    CHECK(one.header("X-Sluice-Backend") == "gpu-c");
    CHECK(names_in(json::parse(one.body), "models", "name") ==
          std::set<std::string>{"gamma:latest", "delta:latest"});
  }

  SUBCASE("/api/show and /v1/models/{model} go to a backend serving the model") {
    HttpResponse delta = http_request(proxy.port(), post_json("/api/show", R"({"model":"delta"})"));
    CHECK(delta.status == 200);
    CHECK(delta.header("X-Sluice-Backend") == "gpu-c");
    // gamma is on gpu-b and gpu-c, resident on gpu-c only: it goes there.
    HttpResponse gamma = http_request(proxy.port(), post_json("/api/show", R"({"name":"gamma"})"));
    CHECK(gamma.status == 200);
    CHECK(gamma.header("X-Sluice-Backend") == "gpu-c");
    const json c_calls = calls_of(*c);
    REQUIRE(c_calls.size() == 2);
    CHECK(c_calls[0]["path"] == "/api/show");
    CHECK(c_calls[0]["model"] == "delta:latest");
    CHECK(c_calls[1]["model"] == "gamma:latest");
    CHECK(calls_of(a).empty());
    CHECK(calls_of(b).empty());

    HttpResponse missing =
        http_request(proxy.port(), post_json("/api/show", R"({"model":"epsilon"})"));
    CHECK(missing.status == 404);
    CHECK(missing.header("X-Sluice-Reason") == "model_not_found");
    CHECK(json::parse(missing.body)["error"] ==
          "model \"epsilon\" not found, try pulling it first");

    HttpResponse retrieve = get(proxy.port(), "/v1/models/alpha");
    CHECK(retrieve.status == 200);
    CHECK(retrieve.header("X-Sluice-Backend") == "gpu-a");
    CHECK(json::parse(retrieve.body)["id"] == "alpha");
    HttpResponse retrieve_missing = get(proxy.port(), "/v1/models/epsilon");
    CHECK(retrieve_missing.status == 404);
    CHECK(json::parse(retrieve_missing.body)["error"]["type"] == "not_found_error");
  }

  SUBCASE("management calls go to the backend X-Sluice-Backend names") {
    const std::string pull = R"({"model":"beta","stream":false})";
    HttpResponse unnamed = http_request(proxy.port(), post_json("/api/pull", pull));
    CHECK(unnamed.status == 400);
    CHECK(unnamed.header("X-Sluice-Reason") == "backend_required");
    CHECK(json::parse(unnamed.body)["error"] ==
          "/api/pull acts on one backend of the fleet: set the X-Sluice-Backend header to one "
          "of: gpu-a, gpu-b, gpu-c");

    HttpResponse unknown =
        http_request(proxy.port(), post_json("/api/pull", pull, {{"X-Sluice-Backend", "gpu-z"}}));
    CHECK(unknown.status == 400);
    CHECK(unknown.header("X-Sluice-Reason") == "unknown_backend");
    CHECK(calls_of(a).empty());
    CHECK(calls_of(b).empty());
    CHECK(calls_of(*c).empty());

    HttpResponse named =
        http_request(proxy.port(), post_json("/api/pull", pull, {{"X-Sluice-Backend", "gpu-b"}}));
    CHECK(named.status == 200);
    CHECK(named.header("X-Sluice-Backend") == "gpu-b");
    CHECK(json::parse(named.body)["status"] == "success");
    const json b_calls = calls_of(b);
    REQUIRE(b_calls.size() == 1);
    CHECK(b_calls[0]["path"] == "/api/pull");
    CHECK(b_calls[0]["model"] == "beta");
    CHECK_FALSE(b_calls[0]["headers"].contains("x-sluice-backend"));  // sluice's, not Ollama's
    CHECK(calls_of(a).empty());

    // A pull of a model gpu-a lacks, streamed: gpu-a's own answer comes back.
    HttpResponse streamed = http_request(
        proxy.port(),
        post_json("/api/pull", R"({"model":"delta"})", {{"X-Sluice-Backend", "gpu-a"}}));
    CHECK(streamed.status == 200);
    CHECK(streamed.header("X-Sluice-Backend") == "gpu-a");
    CHECK(streamed.body.find("file does not exist") != std::string::npos);
  }

  SUBCASE("a backend that is gone is left out; none up is 503 no_backend") {
    c.reset();  // at once: the merge may still ask it, and must leave it out
    HttpResponse tags = get(proxy.port(), "/api/tags");
    REQUIRE(tags.status == 200);
    CHECK(tags.header("X-Sluice-Backend") == "gpu-a,gpu-b");
    CHECK(names_in(json::parse(tags.body), "models", "name") ==
          std::set<std::string>{"alpha:latest", "beta:latest", "gamma:latest"});
    // delta's only backend is down once its health check noticed: 503, not Ollama's 404.
    REQUIRE(proxy.wait_for([](const auto& snap) { return !snap.backends[2].up; }));
    HttpResponse down = http_request(proxy.port(), post_json("/api/show", R"({"model":"delta"})"));
    CHECK(down.status == 503);
    CHECK(down.header("X-Sluice-Reason") == "no_backend");
  }
}

TEST_CASE("fleet pass-through: no backend up answers 503 no_backend") {
  std::optional<Simulator> a = sim("alpha", 1);
  ProxyUnderTest proxy(fleet_config({&*a}));
  REQUIRE(proxy.wait_for([](const auto& snap) { return up_and_known(snap, 1); }));
  a.reset();
  REQUIRE(proxy.wait_for([](const auto& snap) { return !snap.backends[0].up; }));
  HttpResponse tags = get(proxy.port(), "/api/tags");
  CHECK(tags.status == 503);
  CHECK(tags.header("X-Sluice-Reason") == "no_backend");
  CHECK(json::parse(tags.body)["error"] == "no backend is up to answer GET /api/tags");
  HttpResponse models = get(proxy.port(), "/v1/models");
  CHECK(models.status == 503);
  CHECK(json::parse(models.body)["error"]["message"] ==
        "no backend is up to answer GET /v1/models");
}

TEST_CASE("fleet pass-through: a fleet of one") {
  Simulator a = sim("alpha,beta", 1);
  const std::string pull = R"({"model":"alpha","stream":false})";

  SUBCASE("a single upstream.url passes everything through as before") {
    ProxyUnderTest proxy(proxy_config(a.url(), R"({"max_concurrency": 1})"));
    HttpResponse direct = get(a.port(), "/api/tags");
    HttpResponse tags = get(proxy.port(), "/api/tags");
    CHECK(tags.status == 200);
    CHECK(tags.body == direct.body);  // byte for byte: not merged
    CHECK(tags.header("Content-Type") == direct.header("Content-Type"));
    HttpResponse pulled = http_request(proxy.port(), post_json("/api/pull", pull));
    CHECK(pulled.status == 200);
    CHECK(calls_of(a).size() == 1);
  }

  SUBCASE("upstreams with one backend: management calls need no header") {
    ProxyUnderTest proxy(fleet_config({&a}));
    REQUIRE(proxy.wait_for([](const auto& snap) { return up_and_known(snap, 1); }));
    HttpResponse pulled = http_request(proxy.port(), post_json("/api/pull", pull));
    CHECK(pulled.status == 200);
    CHECK(pulled.header("X-Sluice-Backend") == "gpu-a");
    HttpResponse wrong =
        http_request(proxy.port(), post_json("/api/pull", pull, {{"X-Sluice-Backend", "gpu-b"}}));
    CHECK(wrong.status == 400);
    CHECK(json::parse(wrong.body)["error"] ==
          "unknown backend \"gpu-b\" in the X-Sluice-Backend header: set it to one of: gpu-a");
  }
}
