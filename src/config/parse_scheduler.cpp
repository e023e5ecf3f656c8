// The "scheduler" section: its table and those of per_key entries and workloads, the matchers,
// and the cross-field rules (unique workload names and per_key labels, the queue_timeout_cap and
// workload queue_timeouts whose defaults follow each other; docs/configuration.md, "Derived
// defaults"). Bounds come from sluice/core/limits.hpp, the same the core validates against.
#include <algorithm>
#include <cmath>

#include "sections.hpp"
#include "sluice/core/duration.hpp"
#include "sluice/core/labels.hpp"
#include "sluice/core/limits.hpp"
#include "sluice/core/workload.hpp"

namespace sluice::config::detail {
namespace {

constexpr std::size_t kMaxWorkloads = 256;
constexpr std::size_t kMaxPerKeyLimits = 8;
constexpr std::size_t kMaxMatchersPerWorkload = 16;
constexpr std::size_t kMaxValuesPerMatcher = 256;
constexpr Duration kUndiciHeadersTimeout = std::chrono::seconds(300);
// The longest scheduler.queue_timeout_cap derived from the workloads' queue_timeouts when the file
// leaves the cap unset: a second below undici's limit (an explicit cap may come closer).
constexpr Duration kLongestDerivedCap = kUndiciHeadersTimeout - std::chrono::seconds(1);
constexpr std::string_view kWhyCapBelow300 =
    "must be below 300s: Node.js clients (undici) abort a request whose response headers have not "
    "arrived within 300s, so a longer wait would turn sluice's 503 with Retry-After into a "
    "client-side timeout";

// ---- per_key ----

const Fields<core::KeyLimitSpec>& key_limit_fields() {
  using K = core::KeyLimitSpec;
  static const Fields<K> fields =
      Fields<K>()
          .label("label", &K::label)
          .integer("max_concurrency", &K::max_concurrency, 0, core::kMaxConcurrency)
          .integer("max_tokens", &K::max_tokens, 0, core::kMaxTokenBudget)
          .integer("max_queue", &K::max_queue, 0, core::kMaxQueue);
  return fields;
}

void read_key_limit(Context& ctx, const json& node, const Path& path, core::KeyLimitSpec& out) {
  ObjectReader r(ctx, node, path);
  if (r.valid() && !r.has("label")) ctx.error(path, "\"label\" is required (e.g. \"user\")");
  read_fields(r, key_limit_fields(), out);
}

// One object or an array of them; labels unique.
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

// ---- workloads ----

// {"label": "v" | ["v1", "v2"] | "*"}: all must hold; "*" means present, any value.
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
    std::string label = it.key();
    const Path p = path / label;
    if (!check_label_name(ctx, p, label)) continue;
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

DumpJson dump_match(const core::WorkloadSpec& w) {
  DumpJson match = DumpJson::object();
  for (const core::LabelMatcher& m : w.match) {
    if (m.values.empty()) {
      match[m.label] = "*";
    } else if (m.values.size() == 1) {
      match[m.label] = m.values.front();
    } else {
      match[m.label] = m.values;
    }
  }
  return match;
}

bool check_workload_name(Context& ctx, const Path& p, std::string& name) {
  core::WorkloadSpec probe;
  probe.name = name;
  std::string problem = core::validate(probe);
  if (!problem.empty()) {
    ctx.error(p, problem);
    return false;
  }
  if (name == kPassthroughWorkload || name == kUnclassifiedWorkload) {
    ctx.error(p, "\"" + name +
                     "\" is reserved (metrics and logs use it for requests outside "
                     "every workload)");
    return false;
  }
  return true;
}

void read_priority(Context& ctx, const json& v, const Path& p, core::WorkloadSpec& w) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
      v.get<double>() > core::kMaxPriority) {
    ctx.error(
        p, "must be a number > 0 and <= 1000000, not " + (v.is_number() ? v.dump() : type_name(v)));
    return;
  }
  w.priority = v.get<double>();
}

