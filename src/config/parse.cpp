// parse_config(): JSON text -> validated Config, or diagnostics naming field and line.
//
// Steps: bound the size; scan the text into a SourceMap (positions, nesting depth, duplicate
// keys); parse with nlohmann::json (comments ignored; its syntax errors carry the byte offset);
// then walk the tree section by section. Every object is read through an ObjectReader, which
// declares the keys it knows: the same declaration drives reading and the unknown-key check, so
// they cannot drift apart. A bad value records a diagnostic at its JSON pointer (turned into a
// line by the SourceMap) and leaves the default in place, so one run reports every independent
// problem; the Config is only returned when there is none. Where one field bounds another, the
// default of the one the file leaves out follows the one it sets (ObjectReader::has() tells which
// were set); only two set values can contradict each other (docs/configuration.md, "Derived
// defaults").
#include <algorithm>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "sluice/config/config.hpp"
#include "sluice/config/source_map.hpp"
#include "sluice/core/duration.hpp"
#include "sluice/core/labels.hpp"
#include "sluice/core/limits.hpp"
#include "sluice/core/workload.hpp"

namespace sluice::config {
namespace {

using nlohmann::json;

using core::kMaxConcurrency;  // the scheduler's bounds: sluice/core/limits.hpp
using core::kMaxQueue;
using core::kMaxTokenBudget;
constexpr std::size_t kMaxWorkloads = 256;
constexpr std::size_t kMaxPerKeyLimits = 8;
constexpr std::size_t kMaxMatchersPerWorkload = 16;
constexpr std::size_t kMaxValuesPerMatcher = 256;
constexpr std::size_t kMaxRoutes = 256;
constexpr std::size_t kMaxRouteBytes = 1024;
constexpr std::size_t kMaxHeaderNameBytes = 64;
constexpr std::size_t kMaxLabelNameBytes = 64;
constexpr Duration kUndiciHeadersTimeout = std::chrono::seconds(300);
// The longest scheduler.queue_timeout_cap derived from the workloads' queue_timeouts when the file
// leaves the cap unset: a second below undici's limit (an explicit cap may come closer).
constexpr Duration kLongestDerivedCap = kUndiciHeadersTimeout - std::chrono::seconds(1);

// A position in the document: its JSON pointer (for the SourceMap) and its readable form
// ("scheduler.workloads[1].priority", see display_member()) for messages.
struct Path {
  std::string pointer;
  std::string display;

  Path operator/(std::string_view key) const {
    return {pointer_append(pointer, key), display_member(display, key)};
  }
  Path operator[](std::size_t index) const {
    return {pointer_append(pointer, std::to_string(index)), display_element(display, index)};
  }
};

class Context {
 public:
  Context(std::string_view source, const SourceMap& map, ConfigResult& result)
      : source_(source), map_(map), result_(result) {}

  void error(const Path& path, std::string message) {
    result_.errors.push_back(diagnostic(path, std::move(message)));
  }
  void warning(const Path& path, std::string message) {
    result_.warnings.push_back(diagnostic(path, std::move(message)));
  }
  std::size_t error_count() const { return result_.errors.size(); }

 private:
  ConfigDiagnostic diagnostic(const Path& path, std::string message) const {
    return {std::string(source_), map_.locate(path.pointer).line, path.display, std::move(message)};
  }

  std::string_view source_;
  const SourceMap& map_;
  ConfigResult& result_;
};

std::string type_name(const json& value) {
  if (value.is_number_float()) return "a fractional number";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_null()) return "null";
  if (value.is_object()) return "an object";
  return "an array";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Reads the members of one JSON object. field() declares a key and, when present, hands its
// value to a reader; finish() (also run by the destructor) reports keys nobody declared.
class ObjectReader {
 public:
  ObjectReader(Context& ctx, const json& node, Path path)
      : ctx_(ctx), node_(node), path_(std::move(path)), valid_(node.is_object()) {
    if (!valid_) ctx_.error(path_, "must be an object, not " + type_name(node));
  }
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;
  ~ObjectReader() { finish(); }

  bool valid() const { return valid_; }
  const Path& path() const { return path_; }
  bool has(std::string_view key) const { return valid_ && node_.contains(key); }

  template <class Reader>
  void field(std::string_view key, Reader&& reader) {
    known_.emplace_back(key);
    if (!valid_) return;
    auto it = node_.find(key);
    if (it != node_.end()) reader(*it, path_ / key);
  }

  void finish() {
    if (!valid_ || finished_) return;
    finished_ = true;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
      ctx_.error(path_ / it.key(), "unknown key; " + suggestion(it.key()));
    }
  }

 private:
  std::string suggestion(std::string_view key) const {
    std::string best;
    std::size_t best_distance = 3;  // suggest only close matches
    for (const std::string& k : known_) {
      std::size_t d = edit_distance(key, k);
      if (d < best_distance) {
        best_distance = d;
        best = k;
      }
    }
    if (!best.empty()) return "did you mean \"" + best + "\"?";
    std::string list;
    for (const std::string& k : known_)
      list += (list.empty() ? "" : ", ") + k;
    return "expected one of: " + list;
  }

