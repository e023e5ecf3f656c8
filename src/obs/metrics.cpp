// Metrics: prometheus-cpp families and per-workload series (see metrics.hpp for the contract).
//
// Each registered workload owns one Series: pointers to its children in every family, created
// when the workload is registered and never removed. A Series lives in a unique_ptr, so the
// Workload handles pointing at it stay valid while the table grows.
#include "sluice/obs/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <unordered_map>
#include <utility>

#include "sluice/config/config.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::obs {

std::string_view name(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok:
      return "ok";
    case Outcome::upstream_5xx:
      return "upstream_5xx";
    case Outcome::upstream_error:
      return "upstream_error";
    case Outcome::queue_timeout:
      return "queue_timeout";
    case Outcome::queue_full:
      return "queue_full";
    case Outcome::user_queue_full:
      return "user_queue_full";
    case Outcome::shutting_down:
      return "shutting_down";
    case Outcome::invalid_request:
      return "invalid_request";
    case Outcome::client_gone:
      return "client_gone";
    case Outcome::inflight_timeout:
      return "inflight_timeout";
  }
  return "unknown";
}

std::string_view name(UpstreamError error) {
  switch (error) {
    case UpstreamError::connect_failed:
      return "connect_failed";
    case UpstreamError::connect_timeout:
      return "connect_timeout";
    case UpstreamError::header_timeout:
      return "header_timeout";
    case UpstreamError::idle_timeout:
      return "idle_timeout";
    case UpstreamError::reset:
      return "reset";
    case UpstreamError::bad_response:
      return "bad_response";
  }
  return "unknown";
}

std::string_view name(TokenKind kind) {
  return kind == TokenKind::prompt ? "prompt" : "output";
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10,   20,
                                              30,    60,     120,   180,  240,   300,  600};
  return buckets;
}

struct Metrics::Series {
  std::string name;
  std::array<prometheus::Counter*, kOutcomeCount> requests{};
  std::array<prometheus::Counter*, kTokenKindCount> tokens{};
  prometheus::Histogram* queue_wait = nullptr;
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* ttfb = nullptr;
  prometheus::Gauge* queue_length = nullptr;  // null for the pseudo-workloads
  prometheus::Gauge* inflight = nullptr;
};

struct Metrics::Families {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Gauge>& queue_length;
  prometheus::Family<prometheus::Gauge>& inflight;
  prometheus::Family<prometheus::Histogram>& queue_wait;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Family<prometheus::Histogram>& ttfb;
  prometheus::Family<prometheus::Counter>& tokens;
  prometheus::Family<prometheus::Counter>& upstream_errors;
  prometheus::Family<prometheus::Gauge>& concurrency_limit;
  prometheus::Family<prometheus::Gauge>& backend_up;
  prometheus::Family<prometheus::Gauge>& backend_inflight;
  prometheus::Family<prometheus::Counter>& backend_requests;
  prometheus::Family<prometheus::Counter>& backend_model_loads;
  prometheus::Family<prometheus::Counter>& backend_faster_slot_waits;
};

struct Metrics::BackendSeries {
  std::string name;
  prometheus::Gauge* up = nullptr;
  prometheus::Gauge* inflight = nullptr;
  prometheus::Gauge* limit = nullptr;  ///< sluice_concurrency_limit{backend}
  std::array<prometheus::Counter*, kOutcomeCount> requests{};
  /// sluice_backend_faster_slot_waits_total: follows the scheduler's count (update_from).
  prometheus::Counter* faster_slot_waits = nullptr;
  /// By model label, created with the first load; at most kMaxModelLoadSeries + "other".
  std::vector<std::pair<std::string, prometheus::Counter*>> loads;
};

