// sluice's Prometheus metrics (DESIGN.md §4), kept in a prometheus-cpp Registry and serialized to
// the text exposition format by serialize(); the admin listener serves that on GET /metrics.
//
//   sluice_requests_total{workload,outcome}            counter
//   sluice_queue_length{workload}                      gauge    parked requests
//   sluice_inflight{workload}                          gauge    admitted, not yet released
//   sluice_queue_wait_seconds{workload}                histogram
//   sluice_request_duration_seconds{workload}          histogram end to end, queue included
//   sluice_time_to_first_byte_seconds{workload}        histogram arrival -> first response byte
//   sluice_tokens_total{workload,kind}                 counter  kind = prompt | output
//   sluice_upstream_errors_total{kind}                 counter
//   sluice_concurrency_limit                           gauge    scheduler.max_concurrency
//   sluice_concurrency_limit{backend}                  gauge    its limit in force (auto: learned)
//   sluice_backend_up{backend}                         gauge    1 when placement may use it
//   sluice_backend_inflight{backend}                   gauge    requests running on it
//   sluice_backend_requests_total{backend,outcome}     counter  requests sent to it, ended
//   sluice_backend_model_loads_total{backend,model}    counter  loads seen in load_duration
//   sluice_backend_faster_slot_waits_total{backend}    counter  requests that waited for a
//                                                               faster slot and ran on it
//
// Bounded cardinality, by construction: a `workload` label value is either a name registered from
// the config (constructor, add_workloads) or one of the two pseudo-workloads "passthrough"
// (unscheduled routes) and "unclassified" (requests refused before they had a workload). Series
// are only reachable through a Metrics::Workload handle, which only Metrics hands out; asking for
// an unknown name yields the "unclassified" handle, so no client-supplied string ever becomes a
// label value. `outcome` and `kind` come from the enums in events.hpp. At most
// kMaxWorkloadSeries names are registered over the process lifetime (reloads included).
//
// A `backend` label value is a configured backend's name (set_backends(), from the config: at
// most kMaxBackendSeries); a backend a reload removes loses its series (Family::Remove), and a
// request still finishing on it afterwards is not counted. A `model` label value is a name the
// fleet knows (a catalog or /api/ps listed it; the caller maps any other name to ""), at most
// kMaxModelLoadSeries per backend; "" and names beyond the cap count as "other". Model-load
// series appear with the first load on a backend, so the whole is bounded by
// kMaxBackendSeries x (kMaxModelLoadSeries + 1) + the outcome and gauge series.
//
// All series exist from registration on, at 0, so dashboards see every workload and outcome
// before the first request. Recording (count_*, observe_*, add_*, set_*) is lock-free and safe
// from any thread; workload(), add_workloads() and serialize() take an internal lock.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/core/time.hpp"
#include "sluice/obs/events.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace sluice::core {
struct Snapshot;
}

namespace sluice::obs {

inline constexpr std::size_t kMaxWorkloadSeries = 1024;
/// Backends with series at once (the config allows no more: core::kMaxBackends).
inline constexpr std::size_t kMaxBackendSeries = 64;
/// Model names with their own sluice_backend_model_loads_total series, per backend.
inline constexpr std::size_t kMaxModelLoadSeries = 32;
/// The `model` label of loads of a model the fleet does not know, or beyond the cap.
inline constexpr std::string_view kOtherModel = "other";

/// Histogram bucket upper bounds in seconds, shared by the three latency histograms: from 1 ms
/// (a passthrough /api/tags, an immediate admission) to 10 minutes (a long generation).
const std::vector<double>& latency_buckets();

class Metrics {
 public:
  struct Series;         // one workload's metric children; defined in metrics.cpp
  struct Families;       // the metric families; defined in metrics.cpp
  struct BackendSeries;  // one backend's children; defined in metrics.cpp

  /// A workload's series. Cheap to copy; valid as long as the Metrics that made it. A
  /// default-constructed handle records under "unclassified".
  class Workload {
   public:
    Workload() = default;
    friend bool operator==(Workload, Workload) = default;