  Context& ctx_;
  const json& node_;
  Path path_;
  bool valid_;
  bool finished_ = false;
  std::vector<std::string> known_;
};

// ---- scalar readers: on failure they record an error and leave `out` untouched ----

bool read_int(Context& ctx, const json& v, const Path& p, std::int64_t min, std::int64_t max,
              std::int64_t& out) {
  auto range = [&] {
    return "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  };
  if (!v.is_number_integer()) {
    ctx.error(p, range() + ", not " + (v.is_number_float() ? v.dump() : type_name(v)));
    return false;
  }
  bool in_range;
  std::int64_t value = 0;
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    in_range = u <= static_cast<std::uint64_t>(max);
    value = in_range ? static_cast<std::int64_t>(u) : 0;
    in_range = in_range && value >= min;
  } else {
    value = v.get<std::int64_t>();
    in_range = value >= min && value <= max;
  }
  if (!in_range) {
    ctx.error(p, range() + ", not " + v.dump());
    return false;
  }
  out = value;
  return true;
}

bool read_bool(Context& ctx, const json& v, const Path& p, bool& out) {
  if (!v.is_boolean()) {
    ctx.error(p, "must be true or false, not " + type_name(v));
    return false;
  }
  out = v.get<bool>();
  return true;
}

bool read_string(Context& ctx, const json& v, const Path& p, std::string& out) {
  if (!v.is_string()) {
    ctx.error(p, "must be a string, not " + type_name(v));
    return false;
  }
  out = v.get<std::string>();
  return true;
}

// A duration: a string parse_duration() accepts ("250ms", "30s", "1m30s") or an integer of
// milliseconds. `min`/`max` bound the result; `why_max` explains an upper bound when set.
bool read_duration(Context& ctx, const json& v, const Path& p, Duration min, Duration max,
                   Duration& out, std::string_view why_max = {}) {
  Duration value{};
  if (v.is_string()) {
    std::string reason;
    auto parsed = core::parse_duration(v.get<std::string>(), &reason);
    if (!parsed) {
      ctx.error(p, "bad duration " + v.dump(-1, ' ', true, json::error_handler_t::replace) + ": " +
                       reason + " (write e.g. \"250ms\", \"30s\", \"5m\")");
      return false;
    }
    value = *parsed;
  } else if (v.is_number_integer()) {
    std::int64_t ms = 0;
    const std::int64_t max_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(core::kMaxDuration).count();
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_ms)
                               : (v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > max_ms)) {
      ctx.error(p, "must be a duration from 0 to 30 days, not " + v.dump());
      return false;
    }
    ms = v.get<std::int64_t>();
    value = std::chrono::milliseconds(ms);
  } else {
    ctx.error(
        p, "must be a duration such as \"30s\" or an integer of milliseconds, not " + type_name(v));
    return false;
  }
  if (value < min) {
    ctx.error(p, min == Duration::zero() ? "must not be negative"
                 : min == Duration(1)    ? "must be greater than 0"
                                         : "must be at least " + core::format_duration(min));
    return false;
  }
  if (value > max) {
    std::string message = "must be at most " + core::format_duration(max);
    if (!why_max.empty()) message = std::string(why_max);
    ctx.error(p, message);
    return false;
  }
  out = value;
  return true;
}

const Duration kPositive{1};
const Duration kAny = core::kMaxDuration;

// Label names as sluice stores them: lowercase, so they compare exactly with the request's.
bool check_label_name(Context& ctx, const std::string& name, const Path& p) {
  if (name.empty() || name.size() > kMaxLabelNameBytes) {
    ctx.error(p, "label name must be 1 to " + std::to_string(kMaxLabelNameBytes) + " characters");
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) {
      ctx.error(
          p, "label name \"" + name + "\" may only contain lowercase letters, digits, '_' and '-'");
      return false;
    }
  }
  if (std::find(std::begin(kKnownLabels), std::end(kKnownLabels), name) == std::end(kKnownLabels)) {
    ctx.warning(p, "label \"" + name +
                       "\" is not one sluice sets (user, tier, priority, workload, tokens, "
                       "model); it is never present on a request");
  }
  return true;
}

bool read_label_name(Context& ctx, const json& v, const Path& p, std::string& out) {
  std::string name;
  if (!read_string(ctx, v, p, name)) return false;
  if (!check_label_name(ctx, name, p)) return false;
  out = std::move(name);
  return true;
}

// "host:port" for a listener; IPv6 in brackets ("[::1]:11435"); port 0 = any free port.
std::optional<HostPort> parse_host_port(Context& ctx, const std::string& text, const Path& p) {
  auto parsed = boost::urls::parse_authority(text);
  if (!parsed) {
    ctx.error(p, "must be \"host:port\" (IPv6 as \"[::1]:port\"), not \"" + text + "\"");
    return std::nullopt;
  }
  const boost::urls::authority_view& authority = *parsed;
  if (authority.has_userinfo()) {
    ctx.error(p, "must be \"host:port\" without user information");
    return std::nullopt;
  }
  if (authority.host_type() == boost::urls::host_type::ipvfuture) {
    ctx.error(p, "unsupported address \"" + std::string(authority.encoded_host()) + "\"");
    return std::nullopt;
  }
  std::string host = authority.host_address();
  if (host.empty()) {
    ctx.error(p, "host required (write \"0.0.0.0:PORT\" to listen on every interface)");
    return std::nullopt;
  }
  if (!authority.has_port() || authority.port().empty()) {
    ctx.error(p, "port required (\"" + text + ":PORT\"; 0 picks a free port)");
    return std::nullopt;
  }
  std::string_view port_text = authority.port();
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port > 65535) {
    ctx.error(p, "port must be from 0 to 65535, not " + std::string(port_text));
    return std::nullopt;
  }
  return HostPort{std::move(host), static_cast<std::uint16_t>(port)};
}