namespace {

constexpr Outcome kOutcomes[] = {Outcome::ok,
                                 Outcome::upstream_5xx,
                                 Outcome::upstream_error,
                                 Outcome::queue_timeout,
                                 Outcome::queue_full,
                                 Outcome::user_queue_full,
                                 Outcome::shutting_down,
                                 Outcome::invalid_request,
                                 Outcome::client_gone,
                                 Outcome::inflight_timeout};
static_assert(std::size(kOutcomes) == kOutcomeCount);

constexpr UpstreamError kUpstreamErrors[] = {
    UpstreamError::connect_failed, UpstreamError::connect_timeout, UpstreamError::header_timeout,
    UpstreamError::idle_timeout,   UpstreamError::reset,           UpstreamError::bad_response};
static_assert(std::size(kUpstreamErrors) == kUpstreamErrorCount);

double seconds(core::Duration d) {
  return std::chrono::duration<double>(d).count();
}

std::unique_ptr<Metrics::Series> make_series(Metrics::Families& f, std::string name,
                                             bool scheduled) {
  auto s = std::make_unique<Metrics::Series>();
  s->name = std::move(name);
  for (Outcome o : kOutcomes) {
    s->requests[static_cast<std::size_t>(o)] =
        &f.requests.Add({{"workload", s->name}, {"outcome", std::string(obs::name(o))}});
  }
  for (TokenKind k : {TokenKind::prompt, TokenKind::output}) {
    s->tokens[static_cast<std::size_t>(k)] =
        &f.tokens.Add({{"workload", s->name}, {"kind", std::string(obs::name(k))}});
  }
  s->queue_wait = &f.queue_wait.Add({{"workload", s->name}}, latency_buckets());
  s->duration = &f.duration.Add({{"workload", s->name}}, latency_buckets());
  s->ttfb = &f.ttfb.Add({{"workload", s->name}}, latency_buckets());
  if (scheduled) {
    s->queue_length = &f.queue_length.Add({{"workload", s->name}});
    s->inflight = &f.inflight.Add({{"workload", s->name}});
  }
  return s;
}

}  // namespace

Metrics::Metrics(std::span<const std::string> workload_names)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  families_ = std::unique_ptr<Families>(new Families{
      prometheus::BuildCounter()
          .Name("sluice_requests_total")
          .Help("Requests handled, by workload and outcome")
          .Register(r),
      prometheus::BuildGauge()
          .Name("sluice_queue_length")
          .Help("Requests parked in the queue, by workload")
          .Register(r),
      prometheus::BuildGauge()
          .Name("sluice_inflight")
          .Help("Admitted requests holding a concurrency slot, by workload")
          .Register(r),
      prometheus::BuildHistogram()
          .Name("sluice_queue_wait_seconds")
          .Help("Time requests spent parked before admission (0 when admitted at once)")
          .Register(r),
      prometheus::BuildHistogram()
          .Name("sluice_request_duration_seconds")
          .Help("End-to-end request duration, from arrival to the end of the response, queue "
                "included")
          .Register(r),
      prometheus::BuildHistogram()
          .Name("sluice_time_to_first_byte_seconds")
          .Help("From arrival to the first response byte sent to the client, queue included")
          .Register(r),
      prometheus::BuildCounter()
          .Name("sluice_tokens_total")
          .Help("Tokens reported by the upstream, by workload and kind (prompt, output)")
          .Register(r),
      prometheus::BuildCounter()
          .Name("sluice_upstream_errors_total")
          .Help("Failures to get a complete answer from the upstream, by kind")
          .Register(r),
      prometheus::BuildGauge()
          .Name("sluice_concurrency_limit")
          .Help(
              "The configured scheduler.max_concurrency (no label); each backend's limit in force, "
              "learned with \"max_concurrency\": \"auto\" (backend label)")
          .Register(r),
      prometheus::BuildGauge()
          .Name("sluice_backend_up")
          .Help("1 when the backend may take requests (health checks pass, not ejected), else 0")
          .Register(r),
      prometheus::BuildGauge()
          .Name("sluice_backend_inflight")
          .Help("Requests running on the backend")
          .Register(r),
      prometheus::BuildCounter()
          .Name("sluice_backend_requests_total")
          .Help("Requests sent to the backend (scheduled and pass-through), by how they ended")
          .Register(r),
      prometheus::BuildCounter()
          .Name("sluice_backend_model_loads_total")
          .Help("Model loads the backend reported (a load_duration of at least 250 ms), by model; "
                "models the fleet does not know count as \"other\"")
          .Register(r),
      prometheus::BuildCounter()
          .Name("sluice_backend_faster_slot_waits_total")
          .Help("Requests that left a free slot on a slower backend to lower-priority work, "
                "waited for a faster slot and ran on this backend")
          .Register(r),
  });
  for (UpstreamError e : kUpstreamErrors) {
    upstream_errors_[static_cast<std::size_t>(e)] =
        &families_->upstream_errors.Add({{"kind", std::string(name(e))}});
  }
  concurrency_limit_ = &families_->concurrency_limit.Add({});

  insert_series(make_series(*families_, std::string(config::kPassthroughWorkload), false));
  passthrough_ = series_.back().get();
  insert_series(make_series(*families_, std::string(config::kUnclassifiedWorkload), false));
  unclassified_ = series_.back().get();
  add_workloads(workload_names);
}

