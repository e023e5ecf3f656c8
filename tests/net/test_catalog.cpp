// A fleet's model lists: names read from /api/tags and /api/ps, and the merged answers.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "catalog.hpp"

using nlohmann::json;
using sluice::net::catalog_problem;
using sluice::net::catalog_route;
using sluice::net::CatalogRoute;
using sluice::net::merge_catalogs;
using sluice::net::model_names;

TEST_CASE("catalog: the three list routes") {
  CHECK(catalog_route("GET", "/api/tags") == CatalogRoute::tags);
  CHECK(catalog_route("GET", "/api/ps?x=1") == CatalogRoute::ps);
  CHECK(catalog_route("GET", "/v1/models") == CatalogRoute::openai);
  CHECK_FALSE(catalog_route("HEAD", "/api/tags"));
  CHECK_FALSE(catalog_route("GET", "/v1/models/mistral"));
  CHECK_FALSE(catalog_route("GET", "/api/tagsx"));
}

TEST_CASE("catalog: model names from a backend's list") {
  std::string error;
  auto names = model_names(
      R"({"models":[{"name":"mistral:latest","model":"mistral:latest","size":1},
                    {"name":"llama3","model":"llama3:latest"},
                    {"name":"mistral:latest","model":"mistral:latest"},
                    {"name":"only-name"}, {"size":3}, 7]})",
      &error);
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"mistral:latest", "llama3:latest", "only-name"});
  CHECK(model_names(R"({"models":[]})", &error)->empty());
  CHECK_FALSE(model_names("not json", &error));
  CHECK(error == "not JSON");
  CHECK_FALSE(model_names(R"({"data":[]})", &error));
  CHECK(error == "no \"models\" array");
}

TEST_CASE("catalog: /api/tags is the union by name, the first backend's entry kept") {
  const std::vector<std::string> bodies = {
      R"({"models":[{"name":"a:latest","model":"a:latest","size":1},{"name":"b:latest","size":2}]})",
      "garbage from a broken backend",
      R"({"models":[{"name":"b:latest","size":99},{"name":"c:latest","size":3}]})"};
  const json merged = json::parse(merge_catalogs(CatalogRoute::tags, bodies));
  REQUIRE(merged["models"].size() == 3);
  CHECK(merged["models"][0]["name"] == "a:latest");
  CHECK(merged["models"][1]["name"] == "b:latest");
  CHECK(merged["models"][1]["size"] == 2);
  CHECK(merged["models"][2]["name"] == "c:latest");
  CHECK(json::parse(merge_catalogs(CatalogRoute::tags, {})) == json::parse(R"({"models":[]})"));
}

TEST_CASE("catalog: /api/ps keeps the latest expiry of a model resident twice") {
  const std::vector<std::string> bodies = {
      R"({"models":[{"name":"a:latest","expires_at":"2026-12-01T10:05:00Z"}]})",
      R"({"models":[{"name":"a:latest","expires_at":"2026-12-01T10:09:00Z"},{"name":"b:latest"}]})",
      R"({"models":[{"name":"a:latest","expires_at":"2026-12-01T10:01:00Z"}]})"};
  const json merged = json::parse(merge_catalogs(CatalogRoute::ps, bodies));
  REQUIRE(merged["models"].size() == 2);
  CHECK(merged["models"][0]["expires_at"] == "2026-12-01T10:09:00Z");
}

TEST_CASE("catalog: /v1/models in the OpenAI list shape, by id") {
  const std::vector<std::string> bodies = {
      R"({"object":"list","data":[{"id":"a:latest","object":"model","owned_by":"library"}]})",
      R"({"object":"list","data":[{"id":"a:latest","object":"model"},{"id":"b:latest","object":"model"}]})"};
  const json merged = json::parse(merge_catalogs(CatalogRoute::openai, bodies));
  CHECK(merged["object"] == "list");
  REQUIRE(merged["data"].size() == 2);
  CHECK(merged["data"][0]["owned_by"] == "library");
  CHECK(merged["data"][1]["id"] == "b:latest");
}

TEST_CASE("catalog: a backend's answer checked for the route's shape") {
  CHECK(catalog_problem(CatalogRoute::tags, R"({"models":[]})").empty());
  CHECK(catalog_problem(CatalogRoute::ps, R"({"models":[{"name":"a"}]})").empty());
  CHECK(catalog_problem(CatalogRoute::openai, R"({"object":"list","data":[]})").empty());
  CHECK(catalog_problem(CatalogRoute::openai, R"({"models":[]})") == "no \"data\" array");
  CHECK(catalog_problem(CatalogRoute::tags, R"({"data":[]})") == "no \"models\" array");
  CHECK(catalog_problem(CatalogRoute::tags, "<html>") == "not JSON");
}
