// How congested a fleet's residency is for the demand on it: the most work per slot that some
// set of models forces onto the backends holding them.
//
// For a set X of models, the requests for X (parked and running) can only run on the backends
// that hold a model of X; so some slot of those backends carries at least demand(X) /
// slots(holders(X)). The congestion is the largest such ratio over every set X. By the
// max-flow/min-cut theorem it is also the least load per slot that any spreading of the demand
// over the holders achieves (the demand is routable at that rate and no lower), so it says how
// well the resident models fit the demand: loading a model somewhere lowers it only when it
// relieves the set that binds. A demanded set that no backend holds is infinitely congested.
//
// Pure and bounded: at most kMaxCongestionModels models (the caller keeps the most demanded),
// so at most 2^kMaxCongestionModels sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "sluice/core/fleet.hpp"

namespace sluice::core {

inline constexpr std::size_t kMaxCongestionModels = 8;

struct ModelDemand {
  double demand = 0;       ///< requests parked or running, > 0
  BackendSet holders = 0;  ///< backends that hold the model resident (and may run it)
};

/// max over non-empty X of demand(X) / slots(holders(X)); +infinity when a demanded set has
/// no holder; 0 for no models. `slots[b]` is backend b's concurrency limit (entries past the
/// end count 0). Precondition: models.size() <= kMaxCongestionModels.
double congestion(std::span<const ModelDemand> models, std::span<const std::int64_t> slots);

}  // namespace sluice::core
