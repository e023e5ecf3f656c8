// Where each parked request stands: its position in the current order and when it should run.
// Computed by Scheduler::queue_order(now, limit); pure, time is an argument.
//
// "Current order" is the order in which the scheduler would admit the parked requests if no new
// request arrived, none left or timed out, and every running request ended when the service
// model expects (admitted + cost x the recent time per token; with no sample yet, in the order
// they were admitted). It is found by running the scheduler itself on a copy of its state —
// bands, weighted fair queuing, per-user fairness, per-key limits, token budgets and fleet
// placement (holds included) all act exactly as they will — so for a config whose admissions do
// not depend on time (no warm-slot waits) and whose slots free one at a time, `position` is
// exactly the number of parked requests that will be admitted before it. Without per-key limits,
// token budgets or a fleet, the order does not depend on which running request ends first at all.
//
// Cost bounds: the copy is O(parked requests + records); at most `limit` admissions are
// simulated (O(log n) each). A request beyond them is reported with the lower bound `ordered`.
// A queue longer than kMaxOrderedParked is not copied: every position is then the lower bound 0.
//
// ETA, three estimators (docs/waiting-clients.md compares them on the mistral-guide experiment):
//  * work: the cost (tokens) of the requests that end before its admission — of a running one,
//    what is left of it — divided by the work throughput of recent completions (cost tokens per
//    second of busy time, model loads left out). Needs four completions in the busy period (or
//    a past period's figure). Independent of how many
//    requests the backend really runs at once, which the service model below has to guess.
//  * service: the simulated time of its admission, with each running or simulated request ending
//    at admitted + cost x (average service time / average cost) of recent completions;
//  * rate: the completions its admission waits for, divided by the recent completion rate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "sluice/core/time.hpp"

namespace sluice::core {

/// Longest queue queue_order() copies (~100 B per parked request: ~20 MB).
inline constexpr std::int64_t kMaxOrderedParked = 200'000;

struct QueuePosition {
  std::int64_t position = 0;            ///< parked requests admitted before it
  std::int64_t completions_ahead = 0;   ///< running requests that end before its admission
  std::optional<Duration> eta_work;     ///< nullopt until four requests of a busy period completed
  std::optional<Duration> eta_service;  ///< nullopt until four requests completed
  std::optional<Duration> eta_rate;     ///< nullopt until four requests completed

  /// The ETA sluice reports (eta_ms): the work estimate, else the service, else the rate one.
  std::optional<Duration> eta() const {
    if (eta_work) return eta_work;
    return eta_service ? eta_service : eta_rate;
  }
};

struct QueueOrder {
  Time computed_at{};
  std::int64_t parked = 0;   ///< parked requests when computed
  std::int64_t ordered = 0;  ///< of them, how many have a position (the first ones in order)
  /// By ticket value, the first `ordered` parked requests.
  std::unordered_map<std::uint64_t, QueuePosition> positions;
  /// A parked request without a position: at least `ordered` go before it, and it runs no earlier
  /// than this (the last simulated admission); nullopt when unknown.
  std::optional<Duration> horizon;

  /// The position of a parked ticket: exact when it was ordered, else the lower bound.
  QueuePosition find(std::uint64_t ticket, bool& exact) const {
    auto it = positions.find(ticket);
    exact = it != positions.end();
    if (exact) return it->second;
    return QueuePosition{.position = ordered, .eta_service = horizon, .eta_rate = std::nullopt};
  }
};

/// One parked request as /admin/state lists it (RequestRegistry, waiting_views()).
struct WaitingView {
  std::string id;
  std::string workload;
  std::int64_t position = 0;
  bool exact = false;  ///< false: `position` is a lower bound (beyond the ordered ones)
  std::optional<Duration> eta;
  Duration queued{};
};

}  // namespace sluice::core
