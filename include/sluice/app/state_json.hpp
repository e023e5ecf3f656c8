// The JSON document served by GET /admin/state: a point-in-time view of the scheduler for an
// operator (who is parked, who runs, how long the oldest has waited) and the limits in force.
// Pure: built from a core::Snapshot and the running Config.
//
// Bounds: the per-key list is capped (`max_keys`, busiest keys first: parked + in flight); the
// total number of keys and whether the list was cut are reported, so a flood of users cannot
// make the answer unbounded. The backends are at most kMaxStateBackends (the config allows no
// more), each with at most kMaxStateModels names in each of its model lists and kMaxStateLevels
// levels of its adaptive limit.
#pragma once

#include <cstddef>
#include <string>

#include "sluice/config/config.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::app {

inline constexpr std::size_t kMaxStateBackends = 64;
inline constexpr std::size_t kMaxStateModels = 256;
/// An adaptive limit's levels shown per backend (the lowest first).
inline constexpr std::size_t kMaxStateLevels = 64;

struct StateContext {
  bool draining = false;        ///< shutdown has begun
  double uptime_seconds = 0;    ///< since start
  std::size_t max_keys = 1000;  ///< cap on the "keys" array
};

/// Shape (durations in milliseconds, as numbers):
/// { "version", "uptime_seconds", "draining",
///   "upstream" (the single upstream's URL; null with `upstreams`), "fleet" (`upstreams` used),
///   "limits": {max_concurrency, max_inflight_tokens, max_queue, queue_timeout_cap_ms,
///              max_inflight_duration_ms, per_key: [{label, max_concurrency, max_tokens,
///              max_queue}]},
///   "totals": {parked, in_flight, in_flight_tokens},
///   "workloads": [{name, priority, band, parked, in_flight, in_flight_tokens, oldest_wait_ms
///                  (null when nothing is parked), queue_timeout_ms, max_queue, fairness_key,
///                  retired, waiting: [{id, position, position_exact, eta_ms (null: unknown),
///                  queued_ms}] (its parked requests in queue order, the first 100)}],
///   "keys": [{label, value, parked, in_flight}], "keys_total", "keys_truncated",
///   "backends": [{name, url (null once removed by a reload), up, health ({state, reason,
///                 ejected_for_ms, ejections, failed_checks, failed_requests}; null without
///                 `upstreams`), retired, in_flight, max_concurrency, concurrency_limit (the
///                 limit in force: max_concurrency, learned with "auto"), auto_concurrency
///                 ({min, max, probing, last_change, levels: [{in_flight, samples, waited,
///                 median_wait_ms, tokens_per_second}]}; null for a fixed limit), requests (ended
///                 so far), models (its catalog; null while unknown: it serves every model),
///                 models_total, loaded ([{model, in_flight}], most recently used first; null
///                 without `upstreams`), resident_capacity, load_time_ms ({model: learned ms}),
///                 tokens_per_second (learned decode speed; null until seen)}] }
std::string state_json(const core::Snapshot& snapshot, const config::Config& config,
                       const StateContext& context);

}  // namespace sluice::app
