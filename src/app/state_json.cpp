// GET /admin/state document. See state_json.hpp.
#include "sluice/app/state_json.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "sluice/app/cli.hpp"

namespace sluice::app {
namespace {

using json = nlohmann::ordered_json;

double to_ms(core::Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

const core::WorkloadSpec* find_spec(const core::SchedulerConfig& config, const std::string& name) {
  if (config.default_workload.name == name) return &config.default_workload;
  for (const core::WorkloadSpec& w : config.workloads) {
    if (w.name == name) return &w;
  }
  return nullptr;
}

template <class T>
T capped(T list, std::size_t max) {
  if (list.size() > max) list.resize(max);
  return list;
}

json health_json(const std::optional<core::HealthView>& health) {
  if (!health) return nullptr;
  return {{"state", std::string(core::name(health->state))},
          {"reason", health->reason},
          {"ejected_for_ms", to_ms(health->ejected_for)},
          {"ejections", health->ejections},
          {"failed_checks", health->failed_checks},
          {"failed_requests", health->failed_requests}};
}

// The adaptive limit's state (null for a fixed max_concurrency).
json auto_json(const std::optional<core::ConcurrencyView>& view) {
  if (!view) return nullptr;
  json levels = json::array();
  for (const core::ConcurrencyView::Level& l : view->levels) {
    if (levels.size() >= kMaxStateLevels) break;
    levels.push_back({{"in_flight", l.in_flight},
                      {"samples", l.samples},
                      {"waited", l.waited},
                      {"median_wait_ms", l.median_wait_ms},
                      {"tokens_per_second", l.tokens_per_second},
                      {"median_backlog", l.median_backlog}});
  }
  return {{"min", view->min},
          {"max", view->max},
          {"probing", view->probing},
          {"last_change", view->last_change},
          {"alone_wait_ms", view->alone_wait_ms},
          {"levels", std::move(levels)}};
}

json backends_json(const core::Snapshot& snapshot, const config::Config& config) {
  json list = json::array();
  for (const core::BackendView& b : snapshot.backends) {
    if (list.size() >= kMaxStateBackends) break;
    const config::BackendConfig* configured = nullptr;
    for (const config::BackendConfig& c : config.backends) {
      if (c.name == b.name) configured = &c;
    }
    if (b.retired) configured = nullptr;  // a re-added backend of the same name is another
    json models = nullptr;                // unknown yet: it serves every model
    if (b.catalog_known) {
      models = json::array();
      for (const std::string& m : capped(b.models, kMaxStateModels))
        models.push_back(m);
    }
    // Without `upstreams` sluice does not ask /api/ps: what it placed is not worth showing.
    json loaded = nullptr;
    if (config.fleet) {
      loaded = json::array();
      for (const core::ResidentView& r : capped(b.loaded, kMaxStateModels)) {
        if (!r.model.empty()) loaded.push_back({{"model", r.model}, {"in_flight", r.in_flight}});
      }
    }
    json load_times = json::object();
    for (const core::LoadTimeView& l : capped(b.load_times, kMaxStateModels)) {
      if (!l.model.empty()) load_times[l.model] = to_ms(l.load_time);
    }
    list.push_back({
        {"name", b.name},
        {"url", configured ? json(configured->upstream.url) : json(nullptr)},
        {"up", b.up},
        {"health", health_json(b.health)},
        {"retired", b.retired},
        {"in_flight", b.in_flight},
        {"max_concurrency", b.max_concurrency},
        {"concurrency_limit", b.max_concurrency},
        {"auto_concurrency", auto_json(b.auto_concurrency)},
        {"requests", b.requests},
        {"models", std::move(models)},
        {"models_total", b.catalog_known ? json(b.models.size()) : json(nullptr)},
        {"loaded", std::move(loaded)},
        {"resident_capacity", b.resident_capacity},
        {"load_time_ms", std::move(load_times)},
        {"tokens_per_second", b.speed_known ? json(b.tokens_per_second) : json(nullptr)},
        {"faster_slot_waits", b.faster_slot_waits},
    });
  }
  return list;
}

}  // namespace

std::string state_json(const core::Snapshot& snapshot, const config::Config& config,
                       const StateContext& context) {
  const core::SchedulerConfig& sched = config.scheduler.core;
  json per_key = json::array();
  for (const core::KeyLimitSpec& k : sched.per_key) {
    per_key.push_back({{"label", k.label},
                       {"max_concurrency", k.max_concurrency},
                       {"max_tokens", k.max_tokens},
                       {"max_queue", k.max_queue}});
  }

  json workloads = json::array();
  for (const core::WorkloadStats& w : snapshot.workloads) {
    json entry = {{"name", w.name},
                  {"priority", w.priority},
                  {"band", w.band},
                  {"parked", w.parked},
                  {"in_flight", w.in_flight},
                  {"in_flight_tokens", w.in_flight_tokens},
                  {"oldest_wait_ms", w.oldest_wait ? json(to_ms(*w.oldest_wait)) : json(nullptr)}};
    if (const core::WorkloadSpec* spec = find_spec(sched, w.name); spec && !w.retired) {
      entry["queue_timeout_ms"] = to_ms(std::min(spec->queue_timeout, sched.queue_timeout_cap));
      entry["max_queue"] = spec->max_queue;
      entry["fairness_key"] = spec->fairness_label;
    }
    entry["retired"] = w.retired;
    // Its parked requests in queue order (the first net::WaitingBoard::kListedPerWorkload).
    json waiting = json::array();
    for (const core::WaitingView& v : snapshot.waiting) {
      if (v.workload != w.name) continue;
      waiting.push_back({{"id", v.id},
                         {"position", v.position},
                         {"position_exact", v.exact},
                         {"eta_ms", v.eta ? json(std::llround(to_ms(*v.eta))) : json(nullptr)},
                         {"queued_ms", std::llround(to_ms(v.queued))}});
    }
    entry["waiting"] = std::move(waiting);
    workloads.push_back(std::move(entry));
  }

  // Busiest keys first; ties by label then value so the output is stable.
  std::vector<const core::KeyStats*> keys;
  keys.reserve(snapshot.keys.size());
  for (const core::KeyStats& k : snapshot.keys)
    keys.push_back(&k);
  const std::size_t shown = std::min(keys.size(), context.max_keys);
  std::partial_sort(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(shown), keys.end(),
                    [](const core::KeyStats* a, const core::KeyStats* b) {
                      const std::int64_t la = a->parked + a->in_flight;
                      const std::int64_t lb = b->parked + b->in_flight;
                      if (la != lb) return la > lb;
                      if (a->label != b->label) return a->label < b->label;
                      return a->value < b->value;
                    });
  json key_list = json::array();
  for (std::size_t i = 0; i < shown; ++i) {
    key_list.push_back({{"label", keys[i]->label},
                        {"value", keys[i]->value},
                        {"parked", keys[i]->parked},
                        {"in_flight", keys[i]->in_flight}});
  }

  json doc = {
      {"version", version_string()},
      {"uptime_seconds", context.uptime_seconds},
      {"draining", context.draining},
      // A fleet has no single upstream: null there (each backend's url is in "backends").
      {"upstream", config.fleet ? json(nullptr) : json(config.upstream.url)},
      {"fleet", config.fleet},
      {"limits",
       {{"max_concurrency", snapshot.max_concurrency},
        {"max_inflight_tokens", sched.max_inflight_tokens},
        {"max_queue", sched.max_queue},
        {"queue_timeout_cap_ms", to_ms(sched.queue_timeout_cap)},
        {"max_inflight_duration_ms", to_ms(config.scheduler.max_inflight_duration)},
        {"per_key", std::move(per_key)}}},
      {"totals",
       {{"parked", snapshot.parked},
        {"in_flight", snapshot.in_flight},
        {"in_flight_tokens", snapshot.in_flight_tokens}}},
      {"workloads", std::move(workloads)},
      {"keys", std::move(key_list)},
      {"keys_total", snapshot.keys.size()},
      {"keys_truncated", shown < snapshot.keys.size()},
      {"backends", backends_json(snapshot, config)},
  };
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace sluice::app