// ---- sections ----

void read_upstream_url(Context& ctx, const json& v, const Path& p, UpstreamConfig& up) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    ctx.error(p, "not a valid URL (expected e.g. \"http://127.0.0.1:11434\")");
    return;
  }
  const boost::urls::url_view& url = *parsed;
  if (url.scheme_id() != boost::urls::scheme::http) {
    ctx.error(p, "scheme must be http (https upstreams are not supported yet), not \"" +
                     std::string(url.scheme()) + "\"");
    return;
  }
  if (!url.has_authority() || url.host_address().empty()) {
    ctx.error(p, "host required (\"http://HOST:PORT\")");
    return;
  }
  if (url.host_type() == boost::urls::host_type::ipvfuture) {
    ctx.error(p, "unsupported host \"" + std::string(url.encoded_host()) + "\"");
    return;
  }
  if (url.has_userinfo()) {
    ctx.error(p, "user information in the URL is not supported");
    return;
  }
  if (url.has_query() || url.has_fragment()) {
    ctx.error(p, "must not have a query or fragment");
    return;
  }
  unsigned port = 80;
  if (url.has_port() && !url.port().empty()) {
    std::string_view port_text = url.port();
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      ctx.error(p, "port must be from 1 to 65535, not " + std::string(port_text));
      return;
    }
  }
  std::string base_path(url.encoded_path());
  while (!base_path.empty() && base_path.back() == '/')
    base_path.pop_back();

  up.host = url.host_address();
  up.port = static_cast<std::uint16_t>(port);
  up.host_header = std::string(url.encoded_host());
  if (url.host_type() == boost::urls::host_type::ipv6) up.host_header = "[" + up.host + "]";
  if (port != 80) up.host_header += ":" + std::to_string(port);
  up.base_path = base_path;
  up.url = "http://" + up.host_header + base_path;
}

void read_upstream(Context& ctx, const json& node, const Path& path, UpstreamConfig& up) {
  ObjectReader r(ctx, node, path);
  r.field("url", [&](const json& v, const Path& p) { read_upstream_url(ctx, v, p, up); });
  r.field("connect_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, up.connect_timeout);
  });
  r.field("header_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, up.header_timeout);
  });
  r.field("idle_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, up.idle_timeout);
  });
  r.field("max_idle_connections", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 0, 10'000, up.max_idle_connections);
  });
}

void read_key_limit(Context& ctx, const json& node, const Path& path, core::KeyLimitSpec& out) {
  ObjectReader r(ctx, node, path);
  if (r.valid() && !r.has("label")) ctx.error(path, "\"label\" is required (e.g. \"user\")");
  r.field("label", [&](const json& v, const Path& p) { read_label_name(ctx, v, p, out.label); });
  r.field("max_concurrency", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 0, kMaxConcurrency, out.max_concurrency);
  });
  r.field("max_tokens", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 0, kMaxTokenBudget, out.max_tokens);
  });
  r.field("max_queue",
          [&](const json& v, const Path& p) { read_int(ctx, v, p, 0, kMaxQueue, out.max_queue); });
}

void read_per_key(Context& ctx, const json& node, const Path& path,
                  std::vector<core::KeyLimitSpec>& out) {
  std::vector<std::pair<core::KeyLimitSpec, Path>> limits;
  if (node.is_object()) {
    limits.emplace_back(core::KeyLimitSpec{}, path);
  } else if (node.is_array()) {
    if (node.size() > kMaxPerKeyLimits) {
      ctx.error(path, "at most " + std::to_string(kMaxPerKeyLimits) + " per-key limits");
      return;
    }
    for (std::size_t i = 0; i < node.size(); ++i)
      limits.emplace_back(core::KeyLimitSpec{}, path[i]);
  } else {
    ctx.error(path,
              "must be an object {\"label\": ..., \"max_concurrency\": ...} or an array "
              "of them, not " +
                  type_name(node));
    return;
  }
  const std::size_t errors_before = ctx.error_count();
  for (std::size_t i = 0; i < limits.size(); ++i) {
    const json& item = node.is_array() ? node[i] : node;
    read_key_limit(ctx, item, limits[i].second, limits[i].first);
  }
  if (ctx.error_count() != errors_before) return;
  for (std::size_t i = 0; i < limits.size(); ++i) {
    const core::KeyLimitSpec& limit = limits[i].first;
    for (std::size_t j = 0; j < i; ++j) {
      if (limits[j].first.label == limit.label) {
        ctx.error(limits[i].second / "label", "label \"" + limit.label +
                                                  "\" already has a per-key limit at " +
                                                  limits[j].second.display);
        return;
      }
    }
    if (limit.max_concurrency == 0 && limit.max_tokens == 0 && limit.max_queue == 0) {
      ctx.warning(limits[i].second,
                  "sets no limit (all of max_concurrency, max_tokens and "
                  "max_queue are 0, meaning unlimited)");
    }
  }
  for (auto& [limit, limit_path] : limits)
    out.push_back(std::move(limit));
}

