// The config's description of itself (sluice/config/description.hpp) is what the loader does:
// the unknown-key check knows exactly the described keys of every object, and dump_config()
// writes them in the described order.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/config/description.hpp"

using nlohmann::json;
using sluice::config::config_description;
using sluice::config::ConfigResult;
using sluice::config::FieldDoc;
using sluice::config::FieldKind;
using sluice::config::ObjectDoc;
using sluice::config::parse_config;

namespace {

// Every described object with a pointer at which a config can put an unknown key into it, and
// the smallest document reaching there (arrays get one item; workloads need a name).
struct Place {
  std::string display;  // as messages show it
  json document;        // with "zzzzzzzz" set inside the object
  const ObjectDoc* doc;
};

void places(const ObjectDoc& doc, const std::string& display, const json::json_pointer& at,
            json document, std::vector<Place>& out) {
  json with_unknown = document;
  with_unknown[at / "zzzzzzzz"] = 1;
  out.push_back({display, with_unknown, &doc});
  for (const FieldDoc& field : doc.fields) {
    if (!field.object) continue;
    const std::string key(field.key);
    json next = document;
    if (field.kind == FieldKind::object) {
      next[at / key] = json::object();
      places(*field.object, display.empty() ? key : display + "." + key, at / key, next, out);
    } else {
      next[at / key / 0] = json::object();
      if (field.object->find("name")) next[at / key / 0 / "name"] = "w";
      places(*field.object, (display.empty() ? key : display + "." + key) + "[0]", at / key / 0,
             next, out);
    }
  }
}

std::string known_keys(const ObjectDoc& doc) {
  std::string list;
  for (const FieldDoc& field : doc.fields)
    list += (list.empty() ? "" : ", ") + std::string(field.key);
  return list;
}

}  // namespace

TEST_CASE("description: the unknown-key check of every object knows exactly its described keys") {
  std::vector<Place> all;
  places(config_description(), "", json::json_pointer(), json::object(), all);
  // root, 9 sections, upstreams, per_key, workloads, default_workload, auth.keys, and the
  // auto_concurrency of upstream and of upstreams[0]
  CHECK(all.size() == 17);
  for (const Place& place : all) {
    CAPTURE(place.display);
    ConfigResult r = parse_config(place.document.dump(), "c.json");
    const std::string field = place.display.empty() ? "zzzzzzzz" : place.display + ".zzzzzzzz";
    bool found = false;
    for (const auto& e : r.errors) {
      if (e.field != field) continue;
      found = true;
      CHECK(e.message == "unknown key; expected one of: " + known_keys(*place.doc));
    }
    CHECK(found);
  }
}

TEST_CASE("description: dump_config writes every described key, in the described order") {
  auto r = parse_config(R"({"upstream": {"max_concurrency": "auto", "auto_concurrency": {}},
      "scheduler": {"per_key": {"label": "user"},
      "workloads": [{"name": "w", "match": {"tier": "x"}}]},
      "auth": {"keys": [{"name": "k", "sha256": ")" +
                        std::string(64, 'a') + R"(", "max_priority": 4}]}})");
  REQUIRE(r.ok());
  auto fleet = parse_config(R"({"upstreams": [{"name": "a", "url": "http://a:1",
      "max_concurrency": "auto", "models": ["m"]}]})");
  REQUIRE(fleet.ok());
  // Keys a dump leaves out: "$schema" (ignored), default_workload.match (refused), upstreams
  // without a fleet and upstream.url with one; auto_concurrency without "auto", and the
  // upstream block's max_concurrency unless it is "auto" (a fleet's entries set their own).
  std::vector<std::string> omitted;
  auto check = [&omitted](const auto& self, const nlohmann::ordered_json& value,
                          const ObjectDoc& doc, const std::string& where) -> void {
    CAPTURE(where);
    std::vector<std::string> expected, written;
    for (const FieldDoc& field : doc.fields) {
      if (field.key != "$schema" && field.kind != FieldKind::refused &&
          std::find(omitted.begin(), omitted.end(), where + "." + std::string(field.key)) ==
              omitted.end()) {
        expected.emplace_back(field.key);
      }
    }
    for (auto it = value.begin(); it != value.end(); ++it)
      written.push_back(it.key());
    CHECK(written == expected);
    for (const FieldDoc& field : doc.fields) {
      if (!field.object || !value.contains(field.key)) continue;
      const auto& member = value[std::string(field.key)];
      if (member.is_object())
        self(self, member, *field.object, where + "." + std::string(field.key));
      if (member.is_array() && !member.empty()) {
        self(self, member.front(), *field.object, where + "." + std::string(field.key) + "[0]");
      }
    }
  };
  omitted = {"(root).upstreams"};
  check(check, nlohmann::ordered_json::parse(sluice::config::dump_config(*r.config)),
        config_description(), "(root)");
  omitted = {"(root).upstream.url", "(root).upstream.max_concurrency",
             "(root).upstream.auto_concurrency"};
  check(check, nlohmann::ordered_json::parse(sluice::config::dump_config(*fleet.config)),
        config_description(), "(root)");
}
