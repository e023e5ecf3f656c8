// Config helpers: diagnostics, reading the file (bounded), reload compatibility. Parsing,
// validation and dumping the effective config live in parse.cpp and the section files.
#include "sluice/config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace sluice::config {

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

std::string_view to_string(Placement placement) {
  return placement == Placement::least_loaded ? "least_loaded" : "model_aware";
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

namespace {

bool same_address(const UpstreamConfig& a, const UpstreamConfig& b) {
  return a.host == b.host && a.port == b.port && a.base_path == b.base_path;
}

// A backend kept under its name may change its slots, models and timeouts live; its address and
// its connection pool are those of the name (the network layer keeps one pool per backend).
void backend_changes(const Config& old, const Config& next, std::vector<std::string>& reasons) {
  for (std::size_t i = 0; i < next.backends.size(); ++i) {
    const BackendConfig& backend = next.backends[i];
    auto before = std::find_if(old.backends.begin(), old.backends.end(),
                               [&](const BackendConfig& b) { return b.name == backend.name; });
    if (before == old.backends.end()) continue;  // added: live
    std::vector<std::string> fields;
    if (!same_address(before->upstream, backend.upstream)) fields.emplace_back("url");
    if (before->upstream.max_idle_connections != backend.upstream.max_idle_connections) {
      fields.emplace_back("max_idle_connections");
    }
    if (fields.empty()) continue;
    std::string reason = "upstreams[";
    reason += std::to_string(i);
    reason += "].";
    reason += fields[0];
    if (fields.size() > 1) {
      reason += " and ";
      reason += fields[1];
    }
    reason += " of ";
    reason += backend.name;
    reason += " changed; remove and re-add it under a new name, or restart";
    reasons.push_back(std::move(reason));
  }
}

}  // namespace

std::string reload_incompatibility(const Config& old, const Config& next) {
  std::vector<std::string> fields;
  if (!(old.listen == next.listen)) fields.push_back("listen");
  if (old.admin_listen != next.admin_listen) fields.push_back("admin_listen");
  // With upstreams the shared block's url is unused and its max_idle_connections only a default:
  // the backends' own are compared below.
  if (!old.fleet && !next.fleet) {
    if (!same_address(old.upstream, next.upstream)) fields.push_back("upstream.url");
    if (old.upstream.max_idle_connections != next.upstream.max_idle_connections) {
      fields.push_back("upstream.max_idle_connections");
    }
  }
  const auto& old_keys = old.scheduler.core.per_key;
  const auto& next_keys = next.scheduler.core.per_key;
  bool same_labels = old_keys.size() == next_keys.size() &&
                     std::equal(old_keys.begin(), old_keys.end(), next_keys.begin(),
                                [](const auto& a, const auto& b) { return a.label == b.label; });
  if (!same_labels) fields.push_back("scheduler.per_key labels");

  std::vector<std::string> reasons;
  if (!fields.empty()) {
    std::string out = "changing ";
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) out += i + 1 == fields.size() ? " and " : ", ";
      out += fields[i];
    }
    out += " needs a restart";
    reasons.push_back(std::move(out));
  }
  if (old.fleet != next.fleet) {
    reasons.emplace_back(next.fleet
                             ? "switching from upstream.url (a single Ollama) to upstreams (a "
                               "fleet) needs a restart"
                             : "switching from upstreams (a fleet) to upstream.url (a single "
                               "Ollama) needs a restart");
  } else if (next.fleet) {
    backend_changes(old, next, reasons);
  }
  std::string out;
  for (const std::string& reason : reasons) {
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out;
}

}  // namespace sluice::config
