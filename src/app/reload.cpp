// Reload decision and change description. See reload.hpp.
//
// Changes are found by diffing the two effective configs as JSON (dump_config, every field with
// its default filled in) with nlohmann's RFC 6902 diff, so every field the config module knows is
// covered without a hand-kept list here. The fleet's backends are compared by name.
#include "sluice/app/reload.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>

#include "sluice/config/source_map.hpp"

namespace sluice::app {
namespace {

using json = nlohmann::ordered_json;

// "/scheduler/workloads/0/priority" -> "scheduler.workloads[0].priority", as config messages
// show a place (config::display_pointer); a token is an index where either document has an array.
std::string display_path(const std::string& pointer, const json& before, const json& after) {
  auto is_array = [&](std::string_view prefix) {
    const json::json_pointer at{std::string(prefix)};
    return (before.contains(at) && before.at(at).is_array()) ||
           (after.contains(at) && after.at(at).is_array());
  };
  std::string out = config::display_pointer(pointer, is_array);
  return out.empty() ? "(root)" : out;
}

// A fleet's backends are matched by name, not by position: "upstreams" becomes an object keyed
// by name before diffing, so removing the first backend reads as one removal, not as every
// later one changing. The names in file order, for the order line.
std::vector<std::string> key_backends_by_name(json& config) {
  std::vector<std::string> names;
  auto it = config.find("upstreams");
  if (it == config.end() || !it->is_array()) return names;
  json keyed = json::object();
  for (const json& backend : *it) {
    const std::string name = backend.value("name", std::string());
    names.push_back(name);
    keyed[name] = backend;
  }
  *it = std::move(keyed);
  return names;
}

// "/upstreams/gpu-b/models/0" -> "upstreams[gpu-b].models[0]" (backend names have no '/' or '~').
std::string display_backend_path(const std::string& pointer, const json& before,
                                 const json& after) {
  constexpr std::string_view kPrefix = "/upstreams/";
  const std::size_t end = pointer.find('/', kPrefix.size());
  const std::string name = pointer.substr(kPrefix.size(), end - kPrefix.size());
  const std::string inside = end == std::string::npos ? std::string() : pointer.substr(end);
  const std::string base = std::string(kPrefix) + name;
  auto is_array = [&](std::string_view prefix) {
    const json::json_pointer at{base + std::string(prefix)};
    return (before.contains(at) && before.at(at).is_array()) ||
           (after.contains(at) && after.at(at).is_array());
  };
  std::string out = "upstreams[";
  out += name;
  out += "]";
  const std::string rest = config::display_pointer(inside, is_array);
  if (!rest.empty()) {
    if (rest.front() != '[') out += '.';
    out += rest;
  }
  return out;
}

std::string short_value(const json& v) {
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr std::size_t kMax = 160;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

}  // namespace

std::string_view to_string(ReloadOutcome::Status status) {
  switch (status) {
    case ReloadOutcome::Status::applied:
      return "applied";
    case ReloadOutcome::Status::unchanged:
      return "unchanged";
    case ReloadOutcome::Status::invalid:
      return "invalid";
    case ReloadOutcome::Status::needs_restart:
      return "needs_restart";
    case ReloadOutcome::Status::failed:
      return "failed";
  }
  return "failed";
}

int ReloadOutcome::http_status() const {
  switch (status) {
    case Status::applied:
    case Status::unchanged:
      return 200;
    case Status::invalid:
      return 400;
    case Status::needs_restart:
      return 409;
    case Status::failed:
      return 500;
  }
  return 500;
}

std::string ReloadOutcome::to_json() const {
  json out = {{"status", std::string(to_string(status))}, {"message", message}};
  if (!changes.empty()) out["changes"] = changes;
  if (!errors.empty()) out["errors"] = errors;
  if (!warnings.empty()) out["warnings"] = warnings;
  if (http_status() >= 400) out["error"] = message;
  return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::vector<std::string> describe_changes(const config::Config& old, const config::Config& next,
                                          std::size_t max_lines) {
  json before = json::parse(config::dump_config(old));
  json after = json::parse(config::dump_config(next));
  const std::vector<std::string> names_before = key_backends_by_name(before);
  const std::vector<std::string> names_after = key_backends_by_name(after);
  const json patch = json::diff(before, after);
  std::vector<std::string> lines;
  // The backends kept, in a new order (placement breaks ties by it); an object diff cannot see it.
  auto kept = [](const std::vector<std::string>& names, const std::vector<std::string>& other) {
    std::vector<std::string> out;
    for (const std::string& name : names) {
      if (std::find(other.begin(), other.end(), name) != other.end()) out.push_back(name);
    }
    return out;
  };
  const std::vector<std::string> order_before = kept(names_before, names_after);
  const std::vector<std::string> order_after = kept(names_after, names_before);
  if (order_before != order_after) {
    auto join = [](const std::vector<std::string>& names) {
      std::string out;
      for (const std::string& name : names) {
        if (!out.empty()) out += ", ";
        out += name;
      }
      return out;
    };
    lines.push_back("upstreams: order " + join(order_before) + " -> " + join(order_after));
  }
  std::map<std::string, std::size_t> appended;  // array pointer -> elements added at its end
  for (std::size_t i = 0; i < patch.size(); ++i) {
    const json& op = patch[i];
    if (lines.size() == max_lines) {
      lines.push_back("... and " + std::to_string(patch.size() - i) + " more");
      break;
    }
    std::string pointer = op.at("path").get<std::string>();
    if (pointer.ends_with("/-")) {  // RFC 6902 "append": show the index it lands at
      const std::string array = pointer.substr(0, pointer.size() - 2);
      const std::size_t index = before.at(json::json_pointer(array)).size() + appended[array]++;
      pointer = array + "/" + std::to_string(index);
    }
    const std::string kind = op.at("op").get<std::string>();
    const std::string where = pointer.starts_with("/upstreams/")
                                  ? display_backend_path(pointer, before, after)
                                  : display_path(pointer, before, after);
    if (kind == "replace") {
      const json::json_pointer ptr(pointer);
      lines.push_back(where + ": " + short_value(before.at(ptr)) + " -> " +
                      short_value(op.at("value")));
    } else if (kind == "add") {
      lines.push_back(where + ": added " + short_value(op.at("value")));
    } else if (kind == "remove") {
      const json::json_pointer ptr(pointer);
      lines.push_back(where + ": removed (was " + short_value(before.at(ptr)) + ")");
    } else {
      lines.push_back(where + ": changed");
    }
  }
  return lines;
}

ReloadPlan plan_reload(const config::Config& running, const std::optional<std::string>& config_file,
                       const Overrides& overrides) {
  ReloadPlan plan;
  ReloadOutcome& out = plan.outcome;
  if (!config_file) {
    out.status = ReloadOutcome::Status::needs_restart;
    out.message = "sluice was started without --config: there is no file to reload";
    return plan;
  }
  config::ConfigResult loaded = load_effective_config(config_file, overrides);
  for (const config::ConfigDiagnostic& w : loaded.warnings)
    out.warnings.push_back(w.to_string());
  if (!loaded.ok()) {
    out.status = ReloadOutcome::Status::invalid;
    for (const config::ConfigDiagnostic& e : loaded.errors)
      out.errors.push_back(e.to_string());
    out.message = "config " + *config_file + " is invalid (" + std::to_string(out.errors.size()) +
                  (out.errors.size() == 1 ? " error" : " errors") + "); nothing changed";
    return plan;
  }
  std::string reason = config::reload_incompatibility(running, *loaded.config);
  if (!reason.empty()) {
    out.status = ReloadOutcome::Status::needs_restart;
    out.message = reason + "; nothing changed";
    return plan;
  }
  const std::size_t change_count = describe_changes(running, *loaded.config, SIZE_MAX).size();
  out.changes = describe_changes(running, *loaded.config);
  if (out.changes.empty()) {
    out.status = ReloadOutcome::Status::unchanged;
    out.message = "config " + *config_file + " reloaded: no changes";
    return plan;
  }
  out.status = ReloadOutcome::Status::applied;
  out.message = "config " + *config_file + " reloaded: " + std::to_string(change_count) +
                (change_count == 1 ? " change" : " changes");
  plan.next = std::make_shared<const config::Config>(std::move(*loaded.config));
  return plan;
}

}  // namespace sluice::app