   private:
    friend class Metrics;
    explicit Workload(const Series* series) : series_(series) {}
    const Series* series_ = nullptr;
  };

  /// Registers `workload_names` (normally the config's workloads and default workload) plus the
  /// pseudo-workloads "passthrough" and "unclassified".
  explicit Metrics(std::span<const std::string> workload_names = {});
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// Registers names not yet known (after a reload). Names are never removed: a retired
  /// workload keeps its counters. Beyond kMaxWorkloadSeries names, extra ones are ignored and
  /// their requests count as "unclassified".
  void add_workloads(std::span<const std::string> names);

  /// The handle of a registered workload; the "unclassified" handle for any other name.
  Workload workload(std::string_view name) const;
  Workload passthrough() const { return Workload(passthrough_); }
  Workload unclassified() const { return Workload(unclassified_); }

  // ---- recording ----
  void count_request(Workload workload, Outcome outcome);
  /// Time spent parked; record 0 for a request admitted at once.
  void observe_queue_wait(Workload workload, core::Duration wait);
  /// Arrival of the request to the end of the response, queue included.
  void observe_request_duration(Workload workload, core::Duration total);
  /// Arrival of the request to the first response byte sent to the client.
  void observe_ttfb(Workload workload, core::Duration ttfb);
  /// Adds `count` tokens; counts <= 0 (unknown) are ignored.
  void add_tokens(Workload workload, TokenKind kind, std::int64_t count);
  void count_upstream_error(UpstreamError kind);
  /// Gauges of scheduled workloads; no effect on the pseudo-workloads, which never queue.
  void set_queue_length(Workload workload, std::int64_t parked);
  void set_inflight(Workload workload, std::int64_t in_flight);
  void set_concurrency_limit(std::int64_t limit);

  // ---- backends ----
  /// Makes the per-backend series match `names` (the config's backends, in order): new names
  /// get series at 0, names no longer listed lose theirs. Names beyond kMaxBackendSeries are
  /// ignored.
  void set_backends(std::span<const std::string> names);
  /// A request sent to `backend` ended with `outcome`. No effect for an unknown backend.
  void count_backend_request(std::string_view backend, Outcome outcome);
  /// `backend` reported loading `model` (core::Fleet::counts_as_load()): a name the fleet knows, or
  /// "" for any other (counted as kOtherModel). No effect for an unknown backend.
  void count_model_load(std::string_view backend, std::string_view model);

  /// Sets every queue_length / inflight gauge, the concurrency limit, the backend gauges
  /// (up, inflight) and sluice_backend_faster_slot_waits_total from a scheduler snapshot
  /// (registered workloads absent from it read 0; a registered backend absent from it reads down
  /// with nothing in flight). Call right before serialize().
  void update_from(const core::Snapshot& snapshot);

  /// Prometheus text exposition format (version 0.0.4) of every metric.
  std::string serialize() const;

  /// The underlying registry (for tests and for adding process metrics).
  prometheus::Registry& registry() { return *registry_; }

 private:
  const Series* series_for(std::string_view name) const;  // requires lock held
  void insert_series(std::unique_ptr<Series> series);     // requires lock held (or ctor)
  const Series& resolve(Workload workload) const;
  BackendSeries* backend_series(std::string_view name) const;  // requires lock held
  void remove_backend(BackendSeries& series);                  // requires lock held

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  mutable std::mutex mutex_;  // guards series_ (the table, not the metric values)
  std::vector<std::unique_ptr<Series>> series_;
  std::unordered_map<std::string_view, const Series*> by_name_;  // views into Series::name
  const Series* passthrough_ = nullptr;
  const Series* unclassified_ = nullptr;
  std::vector<std::unique_ptr<BackendSeries>> backends_;  // guarded by mutex_
  std::array<prometheus::Counter*, kUpstreamErrorCount> upstream_errors_{};
  prometheus::Gauge* concurrency_limit_ = nullptr;
};

}  // namespace sluice::obs
