// Model lists of a fleet. See catalog.hpp.
#include "catalog.hpp"

#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

namespace sluice::net {
namespace {

using nlohmann::json;

const char* list_key(CatalogRoute route) {
  return route == CatalogRoute::openai ? "data" : "models";
}
const char* name_key(CatalogRoute route) {
  return route == CatalogRoute::openai ? "id" : "name";
}

// The route's array in a body, or nullptr.
const json* entries(const json& doc, CatalogRoute route) {
  if (!doc.is_object()) return nullptr;
  auto it = doc.find(list_key(route));
  if (it == doc.end() || !it->is_array()) return nullptr;
  return &*it;
}

}  // namespace

std::optional<CatalogRoute> catalog_route(std::string_view method, std::string_view target) {
  if (method != "GET") return std::nullopt;
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/api/tags") return CatalogRoute::tags;
  if (path == "/api/ps") return CatalogRoute::ps;
  if (path == "/v1/models") return CatalogRoute::openai;
  return std::nullopt;
}

std::optional<std::vector<std::string>> model_names(std::string_view body, std::string* error) {
  json doc = json::parse(body, nullptr, false);
  const json* list = doc.is_discarded() ? nullptr : entries(doc, CatalogRoute::tags);
  if (!list) {
    if (error) *error = doc.is_discarded() ? "not JSON" : "no \"models\" array";
    return std::nullopt;
  }
  std::vector<std::string> names;
  std::unordered_set<std::string> seen;
  for (const json& entry : *list) {
    if (names.size() >= kMaxCatalogEntries) break;
    if (!entry.is_object()) continue;
    // Ollama fills both; "model" is the canonical reference, "name" what `ollama list` shows.
    auto it = entry.find("model");
    if (it == entry.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
      it = entry.find("name");
    if (it == entry.end() || !it->is_string()) continue;
    const std::string& name = it->get_ref<const std::string&>();
    if (!name.empty() && seen.insert(name).second) names.push_back(name);
  }
  return names;
}

std::string catalog_problem(CatalogRoute route, std::string_view body) {
  const json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) return "not JSON";
  if (!entries(doc, route)) return std::string("no \"") + list_key(route) + "\" array";
  return "";
}

std::string merge_catalogs(CatalogRoute route, std::span<const std::string> bodies) {
  json merged = json::array();
  std::unordered_map<std::string, std::size_t> index;  // name -> position in merged
  for (const std::string& body : bodies) {
    json doc = json::parse(body, nullptr, false);
    if (doc.is_discarded()) continue;
    const json* list = entries(doc, route);
    if (!list) continue;
    std::size_t taken = 0;
    for (const json& entry : *list) {
      if (taken++ >= kMaxCatalogEntries) break;
      if (!entry.is_object()) continue;
      auto name = entry.find(name_key(route));
      if (name == entry.end() || !name->is_string()) continue;
      auto [it, fresh] = index.try_emplace(name->get<std::string>(), merged.size());
      if (fresh) {
        merged.push_back(entry);
        continue;
      }
      if (route != CatalogRoute::ps) continue;
      // Resident on several backends: it stays resident until the last copy expires. RFC 3339
      // times of one zone compare as strings; Ollama writes them all in the server's zone.
      json& kept = merged[it->second];
      auto later = entry.find("expires_at");
      auto current = kept.find("expires_at");
      if (later != entry.end() && later->is_string() &&
          (current == kept.end() || !current->is_string() || *later > *current)) {
        kept["expires_at"] = *later;
      }
    }
  }
  json out;
  if (route == CatalogRoute::openai) {
    out["object"] = "list";
    out["data"] = std::move(merged);
  } else {
    out["models"] = std::move(merged);
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::net
