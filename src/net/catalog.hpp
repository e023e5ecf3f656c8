// A fleet's model lists: what each backend's /api/tags and /api/ps say, and the one answer a
// client gets when it asks the whole fleet (GET /api/tags, /api/ps, /v1/models). Pure functions
// over response bodies; no sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::net {

/// The model lists a client can ask for, in the shape each route answers with.
enum class CatalogRoute : std::uint8_t {
  tags,    ///< GET /api/tags: {"models":[{"name":..., "model":..., ...}]}
  ps,      ///< GET /api/ps:   {"models":[{"name":..., "expires_at":..., ...}]}
  openai,  ///< GET /v1/models: {"object":"list","data":[{"id":..., "object":"model", ...}]}
};

/// The route a pass-through path names, if it is one of the three.
std::optional<CatalogRoute> catalog_route(std::string_view method, std::string_view target);

/// Most entries read from one backend's list (the rest are ignored).
inline constexpr std::size_t kMaxCatalogEntries = 4096;

/// The model names in one backend's /api/tags or /api/ps body, in order, without duplicates;
/// nullopt (with `error` set) when the body is not that shape.
std::optional<std::vector<std::string>> model_names(std::string_view body, std::string* error);

/// "" when `body` is a list of `route`'s shape (its array present), else why not ("not JSON",
/// "no \"data\" array").
std::string catalog_problem(CatalogRoute route, std::string_view body);

/// One list from every backend's answer (bodies of the backends that answered, in fleet
/// order): entries deduplicated by name ("name" for tags/ps, "id" for /v1/models), the first
/// backend's entry kept; for /api/ps the latest "expires_at" of the copies. Bodies that are not
/// the route's shape are skipped. Returns the JSON text to send.
std::string merge_catalogs(CatalogRoute route, std::span<const std::string> bodies);

}  // namespace sluice::net
