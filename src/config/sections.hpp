// The config's sections: the description (Fields table) of every object of the file and the
// readers that add each section's cross-field rules. parse_scheduler.cpp holds the scheduler
// (per_key, workloads, matchers, the derived queue timeouts); sections.cpp everything else and the
// root. Internal to src/config.
#pragma once

#include "fields.hpp"

namespace sluice::config::detail {

/// The root object; read_root() reads a whole document into `config`.
const Fields<Config>& root_fields();
void read_root(Context& ctx, const json& root, Config& config);

const Fields<SchedulerSettings>& scheduler_fields();
void read_scheduler(Context& ctx, const json& node, const Path& path, SchedulerSettings& s);

}  // namespace sluice::config::detail
