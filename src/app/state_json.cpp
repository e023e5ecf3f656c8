// GET /admin/state document. See state_json.hpp.
#include "sluice/app/state_json.hpp"

#include <algorithm>
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
      {"upstream", config.upstream.url},
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
  };
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace sluice::app
