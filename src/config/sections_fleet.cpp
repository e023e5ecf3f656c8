// The fleet's sections: `upstreams` (the backends) and `fleet` (placement, health, failover),
// and the backends the rest of sluice sees once every section is read (derive_backends). See
// sections.hpp.
#include <algorithm>
#include <string>
#include <vector>

#include "sections.hpp"
#include "sluice/core/fleet.hpp"
#include "sluice/core/limits.hpp"

namespace sluice::config::detail {
namespace {

constexpr Duration kMaxLoadTime = std::chrono::hours(1);

// ---- upstreams (the fleet, issue 12) ----

constexpr std::size_t kMaxBackendNameBytes = 64;

bool is_backend_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool check_backend_name(Context& ctx, const Path& p, std::string& name) {
  if (name.empty() || name.size() > kMaxBackendNameBytes ||
      !std::all_of(name.begin(), name.end(), is_backend_name_char)) {
    std::string message = "must be 1 to ";
    message += std::to_string(kMaxBackendNameBytes);
    message += " letters, digits, '.', '_' or '-', not ";
    message += json(name).dump();
    ctx.error(p, std::move(message));
    return false;
  }
  return true;
}

// A static catalog: model names, none empty, none twice (Ollama's spelling: "m" is "m:latest").
void read_models(Context& ctx, const json& v, const Path& p, BackendConfig& backend) {
  if (!check_array(ctx, v, p, "model names", core::kMaxModels)) return;
  std::vector<std::string> models;
  std::unordered_map<std::string, std::size_t> seen;  // canonical name -> its index
  bool ok = true;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string model;
    if (!read_string(ctx, v[i], p[i], model)) {
      ok = false;
      continue;
    }
    if (model.empty()) {
      ctx.error(p[i], "must not be empty");
      ok = false;
      continue;
    }
    auto [same, added] = seen.emplace(core::canonical_model(model), i);
    if (!added) {
      std::string message = "model ";
      message += json(model).dump();
      message += " is listed twice (also ";
      message += p[same->second].display;
      message += ")";
      ctx.error(p[i], std::move(message));
      ok = false;
      continue;
    }
    models.push_back(std::move(model));
  }
  if (ok) backend.models = std::move(models);
}

}  // namespace

// One entry of "upstreams": its name, the upstream table's fields (url, timeouts, idle
// connections) for its own UpstreamConfig, its slots and its static catalog.
const Fields<BackendConfig>& backend_fields() {
  using B = BackendConfig;
  static const Fields<B> fields =
      Fields<B>()
          .string("name", &B::name, check_backend_name)
          .embed(&B::upstream, upstream_fields())
          .custom(
              "max_concurrency", FieldKind::other,
              [](Context& ctx, const json& v, const Path& p, B& b) {
                read_limit(ctx, v, p, &b.max_concurrency, b.auto_concurrency);
              },
              [](const B& b) { return dump_limit(b.max_concurrency, b.auto_concurrency); })
          .custom(
              "auto_concurrency", FieldKind::object, auto_concurrency_fields,
              [](Context& ctx, const json& v, const Path& p, B& b) {
                read_auto_concurrency(ctx, v, p, b.auto_concurrency);
              },
              [](const B& b) { return dump_auto_concurrency(b.auto_concurrency); })
          .custom("models", FieldKind::other, read_models,
                  [](const B& b) { return DumpJson(b.models); });
  return fields;
}

namespace {

// `shared` (the upstream block, read before) gives every setting the entry leaves out.
void read_backend(Context& ctx, const json& node, const Path& path, const UpstreamConfig& shared,
                  BackendConfig& backend) {
  backend.upstream = shared;
  ObjectReader r(ctx, node, path);
  read_fields(r, backend_fields(), backend);
  if (!r.valid()) return;
  std::string which;
  if (!backend.name.empty()) {
    which = " (backend ";
    which += json(backend.name).dump();
    which += ")";
  }
  for (std::string_view key : {"name", "url", "max_concurrency"}) {
    if (!r.has(key)) ctx.error(path / key, "required" + which);
  }
}

}  // namespace

void read_upstreams(Context& ctx, const json& v, const Path& p, Config& c) {
  c.fleet = true;
  if (!check_array(ctx, v, p, "backends", core::kMaxBackends)) return;
  if (v.empty()) {
    ctx.error(p, "must list at least one backend (for a single Ollama, set upstream.url instead)");
    return;
  }
  std::vector<BackendConfig> backends;
  for (std::size_t i = 0; i < v.size(); ++i) {
    BackendConfig backend;
    read_backend(ctx, v[i], p[i], c.upstream, backend);
    for (std::size_t j = 0; j < backends.size(); ++j) {
      if (!backend.name.empty() && backends[j].name == backend.name) {
        std::string message = "duplicate backend name ";
        message += json(backend.name).dump();
        message += " (also ";
        message += p[j].display;
        message += ")";
        ctx.error(p[i] / "name", std::move(message));
      }
    }
    backends.push_back(std::move(backend));
  }
  c.backends = std::move(backends);
}

DumpJson dump_upstreams(const Config& c) {
  if (!c.fleet) return DumpJson();  // the single upstream is `upstream`
  DumpJson list = DumpJson::array();
  for (const BackendConfig& backend : c.backends)
    list.push_back(dump_fields(backend_fields(), backend));
  return list;
}

namespace {

// ---- fleet ----

constexpr Duration kMinHealthInterval = std::chrono::milliseconds(100);
constexpr Duration kMaxHealthInterval = std::chrono::hours(1);
constexpr std::int64_t kMaxDiscoverEvery = 1000;
constexpr std::int64_t kMaxFailuresInARow = 1000;

void read_placement(Context& ctx, const json& v, const Path& p, FleetConfig& f) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  for (auto placement : {Placement::model_aware, Placement::least_loaded}) {
    if (text == to_string(placement)) {
      f.placement = placement;
      return;
    }
  }
  ctx.error(p, "must be \"model_aware\" or \"least_loaded\", not " + json(text).dump());
}

}  // namespace