// A workload's table; the default workload's has no "match" (and its name defaults to "default").
Fields<core::WorkloadSpec> make_workload_fields(bool is_default) {
  using W = core::WorkloadSpec;
  Fields<W> fields;
  fields.string("name", &W::name, check_workload_name);
  if (is_default) {
    fields.refused("match",
                   "the default workload takes every request no other workload matches; it has "
                   "no \"match\"");
  } else {
    fields.custom(
        "match", FieldKind::other,
        [](Context& ctx, const json& v, const Path& p, W& w) { read_match(ctx, v, p, w.match); },
        dump_match);
  }
  fields
      .custom(
          "priority", FieldKind::number, read_priority,
          [](const W& w) { return DumpJson(w.priority); }, 0,
          static_cast<std::int64_t>(core::kMaxPriority))
      .integer("band", &W::band, core::kMinBand, core::kMaxBand)
      .duration("queue_timeout", &W::queue_timeout, Duration::zero())
      .integer("max_queue", &W::max_queue, 0, core::kMaxQueue)
      .label("fairness_key", &W::fairness_label)
      .boolean("progress", &W::progress);
  return fields;
}

const Fields<core::WorkloadSpec>& workload_fields() {
  static const Fields<core::WorkloadSpec> fields = make_workload_fields(false);
  return fields;
}

const Fields<core::WorkloadSpec>& default_workload_fields() {
  static const Fields<core::WorkloadSpec> fields = make_workload_fields(true);
  return fields;
}

void read_workload(Context& ctx, const json& node, const Path& path, core::WorkloadSpec& w,
                   bool is_default) {
  ObjectReader r(ctx, node, path);
  if (r.valid() && !is_default && !r.has("name")) ctx.error(path, "\"name\" is required");
  read_fields(r, is_default ? default_workload_fields() : workload_fields(), w);
}

}  // namespace

const Fields<SchedulerSettings>& scheduler_fields() {
  using S = SchedulerSettings;
  static const Fields<S> fields =
      Fields<S>()
          .integer(
              "max_concurrency", [](auto& s) -> auto& { return s.core.max_concurrency; }, 1,
              core::kMaxConcurrency)
          .integer(
              "max_inflight_tokens", [](auto& s) -> auto& { return s.core.max_inflight_tokens; }, 0,
              core::kMaxTokenBudget)
          .integer(
              "max_queue", [](auto& s) -> auto& { return s.core.max_queue; }, 0, core::kMaxQueue)
          .duration(
              "queue_timeout_cap", [](auto& s) -> auto& { return s.core.queue_timeout_cap; },
              kPositive, kUndiciHeadersTimeout - Duration(1), kWhyCapBelow300)
          .duration("max_inflight_duration", &S::max_inflight_duration, kPositive)
          .duration(
              "progress_queue_timeout_cap",
              [](auto& s) -> auto& { return s.core.progress_queue_timeout_cap; }, kPositive,
              core::kMaxProgressQueueTimeout)
          .duration("progress_interval", &S::progress_interval, std::chrono::seconds(1),
                    std::chrono::seconds(60))
          .boolean("eta_header", &S::eta_header)
          .objects(
              "per_key", [](auto& s) -> auto& { return s.core.per_key; }, key_limit_fields,
              read_per_key, FieldKind::object_or_objects)
          // Read by read_scheduler(), whose cross-field rules need the path of every workload.
          .objects("workloads", [](auto& s) -> auto& { return s.core.workloads; }, workload_fields,
                   {})
          .object("default_workload", [](auto& s) -> auto& { return s.core.default_workload; },
                  default_workload_fields, {});
  return fields;
}

void read_scheduler(Context& ctx, const json& node, const Path& path, SchedulerSettings& s) {
  core::SchedulerConfig& core = s.core;
  ObjectReader r(ctx, node, path);
  read_fields(r, scheduler_fields(), s);

  // The table's last two fields, read here.
  std::vector<Path> workload_paths;
  std::vector<bool> timeout_set;  // per workload read: the file sets its queue_timeout
  bool default_timeout_set = false;
  r.field("workloads", [&](const json& v, const Path& p) {
    if (!check_array(ctx, v, p, "workloads", kMaxWorkloads)) return;
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

}  // namespace sluice::config::detail
