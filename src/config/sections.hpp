// The config's sections: the description (Fields table) of every object of the file and the
// readers that add each section's cross-field rules. parse_scheduler.cpp holds the scheduler
// (per_key, workloads, matchers, the derived queue timeouts); sections_fleet.cpp the fleet;
// sections.cpp everything else and the root. Internal to src/config.
#pragma once

#include "fields.hpp"

namespace sluice::config::detail {

/// The root object; read_root() reads a whole document into `config`.
const Fields<Config>& root_fields();
void read_root(Context& ctx, const json& root, Config& config);

/// The single upstream (and the shared settings every backend of a fleet starts from).
const Fields<UpstreamConfig>& upstream_fields();
/// The `upstream` block itself: those, and the single upstream's "max_concurrency": "auto".
const Fields<UpstreamConfig>& single_upstream_fields();

/// sections_auto.cpp: "max_concurrency" as a number or "auto" (`fixed` nullptr: only "auto"),
/// and the `auto_concurrency` bounds, which require "auto" (read after max_concurrency).
const Fields<core::AutoConcurrency>& auto_concurrency_fields();
void read_limit(Context& ctx, const json& v, const Path& p, std::int64_t* fixed,
                std::optional<core::AutoConcurrency>& automatic);
void read_auto_concurrency(Context& ctx, const json& v, const Path& p,
                           std::optional<core::AutoConcurrency>& automatic);
DumpJson dump_limit(std::int64_t fixed, const std::optional<core::AutoConcurrency>& automatic);
DumpJson dump_auto_concurrency(const std::optional<core::AutoConcurrency>& automatic);

/// sections_fleet.cpp: `upstreams`, `fleet`, and Config::backends and the scheduler's view of
/// them once every section was read (`r`: the root's reader).
const Fields<BackendConfig>& backend_fields();
void read_upstreams(Context& ctx, const json& v, const Path& p, Config& c);
DumpJson dump_upstreams(const Config& c);
const Fields<FleetConfig>& fleet_fields();
void read_fleet(Context& ctx, const json& node, const Path& path, FleetConfig& f);
void derive_backends(Context& ctx, const json& root, const ObjectReader& r, Config& c);

const Fields<SchedulerSettings>& scheduler_fields();
void read_scheduler(Context& ctx, const json& node, const Path& path, SchedulerSettings& s);

}  // namespace sluice::config::detail