// One matcher value list: "v", ["v1", "v2"] or "*" (label present, any value).
void read_match(Context& ctx, const json& node, const Path& path,
                std::vector<core::LabelMatcher>& out) {
  if (!node.is_object()) {
    ctx.error(path, "must be an object {\"label\": \"value\" | [\"v1\", \"v2\"] | \"*\"}, not " +
                        type_name(node));
    return;
  }
  if (node.size() > kMaxMatchersPerWorkload) {
    ctx.error(path, "at most " + std::to_string(kMaxMatchersPerWorkload) + " labels");
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string& label = it.key();
    const Path p = path / label;
    if (!check_label_name(ctx, label, p)) continue;
    core::LabelMatcher matcher{label, {}};
    auto check_value = [&](const json& v, const Path& vp) {
      std::string value;
      if (!read_string(ctx, v, vp, value)) return false;
      std::string reason;
      if (!core::valid_label_value(value, &reason)) {
        ctx.error(vp, "value \"" + value + "\" can never match: " + reason);
        return false;
      }
      return true;
    };
    const json& v = it.value();
    if (v.is_string() && v.get<std::string>() == "*") {
      // empty values: any value
    } else if (v.is_string()) {
      if (!check_value(v, p)) continue;
      matcher.values.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      if (v.empty()) {
        ctx.error(p, "empty list never matches; use \"*\" for any value");
        continue;
      }
      if (v.size() > kMaxValuesPerMatcher) {
        ctx.error(p, "at most " + std::to_string(kMaxValuesPerMatcher) + " values");
        continue;
      }
      bool ok = true;
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i].is_string() && v[i].get<std::string>() == "*") {
          ctx.error(p[i], "\"*\" means any value; write it alone, not inside a list");
          ok = false;
          continue;
        }
        ok = check_value(v[i], p[i]) && ok;
        if (ok) matcher.values.push_back(v[i].get<std::string>());
      }
      if (!ok) continue;
    } else {
      ctx.error(p, "must be a value \"v\", a list [\"v1\", \"v2\"] or \"*\", not " + type_name(v));
      continue;
    }
    out.push_back(std::move(matcher));
  }
}

// A workload; `is_default` for scheduler.default_workload (no match, name defaults to
// "default").
void read_workload(Context& ctx, const json& node, const Path& path, core::WorkloadSpec& w,
                   bool is_default) {
  ObjectReader r(ctx, node, path);
  if (r.valid() && !is_default && !r.has("name")) ctx.error(path, "\"name\" is required");
  r.field("name", [&](const json& v, const Path& p) {
    std::string name;
    if (!read_string(ctx, v, p, name)) return;
    core::WorkloadSpec probe;
    probe.name = name;
    std::string problem = core::validate(probe);
    if (!problem.empty()) {
      ctx.error(p, problem);
      return;
    }
    if (name == kPassthroughWorkload || name == kUnclassifiedWorkload) {
      ctx.error(p, "\"" + name +
                       "\" is reserved (metrics and logs use it for requests outside "
                       "every workload)");
      return;
    }
    w.name = std::move(name);
  });
  if (is_default) {
    r.field("match", [&](const json&, const Path& p) {
      ctx.error(p,
                "the default workload takes every request no other workload matches; it has "
                "no \"match\"");
    });
  } else {
    r.field("match", [&](const json& v, const Path& p) { read_match(ctx, v, p, w.match); });
  }
  r.field("priority", [&](const json& v, const Path& p) {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
        v.get<double>() > core::kMaxPriority) {
      ctx.error(p, "must be a number > 0 and <= 1000000, not " +
                       (v.is_number() ? v.dump() : type_name(v)));
      return;
    }
    w.priority = v.get<double>();
  });
  r.field("band", [&](const json& v, const Path& p) {
    std::int64_t band = 0;
    if (read_int(ctx, v, p, core::kMinBand, core::kMaxBand, band)) w.band = static_cast<int>(band);
  });
  r.field("queue_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, Duration::zero(), kAny, w.queue_timeout);
  });
  r.field("max_queue",
          [&](const json& v, const Path& p) { read_int(ctx, v, p, 0, kMaxQueue, w.max_queue); });
  r.field("fairness_key",
          [&](const json& v, const Path& p) { read_label_name(ctx, v, p, w.fairness_label); });
}

