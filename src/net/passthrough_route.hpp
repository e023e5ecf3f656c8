// Where a pass-through request goes in a configured fleet (issue 12): the rules that do not need
// a socket, so each is unit-tested directly. serve_fleet.cpp carries them out.
//
//  * GET|HEAD /api/tags, /api/ps, /v1/models: the merged list of the backends that are up
//    (catalog.hpp merges them).
//  * POST /api/show, GET|HEAD /v1/models/{model}: one backend that serves the model, preferring
//    one where it is resident, then the least busy.
//  * Management calls (/api/pull, /api/push, /api/create, /api/copy, /api/delete,
//    /api/blobs/...; any method): the backend the X-Sluice-Backend request header names, or the
//    only backend of a fleet of one; otherwise the client must say (400).
//  * Everything else: the first backend that is up, as before.
//
// A single `upstream.url` (no `upstreams`) never consults these rules: it passes everything
// through unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "catalog.hpp"

namespace sluice::net {

enum class FleetRoute : std::uint8_t { primary, catalog, by_model, management };

struct PassthroughPlan {
  FleetRoute route = FleetRoute::primary;
  CatalogRoute catalog = CatalogRoute::tags;  ///< route == catalog
  /// route == by_model: the model named by the path (/v1/models/{model}, percent-decoded); ""
  /// for /api/show, whose body names it.
  std::string model;
};

/// The fleet route of a pass-through request (`target` may carry a query).
PassthroughPlan plan_passthrough(std::string_view method, std::string_view target);

/// The model an /api/show body names ("model", or "name" as older clients send); nullopt when
/// the body is not JSON or names none (the backend then answers the client's mistake).
std::optional<std::string> show_model(std::string_view body);

/// What a backend looks like to a request for one model.
struct ModelCandidate {
  bool eligible = false;  ///< up and serving the model
  bool resident = false;  ///< the model is loaded there
  std::int64_t in_flight = 0;
};

/// The candidate a by-model request goes to: eligible; resident before not; then fewer in
/// flight; then the earlier. nullopt when none is eligible.
std::optional<std::size_t> choose_model_backend(std::span<const ModelCandidate> candidates);

struct ManagementChoice {
  std::optional<std::size_t> index;  ///< into the backend names, when chosen
  std::string error;                 ///< else the client-facing message (400)
  std::string_view reason;           ///< X-Sluice-Reason with the error
};

/// The backend a management call to `path` goes to: the one `header` (X-Sluice-Backend) names
/// exactly, else the only one. `names` are the configured backends, in order, not empty.
ManagementChoice choose_management_backend(std::string_view path,
                                           std::optional<std::string_view> header,
                                           std::span<const std::string> names);

/// "%3A"-style escapes decoded; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace sluice::net