const Fields<FleetConfig>& fleet_fields() {
  using F = FleetConfig;
  static const Fields<F> fields =
      Fields<F>()
          .custom("placement", FieldKind::string, read_placement,
                  [](const F& f) { return DumpJson(std::string(to_string(f.placement))); })
          .duration("health_interval", &F::health_interval, kMinHealthInterval, kMaxHealthInterval)
          .duration("health_timeout", &F::health_timeout, kPositive, kMaxHealthInterval)
          .integer("discover_every", &F::discover_every, 1, kMaxDiscoverEvery)
          .integer(
              "unhealthy_after", [](auto& f) -> auto& { return f.health.unhealthy_after; }, 1,
              kMaxFailuresInARow)
          .integer(
              "eject_after", [](auto& f) -> auto& { return f.health.eject_after; }, 1,
              kMaxFailuresInARow)
          .duration(
              "base_ejection", [](auto& f) -> auto& { return f.health.base_ejection; }, kPositive)
          .duration(
              "max_ejection", [](auto& f) -> auto& { return f.health.max_ejection; }, kPositive)
          .boolean("retry_before_headers", &F::retry_before_headers)
          .duration("load_time", &F::load_time, kPositive, kMaxLoadTime)
          .duration("load_threshold", &F::load_threshold, kPositive, kMaxLoadTime);
  return fields;
}

// health_timeout <= health_interval and base_ejection <= max_ejection: a default follows what the
// file sets; only two set values can contradict each other.
void read_fleet(Context& ctx, const json& node, const Path& path, FleetConfig& f) {
  ObjectReader r(ctx, node, path);
  read_fields(r, fleet_fields(), f);
  r.finish();
  if (!r.has("health_timeout")) {
    f.health_timeout = std::min(f.health_timeout, f.health_interval);
  } else if (!r.has("health_interval")) {
    f.health_interval = std::max(f.health_interval, f.health_timeout);
  } else if (!r.failed("health_timeout") && !r.failed("health_interval") &&
             f.health_timeout > f.health_interval) {
    ctx.error(path / "health_timeout",
              "must not exceed health_interval (" + core::format_duration(f.health_interval) + ")");
  }
  core::HealthPolicy& h = f.health;
  if (!r.has("max_ejection")) {
    h.max_ejection = std::max(h.max_ejection, h.base_ejection);
  } else if (!r.has("base_ejection")) {
    h.base_ejection = std::min(h.base_ejection, h.max_ejection);
  } else if (!r.failed("max_ejection") && !r.failed("base_ejection") &&
             h.max_ejection < h.base_ejection) {
    ctx.error(path / "max_ejection",
              "must be at least base_ejection (" + core::format_duration(h.base_ejection) + ")");
  }
}

// The backends the rest of sluice sees (Config::backends, never empty) and the scheduler's view
// of them, once every section is read.
void derive_backends(Context& ctx, const json& root, const ObjectReader& r, Config& c) {
  core::SchedulerConfig& core = c.scheduler.core;
  core.model_aware = c.fleet_settings.placement == Placement::model_aware;
  core.assumed_load_time = c.fleet_settings.load_time;
  core.load_threshold = c.fleet_settings.load_threshold;
  const json* scheduler = r.has("scheduler") ? &root["scheduler"] : nullptr;
  const bool cap_set =
      scheduler != nullptr && scheduler->is_object() && scheduler->contains("max_concurrency");
  if (!c.fleet) {
    // A fleet of one: the single upstream, with every slot of the scheduler. With "auto" the
    // scheduler's max_concurrency only caps the learned limit: unset, it is auto's max.
    core.auto_concurrency = c.upstream.auto_concurrency;
    if (core.auto_concurrency && !cap_set) core.max_concurrency = core.auto_concurrency->max;
    c.backends = {BackendConfig{.name = c.upstream.host_header,
                                .upstream = c.upstream,
                                .max_concurrency = core.max_concurrency,
                                .auto_concurrency = core.auto_concurrency}};
    return;
  }
  if (c.upstream.auto_concurrency) {
    ctx.error(Path{} / "upstream" / "max_concurrency",
              "with upstreams, set \"max_concurrency\": \"auto\" on each upstreams[] entry");
  }
  core.auto_concurrency.reset();
  const json* upstream = r.has("upstream") ? &root["upstream"] : nullptr;
  if (upstream != nullptr && upstream->is_object() && upstream->contains("url")) {
    ctx.error(Path{} / "upstream" / "url",
              "use upstreams, or upstream.url for a single Ollama, not both");
  }
  core.backends.clear();
  std::int64_t slots = 0;
  for (BackendConfig& backend : c.backends) {
    // An adaptive backend starts at its min; its max counts toward the fleet's slots.
    if (backend.auto_concurrency) backend.max_concurrency = backend.auto_concurrency->min;
    core.backends.push_back({.name = backend.name,
                             .max_concurrency = backend.max_concurrency,
                             .auto_concurrency = backend.auto_concurrency,
                             .models = backend.models});
    const std::int64_t most =
        backend.auto_concurrency ? backend.auto_concurrency->max : backend.max_concurrency;
    slots = std::min(slots + most, core::kMaxConcurrency);
  }
  // Unset, the global cap is the fleet's slots: it never holds a backend back.
  if (!cap_set && slots > 0) core.max_concurrency = slots;
}

}  // namespace sluice::config::detail