Metrics::~Metrics() = default;

void Metrics::add_workloads(std::span<const std::string> names) {
  std::lock_guard lock(mutex_);
  for (const std::string& n : names) {
    if (series_for(n) != nullptr) continue;
    if (series_.size() >= kMaxWorkloadSeries + 2) break;
    insert_series(make_series(*families_, n, true));
  }
}

const Metrics::Series* Metrics::series_for(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

void Metrics::insert_series(std::unique_ptr<Series> series) {
  by_name_.emplace(series->name, series.get());
  series_.push_back(std::move(series));
}

Metrics::Workload Metrics::workload(std::string_view name) const {
  std::lock_guard lock(mutex_);
  const Series* s = series_for(name);
  return Workload(s != nullptr ? s : unclassified_);
}

const Metrics::Series& Metrics::resolve(Workload workload) const {
  return workload.series_ != nullptr ? *workload.series_ : *unclassified_;
}

void Metrics::count_request(Workload workload, Outcome outcome) {
  resolve(workload).requests[static_cast<std::size_t>(outcome)]->Increment();
}

void Metrics::observe_queue_wait(Workload workload, core::Duration wait) {
  resolve(workload).queue_wait->Observe(seconds(wait));
}

void Metrics::observe_request_duration(Workload workload, core::Duration total) {
  resolve(workload).duration->Observe(seconds(total));
}

void Metrics::observe_ttfb(Workload workload, core::Duration ttfb) {
  resolve(workload).ttfb->Observe(seconds(ttfb));
}

void Metrics::add_tokens(Workload workload, TokenKind kind, std::int64_t count) {
  if (count <= 0) return;
  resolve(workload).tokens[static_cast<std::size_t>(kind)]->Increment(static_cast<double>(count));
}

void Metrics::count_upstream_error(UpstreamError kind) {
  upstream_errors_[static_cast<std::size_t>(kind)]->Increment();
}

void Metrics::set_queue_length(Workload workload, std::int64_t parked) {
  if (auto* g = resolve(workload).queue_length) g->Set(static_cast<double>(parked));
}

void Metrics::set_inflight(Workload workload, std::int64_t in_flight) {
  if (auto* g = resolve(workload).inflight) g->Set(static_cast<double>(in_flight));
}

void Metrics::set_concurrency_limit(std::int64_t limit) {
  concurrency_limit_->Set(static_cast<double>(limit));
}

void Metrics::update_from(const core::Snapshot& snapshot) {
  // A name can appear twice (a retired workload and its re-added successor): sum them.
  std::unordered_map<std::string_view, std::pair<std::int64_t, std::int64_t>> totals;
  for (const core::WorkloadStats& w : snapshot.workloads) {
    auto& [parked, in_flight] = totals[w.name];
    parked += w.parked;
    in_flight += w.in_flight;
  }
  std::lock_guard lock(mutex_);
  for (const auto& s : series_) {
    if (s->queue_length == nullptr) continue;
    auto it = totals.find(s->name);
    const auto [parked, in_flight] =
        it == totals.end() ? std::pair<std::int64_t, std::int64_t>{} : it->second;
    s->queue_length->Set(static_cast<double>(parked));
    s->inflight->Set(static_cast<double>(in_flight));
  }
  concurrency_limit_->Set(static_cast<double>(snapshot.max_concurrency));
  for (const auto& b : backends_) {
    // Retired backends (removed by a reload, still finishing) have no series; a name can
    // appear once live.
    auto it =
        std::find_if(snapshot.backends.begin(), snapshot.backends.end(),
                     [&](const core::BackendView& v) { return v.name == b->name && !v.retired; });
    const bool found = it != snapshot.backends.end();
    b->up->Set(found && it->up ? 1 : 0);
    b->inflight->Set(found ? static_cast<double>(it->in_flight) : 0);
    if (found) b->limit->Set(static_cast<double>(it->max_concurrency));
    // The scheduler counts; the counter follows (it never goes down: a backend re-added under
    // the same name got a new series from set_backends()).
    if (found && static_cast<double>(it->faster_slot_waits) > b->faster_slot_waits->Value()) {
      b->faster_slot_waits->Increment(static_cast<double>(it->faster_slot_waits) -
                                      b->faster_slot_waits->Value());
    }
  }
}

Metrics::BackendSeries* Metrics::backend_series(std::string_view name) const {
  for (const auto& b : backends_) {
    if (b->name == name) return b.get();
  }
  return nullptr;
}

void Metrics::remove_backend(BackendSeries& series) {
  families_->backend_up.Remove(series.up);
  families_->backend_inflight.Remove(series.inflight);
  families_->concurrency_limit.Remove(series.limit);
  for (prometheus::Counter* c : series.requests)
    families_->backend_requests.Remove(c);
  for (const auto& [model, counter] : series.loads)
    families_->backend_model_loads.Remove(counter);
  families_->backend_faster_slot_waits.Remove(series.faster_slot_waits);
}

void Metrics::set_backends(std::span<const std::string> names) {
  std::lock_guard lock(mutex_);
  std::vector<std::unique_ptr<BackendSeries>> next;
  for (const std::string& n : names) {
    if (next.size() >= kMaxBackendSeries) break;
    if (std::any_of(next.begin(), next.end(), [&](const auto& b) { return b->name == n; }))
      continue;
    auto kept = std::find_if(backends_.begin(), backends_.end(),
                             [&](const auto& b) { return b && b->name == n; });
    if (kept != backends_.end()) {
      next.push_back(std::move(*kept));
      continue;
    }
    auto b = std::make_unique<BackendSeries>();
    b->name = n;
    b->up = &families_->backend_up.Add({{"backend", n}});
    b->inflight = &families_->backend_inflight.Add({{"backend", n}});
    b->limit = &families_->concurrency_limit.Add({{"backend", n}});
    b->faster_slot_waits = &families_->backend_faster_slot_waits.Add({{"backend", n}});
    for (Outcome o : kOutcomes) {
      b->requests[static_cast<std::size_t>(o)] =
          &families_->backend_requests.Add({{"backend", n}, {"outcome", std::string(name(o))}});
    }
    next.push_back(std::move(b));
  }
  for (const auto& old : backends_) {
    if (old) remove_backend(*old);  // not moved into `next`: no longer configured
  }
  backends_ = std::move(next);
}

void Metrics::count_backend_request(std::string_view backend, Outcome outcome) {
  std::lock_guard lock(mutex_);
  if (BackendSeries* b = backend_series(backend))
    b->requests[static_cast<std::size_t>(outcome)]->Increment();
}

void Metrics::count_model_load(std::string_view backend, std::string_view model) {
  std::lock_guard lock(mutex_);
  BackendSeries* b = backend_series(backend);
  if (b == nullptr) return;
  auto find = [b](std::string_view label) {
    return std::find_if(b->loads.begin(), b->loads.end(),
                        [label](const auto& entry) { return entry.first == label; });
  };
  std::string_view label = model.empty() ? kOtherModel : model;
  auto it = find(label);
  if (it == b->loads.end() && label != kOtherModel) {
    const std::size_t named = b->loads.size() - (find(kOtherModel) != b->loads.end() ? 1 : 0);
    if (named >= kMaxModelLoadSeries) {
      label = kOtherModel;
      it = find(label);
    }
  }
  if (it == b->loads.end()) {
    prometheus::Counter* counter =
        &families_->backend_model_loads.Add({{"backend", b->name}, {"model", std::string(label)}});
    b->loads.emplace_back(std::string(label), counter);
    it = std::prev(b->loads.end());
  }
  it->second->Increment();
}

std::string Metrics::serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace sluice::obs
