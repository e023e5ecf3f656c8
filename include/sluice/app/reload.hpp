// Live reload (SIGHUP, POST /admin/reload): deciding whether a new config may replace the running
// one, and describing what changed. Pure apart from reading the config file.
//
// The decision, in order (docs/configuration.md "Reloading"):
//   1. the file (plus the command-line overrides given at start) must load and validate, else
//      `invalid` (HTTP 400) and nothing changes;
//   2. reload_incompatibility(old, next) must be "", else `needs_restart` (HTTP 409) and nothing
//      changes;
//   3. if nothing differs, `unchanged` (HTTP 200); otherwise `applied` (HTTP 200) once the caller
//      has swapped the config in, or `failed` (HTTP 500) if applying it was refused.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sluice/app/cli.hpp"
#include "sluice/config/config.hpp"

namespace sluice::app {

struct ReloadOutcome {
  enum class Status : std::uint8_t { applied, unchanged, invalid, needs_restart, failed };
  Status status = Status::failed;
  std::string message;                ///< one line for the log and the HTTP answer
  std::vector<std::string> errors;    ///< invalid: every diagnostic, "file:line: field: message"
  std::vector<std::string> warnings;  ///< legal but suspicious settings in the new config
  std::vector<std::string> changes;   ///< applied: "scheduler.max_concurrency: 1 -> 3"

  int http_status() const;
  /// {"status": "applied", "message": ..., "changes": [...], "errors": [...], "warnings": [...]}
  std::string to_json() const;
};

std::string_view to_string(ReloadOutcome::Status status);

/// The fields that differ between two configs, one line each ("scheduler.max_concurrency: 1 ->
/// 3", "scheduler.workloads[2]: added {...}"), in document order, at most `max_lines` (a final
/// "... and N more" line when cut).
std::vector<std::string> describe_changes(const config::Config& old, const config::Config& next,
                                          std::size_t max_lines = 40);

/// Steps 1-3 above without applying anything. On `applied`, `next` holds the config to swap in
/// (the caller may still turn the outcome into `failed`).
struct ReloadPlan {
  ReloadOutcome outcome;
  std::shared_ptr<const config::Config> next;
};
ReloadPlan plan_reload(const config::Config& running, const std::optional<std::string>& config_file,
                       const Overrides& overrides);

}  // namespace sluice::app