void read_scheduler(Context& ctx, const json& node, const Path& path, SchedulerSettings& s) {
  core::SchedulerConfig& core = s.core;
  ObjectReader r(ctx, node, path);
  r.field("max_concurrency", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 1, kMaxConcurrency, core.max_concurrency);
  });
  r.field("max_inflight_tokens", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 0, kMaxTokenBudget, core.max_inflight_tokens);
  });
  r.field("max_queue",
          [&](const json& v, const Path& p) { read_int(ctx, v, p, 0, kMaxQueue, core.max_queue); });
  r.field("queue_timeout_cap", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kUndiciHeadersTimeout - Duration(1), core.queue_timeout_cap,
                  "must be below 300s: Node.js clients (undici) abort a request whose response "
                  "headers have not arrived within 300s, so a longer wait would turn sluice's "
                  "503 with Retry-After into a client-side timeout");
  });
  r.field("max_inflight_duration", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, s.max_inflight_duration);
  });
  r.field("per_key", [&](const json& v, const Path& p) { read_per_key(ctx, v, p, core.per_key); });

  std::vector<Path> workload_paths;
  std::vector<bool> timeout_set;  // per workload read: the file sets its queue_timeout
  bool default_timeout_set = false;
  r.field("workloads", [&](const json& v, const Path& p) {
    if (!v.is_array()) {
      ctx.error(p, "must be an array of workloads, not " + type_name(v));
      return;
    }
    if (v.size() > kMaxWorkloads) {
      ctx.error(p, "at most " + std::to_string(kMaxWorkloads) + " workloads");
      return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      core::WorkloadSpec w;
      const std::size_t errors_before = ctx.error_count();
      read_workload(ctx, v[i], p[i], w, false);
      if (ctx.error_count() != errors_before) continue;
      core.workloads.push_back(std::move(w));
      workload_paths.push_back(p[i]);
      timeout_set.push_back(v[i].contains("queue_timeout"));
    }
  });
  Path default_path = path / "default_workload";
  r.field("default_workload", [&](const json& v, const Path& p) {
    read_workload(ctx, v, p, core.default_workload, true);
    default_timeout_set = v.is_object() && v.contains("queue_timeout");
  });
  r.finish();

  // queue_timeout_cap and the workloads' queue_timeouts: a default follows what the file sets.
  // An unset cap grows to the longest queue_timeout a workload sets (at most kLongestDerivedCap);
  // an unset queue_timeout shrinks to the cap. A set queue_timeout above a set cap stays legal
  // (the cap applies) and is warned about below.
  const bool cap_set = r.has("queue_timeout_cap");
  if (!cap_set) {
    Duration longest = core.queue_timeout_cap;
    for (std::size_t i = 0; i < core.workloads.size(); ++i) {
      if (timeout_set[i]) longest = std::max(longest, core.workloads[i].queue_timeout);
    }
    if (default_timeout_set) longest = std::max(longest, core.default_workload.queue_timeout);
    core.queue_timeout_cap = std::min(longest, kLongestDerivedCap);
  }
  for (std::size_t i = 0; i < core.workloads.size(); ++i) {
    core::WorkloadSpec& w = core.workloads[i];
    if (!timeout_set[i]) w.queue_timeout = std::min(w.queue_timeout, core.queue_timeout_cap);
  }
  if (!default_timeout_set) {
    core.default_workload.queue_timeout =
        std::min(core.default_workload.queue_timeout, core.queue_timeout_cap);
  }
  auto warn_above_cap = [&](const Path& p, Duration timeout) {
    if (timeout <= core.queue_timeout_cap) return;
    const std::string cap = core::format_duration(core.queue_timeout_cap);
    ctx.warning(
        p, core::format_duration(timeout) + " is above queue_timeout_cap (" + cap +
               (cap_set ? "" : ", the longest it is derived to, since it must stay below 300s") +
               "), which applies instead");
  };

  // Cross-field checks over what read cleanly.
  for (std::size_t i = 0; i < core.workloads.size(); ++i) {
    const core::WorkloadSpec& w = core.workloads[i];
    const Path& wp = workload_paths[i];
    std::string problem = core::validate(w);
    if (!problem.empty()) ctx.error(wp, problem);
    for (std::size_t j = 0; j < i; ++j) {
      if (core.workloads[j].name == w.name) {
        ctx.error(wp / "name", "duplicate workload name \"" + w.name + "\" (also " +
                                   workload_paths[j].display + ")");
      }
    }
    if (w.name == core.default_workload.name) {
      ctx.error(wp / "name", "\"" + w.name +
                                 "\" is the default workload's name; give "
                                 "scheduler.default_workload another name or rename this one");
    }
    if (w.match.empty() && i + 1 < core.workloads.size()) {
      ctx.warning(wp,
                  "has no \"match\", so it takes every request and the workloads after it "
                  "are never chosen");
    }
    warn_above_cap(wp / "queue_timeout", w.queue_timeout);
  }
  std::string problem = core::validate(core.default_workload);
  if (!problem.empty()) ctx.error(default_path, problem);
  warn_above_cap(default_path / "queue_timeout", core.default_workload.queue_timeout);
}

