// Fleet routing rules of pass-through requests: which route is which, the model an /api/show
// names, the backend chosen for a model, and the X-Sluice-Backend rules for management calls.
#include <doctest/doctest.h>

#include <vector>

#include "passthrough_route.hpp"

using namespace sluice::net;

TEST_CASE("passthrough route: lists, by model, management, the rest") {
  CHECK(plan_passthrough("GET", "/api/tags").route == FleetRoute::catalog);
  CHECK(plan_passthrough("HEAD", "/api/tags").route == FleetRoute::catalog);
  CHECK(plan_passthrough("GET", "/api/ps?verbose=1").catalog == CatalogRoute::ps);
  CHECK(plan_passthrough("GET", "/v1/models").catalog == CatalogRoute::openai);
  CHECK(plan_passthrough("POST", "/api/tags").route == FleetRoute::primary);

  CHECK(plan_passthrough("POST", "/api/show").route == FleetRoute::by_model);
  CHECK(plan_passthrough("POST", "/api/show").model.empty());
  CHECK(plan_passthrough("GET", "/api/show").route == FleetRoute::primary);  // the backend's 405
  const PassthroughPlan retrieve = plan_passthrough("GET", "/v1/models/llama3.1%3A8b?x");
  CHECK(retrieve.route == FleetRoute::by_model);
  CHECK(retrieve.model == "llama3.1:8b");
  CHECK(plan_passthrough("HEAD", "/v1/models/mistral").model == "mistral");
  CHECK(plan_passthrough("GET", "/v1/models/").route == FleetRoute::primary);
  CHECK(plan_passthrough("GET", "/v1/models/a/b").route == FleetRoute::primary);
  CHECK(plan_passthrough("GET", "/v1/models/bad%zz").route == FleetRoute::primary);

  for (const char* path : {"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"}) {
    CHECK(plan_passthrough("POST", path).route == FleetRoute::management);
  }
  CHECK(plan_passthrough("DELETE", "/api/delete").route == FleetRoute::management);
  CHECK(plan_passthrough("HEAD", "/api/blobs/sha256:abc").route == FleetRoute::management);
  CHECK(plan_passthrough("POST", "/api/blobs/sha256:abc").route == FleetRoute::management);
  CHECK(plan_passthrough("POST", "/api/blobs/").route == FleetRoute::primary);
  CHECK(plan_passthrough("POST", "/api/pullx").route == FleetRoute::primary);

  CHECK(plan_passthrough("GET", "/api/version").route == FleetRoute::primary);
  CHECK(plan_passthrough("GET", "/").route == FleetRoute::primary);
}

TEST_CASE("passthrough route: percent decoding") {
  CHECK(percent_decode("a%3Ab") == "a:b");
  CHECK(percent_decode("plain") == "plain");
  CHECK(percent_decode("%41%42") == "AB");
  CHECK_FALSE(percent_decode("%4"));
  CHECK_FALSE(percent_decode("%"));
  CHECK_FALSE(percent_decode("x%g1"));
}

TEST_CASE("passthrough route: the model an /api/show body names") {
  CHECK(show_model(R"({"model":"mistral"})") == "mistral");
  CHECK(show_model(R"({"name":"llama3"})") == "llama3");
  CHECK(show_model(R"({"model":"a","name":"b"})") == "a");
  CHECK(show_model(R"({"model":"","name":"b"})") == "b");
  CHECK_FALSE(show_model(R"({"model":3})"));
  CHECK_FALSE(show_model(R"({})"));
  CHECK_FALSE(show_model("[1]"));
  CHECK_FALSE(show_model("not json"));
}

TEST_CASE("passthrough route: by model, resident first, then least busy, then earlier") {
  using C = ModelCandidate;
  CHECK_FALSE(choose_model_backend(std::vector<C>{}));
  CHECK_FALSE(choose_model_backend(std::vector<C>{{false, true, 0}, {false, false, 0}}));
  CHECK(choose_model_backend(std::vector<C>{{false, true, 0}, {true, false, 5}}) == 1);
  CHECK(choose_model_backend(std::vector<C>{{true, false, 0}, {true, true, 7}}) == 1);
  CHECK(choose_model_backend(std::vector<C>{{true, true, 3}, {true, true, 1}}) == 1);
  CHECK(choose_model_backend(std::vector<C>{{true, false, 2}, {true, false, 2}}) == 0);
}

TEST_CASE("passthrough route: management calls name their backend") {
  const std::vector<std::string> fleet = {"gpu-a", "gpu-b"};
  const std::vector<std::string> one = {"solo"};

  ManagementChoice named = choose_management_backend("/api/pull", "gpu-b", fleet);
  CHECK(named.index == 1);
  CHECK(named.error.empty());

  ManagementChoice missing = choose_management_backend("/api/pull", std::nullopt, fleet);
  CHECK_FALSE(missing.index);
  CHECK(missing.reason == "backend_required");
  CHECK(missing.error ==
        "/api/pull acts on one backend of the fleet: set the X-Sluice-Backend header to one of: "
        "gpu-a, gpu-b");

  ManagementChoice unknown = choose_management_backend("/api/delete", "gpu-z", fleet);
  CHECK_FALSE(unknown.index);
  CHECK(unknown.reason == "unknown_backend");
  CHECK(unknown.error ==
        "unknown backend \"gpu-z\" in the X-Sluice-Backend header: set it to one of: gpu-a, gpu-b");
  CHECK_FALSE(choose_management_backend("/api/pull", "GPU-A", fleet).index);  // exact names

  CHECK(choose_management_backend("/api/pull", std::nullopt, one).index == 0);
  CHECK(choose_management_backend("/api/pull", "solo", one).index == 0);
  CHECK_FALSE(choose_management_backend("/api/pull", "other", one).index);
}
