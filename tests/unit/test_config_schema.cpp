// config/sluice.schema.json (editor help) must describe exactly what the loader accepts: the same
// keys at every level, and defaults equal to the loader's.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "sluice/config/config.hpp"

using nlohmann::json;

namespace {

json read_schema() {
  std::ifstream in(std::string(SLUICE_SOURCE_DIR) + "/config/sluice.schema.json");
  REQUIRE(in.good());
  return json::parse(in);
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it)
    keys.insert(it.key());
  return keys;
}

// The object schema behind a property (per_key is "one object or an array of them").
const json& object_schema(const json& property) {
  if (property.contains("properties")) return property;
  if (property.contains("items")) return object_schema(property["items"]);
  REQUIRE(property.contains("oneOf"));
  return object_schema(property["oneOf"][0]);
}

// Compares the schema's property names with the keys dump_config() writes, recursively.
void compare(const json& schema, const json& dumped, const std::string& where) {
  CAPTURE(where);
  std::set<std::string> expected = keys_of(dumped);
  std::set<std::string> described = keys_of(schema["properties"]);
  described.erase("$schema");
  CHECK(described == expected);
  CHECK(schema.value("additionalProperties", true) == false);
  for (auto it = dumped.begin(); it != dumped.end(); ++it) {
    if (!schema["properties"].contains(it.key())) continue;
    const json& property = schema["properties"][it.key()];
    if (it->is_object() && it.key() != "match") {
      compare(object_schema(property), *it, where + "." + it.key());
    } else if (it->is_array() && !it->empty() && it->front().is_object()) {
      compare(object_schema(property), it->front(), where + "." + it.key());
    }
  }
}

// An object holding every default the schema declares.
json defaults_of(const json& schema) {
  json out = json::object();
  for (auto it = schema["properties"].begin(); it != schema["properties"].end(); ++it) {
    if (it->contains("default")) {
      out[it.key()] = (*it)["default"];
    } else if (it->contains("properties")) {
      out[it.key()] = defaults_of(*it);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("schema: describes exactly the keys the loader knows") {
  const json schema = read_schema();
  auto full = sluice::config::parse_config(R"({"scheduler": {
      "per_key": {"label": "user"},
      "workloads": [{"name": "w", "match": {"tier": "x"}}]}})");
  REQUIRE(full.ok());
  compare(schema, json::parse(sluice::config::dump_config(*full.config)), "(root)");
}

TEST_CASE("schema: its defaults are the loader's defaults") {
  const json defaults = defaults_of(read_schema());
  CHECK(defaults.contains("upstream"));
  CHECK(defaults["scheduler"].contains("default_workload"));
  auto from_schema = sluice::config::parse_config(defaults.dump(), "schema-defaults");
  INFO(from_schema.error_text());
  REQUIRE(from_schema.ok());
  auto empty = sluice::config::parse_config("{}");
  REQUIRE(empty.ok());
  CHECK(sluice::config::dump_config(*from_schema.config) ==
        sluice::config::dump_config(*empty.config));
}

TEST_CASE("schema: the example config points at it") {
  auto r = sluice::config::parse_config(R"({"$schema": "./sluice.schema.json"})");
  CHECK(r.ok());
}