void read_limits(Context& ctx, const json& node, const Path& path, LimitsConfig& l) {
  ObjectReader r(ctx, node, path);
  r.field("max_header_bytes", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 1024, 1024 * 1024, l.max_header_bytes);
  });
  r.field("max_body_bytes", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 1, std::int64_t{1} << 30, l.max_body_bytes);
  });
  bool scheduled_ok = true;
  r.field("max_scheduled_body_bytes", [&](const json& v, const Path& p) {
    scheduled_ok = read_int(ctx, v, p, 1, std::int64_t{1} << 30, l.max_scheduled_body_bytes);
  });
  r.field("header_read_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, l.header_read_timeout);
  });
  r.field("keepalive_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, l.keepalive_timeout);
  });
  r.field("write_timeout", [&](const json& v, const Path& p) {
    read_duration(ctx, v, p, kPositive, kAny, l.write_timeout);
  });
  r.field("max_connections", [&](const json& v, const Path& p) {
    read_int(ctx, v, p, 1, 1'000'000, l.max_connections);
  });
  r.finish();
  // max_scheduled_body_bytes <= max_body_bytes. A default gives way to the other field when the
  // file sets it; only two explicit values can contradict each other.
  const bool body_set = r.has("max_body_bytes");
  const bool scheduled_set = r.has("max_scheduled_body_bytes");
  if (!scheduled_set) {
    l.max_scheduled_body_bytes = std::min(l.max_scheduled_body_bytes, l.max_body_bytes);
  } else if (!body_set) {
    l.max_body_bytes = std::max(l.max_body_bytes, l.max_scheduled_body_bytes);
  } else if (scheduled_ok && l.max_scheduled_body_bytes > l.max_body_bytes) {
    ctx.error(path / "max_scheduled_body_bytes",
              "must not exceed max_body_bytes (" + std::to_string(l.max_body_bytes) + ")");
  }
}

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void read_headers(Context& ctx, const json& node, const Path& path, HeaderNames& h) {
  static constexpr std::string_view kReserved[] = {"host",
                                                   "content-length",
                                                   "transfer-encoding",
                                                   "connection",
                                                   "keep-alive",
                                                   "upgrade",
                                                   "te",
                                                   "trailer",
                                                   "content-type",
                                                   "accept",
                                                   "authorization",
                                                   "cookie",
                                                   "proxy-authorization"};
  std::vector<std::pair<std::string, Path>> seen;
  ObjectReader r(ctx, node, path);
  auto name_field = [&](std::string_view key, std::string& out) {
    r.field(key, [&](const json& v, const Path& p) {
      std::string name;
      if (!read_string(ctx, v, p, name)) return;
      if (name.empty() || name.size() > kMaxHeaderNameBytes ||
          !std::all_of(name.begin(), name.end(), is_token_char)) {
        ctx.error(p, "must be an HTTP header name (1 to " + std::to_string(kMaxHeaderNameBytes) +
                         " letters, digits or !#$%&'*+-.^_`|~)");
        return;
      }
      const std::string lower = lowercase(name);
      if (std::find(std::begin(kReserved), std::end(kReserved), lower) != std::end(kReserved)) {
        ctx.error(p, "\"" + name + "\" is a standard HTTP header; pick a name of your own");
        return;
      }
      out = std::move(name);
    });
  };
  name_field("user", h.user);
  name_field("tier", h.tier);
  name_field("priority", h.priority);
  name_field("workload", h.workload);
  name_field("tokens", h.tokens);
  name_field("queue_timeout", h.queue_timeout);
  name_field("request_id", h.request_id);
  r.finish();
  const std::pair<std::string_view, const std::string*> all[] = {
      {"user", &h.user},
      {"tier", &h.tier},
      {"priority", &h.priority},
      {"workload", &h.workload},
      {"tokens", &h.tokens},
      {"queue_timeout", &h.queue_timeout},
      {"request_id", &h.request_id}};
  for (std::size_t i = 0; i < std::size(all); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (lowercase(*all[i].second) == lowercase(*all[j].second)) {
        ctx.error(path / all[i].first, "\"" + *all[i].second + "\" is already the header for " +
                                           std::string(all[j].first));
      }
    }
  }
}

void read_routes(Context& ctx, const json& node, const Path& path, RoutesConfig& routes) {
  ObjectReader r(ctx, node, path);
  r.field("scheduled", [&](const json& v, const Path& p) {
    if (!v.is_array()) {
      ctx.error(p, "must be an array of paths, not " + type_name(v));
      return;
    }
    if (v.size() > kMaxRoutes) {
      ctx.error(p, "at most " + std::to_string(kMaxRoutes) + " paths");
      return;
    }
    std::vector<std::string> paths;
    bool ok = true;
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string route;
      if (!read_string(ctx, v[i], p[i], route)) {
        ok = false;
        continue;
      }
      bool printable = std::all_of(route.begin(), route.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '?' && c != '#';
      });
      if (route.empty() || route.front() != '/' || route.size() > kMaxRouteBytes || !printable) {
        ctx.error(p[i], "must be a path starting with '/' without query, fragment or spaces");
        ok = false;
        continue;
      }
      if (std::find(paths.begin(), paths.end(), route) != paths.end()) {
        ctx.error(p[i], "duplicate path \"" + route + "\"");
        ok = false;
        continue;
      }
      paths.push_back(std::move(route));
    }
    if (!ok) return;
    if (paths.empty()) ctx.warning(p, "no route is scheduled; sluice only proxies");
    routes.scheduled = std::move(paths);
  });
}

void read_log(Context& ctx, const json& node, const Path& path, LogConfig& log) {
  ObjectReader r(ctx, node, path);
  r.field("level", [&](const json& v, const Path& p) {
    std::string text;
    if (!read_string(ctx, v, p, text)) return;
    for (auto level : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn,
                       LogLevel::error, LogLevel::critical, LogLevel::off}) {
      if (text == to_string(level)) {
        log.level = level;
        return;
      }
    }
    ctx.error(
        p, "must be one of trace, debug, info, warn, error, critical, off; not \"" + text + "\"");
  });
  r.field("format", [&](const json& v, const Path& p) {
    std::string text;
    if (!read_string(ctx, v, p, text)) return;
    if (text == "text") {
      log.format = LogFormat::text;
    } else if (text == "json") {
      log.format = LogFormat::json;
    } else {
      ctx.error(p, "must be \"text\" or \"json\", not \"" + text + "\"");
    }
  });
  r.field("access_log",
          [&](const json& v, const Path& p) { read_bool(ctx, v, p, log.access_log); });
}

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

