// config/sluice.schema.json (editor help) must describe exactly what the loader accepts: the same
// keys at every level, the same kinds of value and integer bounds as the loader's own description
// (config_description(), built from the tables that drive reading), and defaults equal to the
// loader's.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/config/description.hpp"

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
  auto full = sluice::config::parse_config(R"({"upstream": {"max_concurrency": "auto"},
      "scheduler": {
      "per_key": {"label": "user"},
      "workloads": [{"name": "w", "match": {"tier": "x"}}]}})");
  REQUIRE(full.ok());
  // A fleet's backends are dumped only with upstreams (and then upstream.url is not).
  auto fleet = sluice::config::parse_config(R"({"upstreams": [{"name": "a",
      "url": "http://a:1", "max_concurrency": "auto", "models": ["m"]}]})");
  REQUIRE(fleet.ok());
  json dumped = json::parse(sluice::config::dump_config(*full.config));
  CHECK_FALSE(dumped.contains("upstreams"));
  dumped["upstreams"] = json::parse(sluice::config::dump_config(*fleet.config))["upstreams"];
  compare(schema, dumped, "(root)");
}

TEST_CASE("schema: its defaults are the loader's defaults") {
  json defaults = defaults_of(read_schema());
  CHECK(defaults.contains("upstream"));
  // Its defaults hold once "max_concurrency" is "auto"; without, the block is refused.
  CHECK(defaults["upstream"].contains("auto_concurrency"));
  defaults["upstream"].erase("auto_concurrency");
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

// ---- the schema against the loader's own description (sluice/config/description.hpp) ----

namespace {

using sluice::config::FieldDoc;
using sluice::config::FieldKind;
using sluice::config::ObjectDoc;

// The JSON Schema "type" a field of this kind must declare (a json array for several types);
// null when the schema states it another way (an enum, oneOf, a nested object checked by keys).
json schema_type(FieldKind kind) {
  switch (kind) {
    case FieldKind::integer:
      return "integer";
    case FieldKind::number:
      return "number";
    case FieldKind::boolean:
      return "boolean";
    case FieldKind::string:
    case FieldKind::label:
      return "string";
    case FieldKind::duration:
      return json::array({"string", "integer"});
    case FieldKind::object:
      return "object";
    case FieldKind::objects:
      return "array";
    case FieldKind::object_or_objects:
    case FieldKind::other:
    case FieldKind::refused:
      return nullptr;
  }
  return nullptr;
}

// Walks the description and the schema side by side and lists where they disagree: the keys of
// every object, the kind of value, and for integers and numbers the bounds.
void disagreements(const json& schema, const ObjectDoc& doc, const std::string& where,
                   std::vector<std::string>& out) {
  std::set<std::string> described;
  for (const FieldDoc& field : doc.fields) {
    if (field.kind != FieldKind::refused) described.insert(std::string(field.key));
  }
  const json properties = schema.value("properties", json::object());
  for (const std::string& key : keys_of(properties)) {
    if (!described.count(key)) out.push_back(where + "." + key + ": only in the schema");
  }
  for (const std::string& key : described) {
    if (!properties.contains(key)) out.push_back(where + "." + key + ": not in the schema");
  }
  if (schema.value("additionalProperties", true) != false) {
    out.push_back(where + ": the schema allows other keys");
  }
  for (const FieldDoc& field : doc.fields) {
    const std::string key(field.key);
    if (field.kind == FieldKind::refused || !properties.contains(key)) continue;
    const json& property = properties[key];
    const std::string at = where + "." + key;
    auto differ = [&](const char* what, const json& schema_value, const json& loader_value) {
      if (schema_value != loader_value) {
        out.push_back(at + ": " + what + " " + schema_value.dump() + " in the schema, " +
                      loader_value.dump() + " in the loader");
      }
    };
    const json type = schema_type(field.kind);
    // A value the schema gives by an enum (log.level) has no "type" to compare.
    if (!type.is_null() && property.contains("type")) differ("type", property["type"], type);
    if (field.kind == FieldKind::integer) {
      differ("minimum", property.value("minimum", json()), field.minimum);
      differ("maximum", property.value("maximum", json()), field.maximum);
    }
    if (field.kind == FieldKind::number) {
      differ("exclusiveMinimum", property.value("exclusiveMinimum", json()), field.minimum);
      differ("maximum", property.value("maximum", json()), field.maximum);
    }
    if (field.kind == FieldKind::object_or_objects) {
      // Both forms, one object and an array of them, describe the same object.
      const json forms = property.value("oneOf", json::array());
      if (forms.size() != 2) {
        out.push_back(at + ": expected oneOf [object, array of objects]");
        continue;
      }
      disagreements(forms[0], *field.object, at, out);
      disagreements(forms[1].value("items", json::object()), *field.object, at + "[]", out);
    } else if (field.object) {
      const json& object =
          field.kind == FieldKind::objects ? property.value("items", json::object()) : property;
      disagreements(object, *field.object, field.kind == FieldKind::objects ? at + "[]" : at, out);
    }
  }
}

std::vector<std::string> disagreements(const json& schema) {
  std::vector<std::string> out;
  disagreements(schema, sluice::config::config_description(), "(root)", out);
  return out;
}

}  // namespace

TEST_CASE("schema: keys, kinds and integer bounds agree with the loader's description") {
  const std::vector<std::string> found = disagreements(read_schema());
  for (const std::string& line : found)
    INFO(line);
  CHECK(found.empty());
}

TEST_CASE("schema: the comparison with the description notices drift") {
  // Doctored copies of the schema: each disagreement is reported, naming the place.
  json schema = read_schema();
  schema["properties"]["scheduler"]["properties"]["max_concurrency"]["maximum"] = 1000000;
  schema["properties"]["scheduler"]["properties"]["per_key"]["oneOf"][1]["items"]["properties"]
        ["max_queue"]["minimum"] = 1;
  schema["properties"]["limits"]["properties"].erase("write_timeout");
  schema["properties"]["log"]["properties"]["colour"] = {{"type", "string"}};
  schema["properties"]["auth"]["properties"]["keys"]["items"]["properties"]["trusted_gateway"]
        ["type"] = "string";
  const std::vector<std::string> expected = {
      "(root).scheduler.max_concurrency: maximum 1000000 in the schema, 100000 in the loader",
      "(root).scheduler.per_key[].max_queue: minimum 1 in the schema, 0 in the loader",
      "(root).limits.write_timeout: not in the schema",
      "(root).log.colour: only in the schema",
      "(root).auth.keys[].trusted_gateway: type \"string\" in the schema, \"boolean\" in the "
      "loader",
  };
  std::vector<std::string> found = disagreements(schema);
  std::sort(found.begin(), found.end());
  std::vector<std::string> sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  CHECK(found == sorted);
}
