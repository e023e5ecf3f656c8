// Config helpers: diagnostics, reading the file (bounded), reload compatibility, and dumping the
// effective config. Parsing and validation live in parse.cpp.
#include "sluice/config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sluice/core/duration.hpp"

namespace sluice::config {

using json = nlohmann::ordered_json;

std::string HostPort::to_string() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::trace:
      return "trace";
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
    case LogLevel::critical:
      return "critical";
    case LogLevel::off:
      return "off";
  }
  return "info";
}

std::string_view to_string(LogFormat format) {
  return format == LogFormat::json ? "json" : "text";
}

std::vector<std::string> Config::workload_names() const {
  std::vector<std::string> names;
  for (const auto& workload : scheduler.core.workloads)
    names.push_back(workload.name);
  names.push_back(scheduler.core.default_workload.name);
  return names;
}

bool Config::is_scheduled_route(std::string_view path) const {
  return std::find(routes.scheduled.begin(), routes.scheduled.end(), path) !=
         routes.scheduled.end();
}

std::string ConfigDiagnostic::to_string() const {
  std::string out = source;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!field.empty()) {
    out += field;
    out += ": ";
  }
  out += message;
  return out;
}

std::string ConfigResult::error_text() const {
  std::string out;
  for (const ConfigDiagnostic& d : errors) {
    if (!out.empty()) out += '\n';
    out += d.to_string();
  }
  return out;
}

ConfigResult load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigResult result;
    result.errors.push_back({path, 0, "", std::string("cannot open: ") + std::strerror(errno)});
    return result;
  }
  // Read at most one byte more than allowed, so an oversized file is detected without reading
  // all of it (it may be a device or a FIFO).
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    ConfigResult result;
    result.errors.push_back({path, 0, "", "read error"});
    return result;
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  return parse_config(text, path);
}

std::string reload_incompatibility(const Config& old, const Config& next) {
  std::vector<std::string> fields;
  if (!(old.listen == next.listen)) fields.push_back("listen");
  if (old.admin_listen != next.admin_listen) fields.push_back("admin_listen");
  if (old.upstream.host != next.upstream.host || old.upstream.port != next.upstream.port ||
      old.upstream.base_path != next.upstream.base_path) {
    fields.push_back("upstream.url");
  }
  if (old.upstream.max_idle_connections != next.upstream.max_idle_connections) {
    fields.push_back("upstream.max_idle_connections");
  }
  const auto& old_keys = old.scheduler.core.per_key;
  const auto& next_keys = next.scheduler.core.per_key;
  bool same_labels = old_keys.size() == next_keys.size() &&
                     std::equal(old_keys.begin(), old_keys.end(), next_keys.begin(),
                                [](const auto& a, const auto& b) { return a.label == b.label; });
  if (!same_labels) fields.push_back("scheduler.per_key labels");
  if (fields.empty()) return "";
  std::string out = "changing ";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += i + 1 == fields.size() ? " and " : ", ";
    out += fields[i];
  }
  out += " needs a restart";
  return out;
}

namespace {

json duration_json(Duration d) {
  return core::format_duration(d);
}

json workload_json(const core::WorkloadSpec& w, bool is_default) {
  json out = json::object();
  out["name"] = w.name;
  if (!is_default) {
    json match = json::object();
    for (const core::LabelMatcher& m : w.match) {
      if (m.values.empty()) {
        match[m.label] = "*";
      } else if (m.values.size() == 1) {
        match[m.label] = m.values.front();
      } else {
        match[m.label] = m.values;
      }
    }
    out["match"] = std::move(match);
  }
  out["priority"] = w.priority;
  out["band"] = w.band;
  out["queue_timeout"] = duration_json(w.queue_timeout);
  out["max_queue"] = w.max_queue;
  out["fairness_key"] = w.fairness_label;
  return out;
}

}  // namespace

std::string dump_config(const Config& c) {
  json out = json::object();
  out["listen"] = c.listen.to_string();
  out["admin_listen"] = c.admin_listen ? c.admin_listen->to_string() : std::string();
  out["upstream"] = {
      {"url", c.upstream.url},
      {"connect_timeout", duration_json(c.upstream.connect_timeout)},
      {"header_timeout", duration_json(c.upstream.header_timeout)},
      {"idle_timeout", duration_json(c.upstream.idle_timeout)},
      {"max_idle_connections", c.upstream.max_idle_connections},
  };
  const core::SchedulerConfig& s = c.scheduler.core;
  json per_key = json::array();
  for (const core::KeyLimitSpec& k : s.per_key) {
    per_key.push_back({{"label", k.label},
                       {"max_concurrency", k.max_concurrency},
                       {"max_tokens", k.max_tokens},
                       {"max_queue", k.max_queue}});
  }
  json workloads = json::array();
  for (const core::WorkloadSpec& w : s.workloads)
    workloads.push_back(workload_json(w, false));
  out["scheduler"] = {
      {"max_concurrency", s.max_concurrency},
      {"max_inflight_tokens", s.max_inflight_tokens},
      {"max_queue", s.max_queue},
      {"queue_timeout_cap", duration_json(s.queue_timeout_cap)},
      {"max_inflight_duration", duration_json(c.scheduler.max_inflight_duration)},
      {"per_key", std::move(per_key)},
      {"workloads", std::move(workloads)},
      {"default_workload", workload_json(s.default_workload, true)},
  };
  out["limits"] = {
      {"max_header_bytes", c.limits.max_header_bytes},
      {"max_body_bytes", c.limits.max_body_bytes},
      {"max_scheduled_body_bytes", c.limits.max_scheduled_body_bytes},
      {"header_read_timeout", duration_json(c.limits.header_read_timeout)},
      {"keepalive_timeout", duration_json(c.limits.keepalive_timeout)},
      {"write_timeout", duration_json(c.limits.write_timeout)},
      {"max_connections", c.limits.max_connections},
  };
  out["headers"] = {
      {"user", c.headers.user},
      {"tier", c.headers.tier},
      {"priority", c.headers.priority},
      {"workload", c.headers.workload},
      {"tokens", c.headers.tokens},
      {"queue_timeout", c.headers.queue_timeout},
      {"request_id", c.headers.request_id},
  };
  out["routes"] = {{"scheduled", c.routes.scheduled}};
  out["log"] = {
      {"level", std::string(to_string(c.log.level))},
      {"format", std::string(to_string(c.log.format))},
      {"access_log", c.log.access_log},
  };
  out["shutdown"] = {{"drain_timeout", duration_json(c.shutdown.drain_timeout)}};
  json keys = json::array();
  for (const ApiKey& k : c.auth.keys) {
    json key = {{"name", k.name},
                {"sha256", k.sha256},
                {"user", k.user},
                {"tier", k.tier},
                {"trusted_gateway", k.trusted_gateway}};
    if (k.max_priority) key["max_priority"] = *k.max_priority;
    keys.push_back(std::move(key));
  }
  out["auth"] = {{"keys", std::move(keys)}, {"admin_token_sha256", c.auth.admin_token_sha256}};
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::config