bool read_sha256(Context& ctx, const json& v, const Path& p, std::string& out) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return false;
  std::string lower = lowercase(text);
  if (!lower.empty() && !is_sha256_hex(lower)) {
    ctx.error(p, "must be a SHA-256 digest: 64 hex digits (print one with `sluice hash-key`)");
    return false;
  }
  out = std::move(lower);
  return true;
}

void read_api_key(Context& ctx, const json& node, const Path& path, ApiKey& key) {
  ObjectReader r(ctx, node, path);
  r.field("name", [&](const json& v, const Path& p) {
    std::string name;
    if (!read_string(ctx, v, p, name)) return;
    std::string why;
    if (!core::valid_label_value(name, &why)) {
      ctx.error(p, "key name " + why);
      return;
    }
    key.name = std::move(name);
  });
  r.field("sha256", [&](const json& v, const Path& p) {
    if (read_sha256(ctx, v, p, key.sha256) && key.sha256.empty()) {
      ctx.error(p, "must not be empty");
    }
  });
  r.field("user", [&](const json& v, const Path& p) {
    std::string user, why;
    if (!read_string(ctx, v, p, user)) return;
    if (!core::valid_label_value(user, &why)) {
      ctx.error(p, "user " + why);
      return;
    }
    key.user = std::move(user);
  });
  r.field("tier", [&](const json& v, const Path& p) {
    std::string tier, why;
    if (!read_string(ctx, v, p, tier)) return;
    if (!tier.empty() && !core::valid_label_value(tier, &why)) {
      ctx.error(p, "tier " + why);
      return;
    }
    key.tier = std::move(tier);
  });
  r.field("max_priority", [&](const json& v, const Path& p) {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
        v.get<double>() > core::kMaxPriority) {
      ctx.error(p, "must be a number > 0 and <= 1000000, not " + v.dump());
      return;
    }
    key.max_priority = v.get<double>();
  });
  r.field("trusted_gateway",
          [&](const json& v, const Path& p) { read_bool(ctx, v, p, key.trusted_gateway); });
  if (r.valid() && !r.has("name")) ctx.error(path / "name", "required");
  if (r.valid() && !r.has("sha256")) ctx.error(path / "sha256", "required");
  if (key.user.empty()) key.user = key.name;
}

constexpr std::size_t kMaxApiKeys = 10'000;

void read_auth(Context& ctx, const json& node, const Path& path, AuthConfig& auth) {
  ObjectReader r(ctx, node, path);
  r.field("keys", [&](const json& v, const Path& p) {
    if (!v.is_array()) {
      ctx.error(p, "must be an array of keys, not " + type_name(v));
      return;
    }
    if (v.size() > kMaxApiKeys) {
      ctx.error(p, "at most " + std::to_string(kMaxApiKeys) + " keys");
      return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      ApiKey key;
      read_api_key(ctx, v[i], p[i], key);
      for (const ApiKey& other : auth.keys) {
        if (!key.name.empty() && other.name == key.name) {
          ctx.error(p[i] / "name", "name \"" + key.name + "\" is used twice");
        }
        if (!key.sha256.empty() && other.sha256 == key.sha256) {
          ctx.error(p[i] / "sha256", "the same key hash is listed twice");
        }
      }
      auth.keys.push_back(std::move(key));
    }
  });
  r.field("admin_token_sha256",
          [&](const json& v, const Path& p) { read_sha256(ctx, v, p, auth.admin_token_sha256); });
}

