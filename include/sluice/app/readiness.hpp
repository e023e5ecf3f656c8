// What GET /readyz says in front of a fleet (`upstreams`). Pure: built from a core::Snapshot,
// the backends' health as the fleet monitor last saw it (no probe of its own), so readiness
// agrees with placement: sluice is ready when at least one configured backend is up, which is
// when it can place a request at all. Removed backends still finishing their requests (retired)
// do not count and are not listed.
//
// Bounds: every configured backend is listed in `backends` (the config allows at most
// kMaxBackends); the detail names at most kReadinessNamed backends that are not up, then "and N
// more"; each reason is cut to kReadinessReasonBytes.
#pragma once

#include <cstddef>

#include "sluice/app/admin_server.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::app {

inline constexpr std::size_t kReadinessNamed = 8;
inline constexpr std::size_t kReadinessReasonBytes = 200;

/// detail: "2 of 3 backends up" when every one is, else "1 of 3 backends up; not up: gpu-b
/// (down: connect: Connection refused), gpu-c (unknown: not checked yet)"; "none of 3 backends
/// up; ..." when not ready. backends: one entry per configured backend, in the fleet's order.
Readiness fleet_readiness(const core::Snapshot& snapshot);

}  // namespace sluice::app