void read_root(Context& ctx, const json& root, Config& c) {
  ObjectReader r(ctx, root, Path{});
  r.field("$schema", [&](const json& v, const Path& p) {
    std::string ignored;
    read_string(ctx, v, p, ignored);
  });
  r.field("listen", [&](const json& v, const Path& p) {
    std::string text;
    if (!read_string(ctx, v, p, text)) return;
    if (auto hp = parse_host_port(ctx, text, p)) c.listen = std::move(*hp);
  });
  r.field("admin_listen", [&](const json& v, const Path& p) {
    std::string text;
    if (!read_string(ctx, v, p, text)) return;
    if (text.empty()) {
      c.admin_listen.reset();
    } else if (auto hp = parse_host_port(ctx, text, p)) {
      c.admin_listen = std::move(*hp);
    }
  });
  r.field("upstream", [&](const json& v, const Path& p) { read_upstream(ctx, v, p, c.upstream); });
  r.field("scheduler",
          [&](const json& v, const Path& p) { read_scheduler(ctx, v, p, c.scheduler); });
  r.field("limits", [&](const json& v, const Path& p) { read_limits(ctx, v, p, c.limits); });
  r.field("headers", [&](const json& v, const Path& p) { read_headers(ctx, v, p, c.headers); });
  r.field("routes", [&](const json& v, const Path& p) { read_routes(ctx, v, p, c.routes); });
  r.field("log", [&](const json& v, const Path& p) { read_log(ctx, v, p, c.log); });
  r.field("auth", [&](const json& v, const Path& p) { read_auth(ctx, v, p, c.auth); });
  r.field("shutdown", [&](const json& v, const Path& p) {
    ObjectReader s(ctx, v, p);
    s.field("drain_timeout", [&](const json& dv, const Path& dp) {
      read_duration(ctx, dv, dp, Duration::zero(), kAny, c.shutdown.drain_timeout);
    });
  });
  r.finish();
  // Two listeners cannot share an address. Unlike the other cross-field rules this stays an
  // error even when one side is a default: moving either listener to an address nobody chose
  // would send clients or monitoring to the wrong one. The message says which side is a default.
  if (c.admin_listen && c.listen.port != 0 && c.admin_listen->port == c.listen.port &&
      c.admin_listen->host == c.listen.host) {
    const std::string address = c.listen.to_string();
    if (!r.has("admin_listen")) {
      ctx.error(Path{} / "listen", address +
                                       " is the default of admin_listen; set admin_listen to "
                                       "another address, or \"\" to turn the admin listener off");
    } else if (!r.has("listen")) {
      ctx.error(Path{} / "admin_listen",
                "must differ from listen (" + address + ", its default); set listen too");
    } else {
      ctx.error(Path{} / "admin_listen", "must differ from listen (" + address + ")");
    }
  }
}

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 3,
// column 5: " prefix (we print our own position).
std::string syntax_message(const json::parse_error& e) {
  std::string what = e.what();
  const std::string marker = "parse error";
  std::size_t at = what.find(marker);
  if (at != std::string::npos) {
    std::size_t colon = what.find(": ", at);
    if (colon != std::string::npos) what = what.substr(colon + 2);
  }
  return what;
}

}  // namespace

ConfigResult parse_config(std::string_view text, std::string_view source_name) {
  ConfigResult result;
  const std::string source(source_name);
  if (text.size() > kMaxConfigBytes) {
    result.errors.push_back({source, 0, "",
                             "file is larger than " + std::to_string(kMaxConfigBytes) +
                                 " bytes; a config file never needs to be"});
    return result;
  }
  const SourceMap map = SourceMap::build(text);
  if (!map.problem() && !map.find("")) {
    // Only whitespace and comments: the same as {}.
    ConfigResult empty = parse_config("{}", source_name);
    return empty;
  }
  if (map.problem() && map.problem()->kind != SourceProblem::Kind::malformed) {
    // Nesting depth and duplicate keys: checks a JSON parser does not make.
    const SourceProblem& problem = *map.problem();
    result.errors.push_back({source, problem.where.line, "", problem.message});
    if (problem.kind == SourceProblem::Kind::duplicate_key) {
      // Name the member: "scheduler.max_queue: duplicate key ..." reads better.
      result.errors.back().field = display_pointer(
          problem.pointer, [&](std::string_view prefix) { return map.is_array(prefix); });
      result.errors.back().message = "duplicate key (each key may appear once per object)";
    }
    return result;
  }

  json root;
  try {
    root = json::parse(text, /*callback=*/nullptr, /*allow_exceptions=*/true,
                       /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    result.errors.push_back(
        {source, location_of(text, offset).line, "", "syntax error: " + syntax_message(e)});
    return result;
  } catch (const json::exception& e) {
    // A number too large for a double (1e999): nlohmann reports out_of_range.406 with the
    // literal in quotes but no position; the literal's first occurrence gives the line.
    const std::string what = e.what();
    const auto open = what.find('\'');
    const auto close = open == std::string::npos ? open : what.find('\'', open + 1);
    std::string literal =
        close == std::string::npos ? std::string() : what.substr(open + 1, close - open - 1);
    const auto at = literal.empty() ? std::string_view::npos : text.find(literal);
    result.errors.push_back(
        {source, at == std::string_view::npos ? 0 : location_of(text, at).line, "",
         literal.empty() ? "invalid value" : "number out of range: " + literal});
    return result;
  }

  Config config;
  Context ctx(source, map, result);
  read_root(ctx, root, config);
  if (result.errors.empty()) {
    // Backstop: the scheduler's own validation. The checks above are at least as strict and
    // name the line; this fires only if the two ever drift apart.
    std::string problem = core::validate(config.scheduler.core);
    if (!problem.empty()) ctx.error(Path{} / "scheduler", problem);
  }

  auto by_line = [](const ConfigDiagnostic& a, const ConfigDiagnostic& b) {
    return a.line < b.line;
  };
  std::stable_sort(result.errors.begin(), result.errors.end(), by_line);
  std::stable_sort(result.warnings.begin(), result.warnings.end(), by_line);
  if (result.errors.size() > kMaxDiagnostics) {
    const std::size_t more = result.errors.size() - (kMaxDiagnostics - 1);
    result.errors.resize(kMaxDiagnostics - 1);
    result.errors.push_back({source, 0, "", "... and " + std::to_string(more) + " more errors"});
  }
  if (result.warnings.size() > kMaxDiagnostics) result.warnings.resize(kMaxDiagnostics);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

}  // namespace sluice::config
