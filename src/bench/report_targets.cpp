// Scenario targets checked against runs: each target's metric read from a run's summary,
// compared with its bound or its baseline run (see include/sluice/bench/report.hpp).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/bench/report.hpp"

namespace sluice::bench {
namespace {

using nlohmann::json;

std::optional<double> metric_value(const Summary& s, const std::string& metric,
                                   const std::string& subject, std::string& why) {
  if (metric == "utilisation") {
    if (!s.upstream.utilisation) why = "no upstream utilisation in run " + s.label;
    return s.upstream.utilisation;
  }
  if (metric == "model_loads") {
    if (!s.upstream.model_loads) {
      why = "no model load count in run " + s.label;
      return std::nullopt;
    }
    return double(*s.upstream.model_loads);
  }
  std::string kind = "all", name = "all";
  if (subject != "all") {
    const auto colon = subject.find(':');
    if (colon == std::string::npos)
      throw ReportError("target subject must be tier:NAME, group:NAME or all");
    kind = subject.substr(0, colon);
    name = subject.substr(colon + 1);
    if (kind != "tier" && kind != "group")
      throw ReportError("target subject must be tier:NAME, group:NAME or all, not " + subject);
  }
  const SubjectSummary* sub = s.find(kind, name);
  if (!sub) {
    why = "run " + s.label + " has no " + subject;
    return std::nullopt;
  }
  std::optional<double> v;
  if (metric.rfind("latency_", 0) == 0 || metric.rfind("ttft_", 0) == 0) {
    const bool lat = metric[0] == 'l';
    const Distribution& d = lat ? sub->latency : sub->ttft;
    const std::string which = metric.substr(lat ? 8 : 5);
    if (which == "p50") {
      v = d.p50;
    } else if (which == "p90") {
      v = d.p90;
    } else if (which == "p99") {
      v = d.p99;
    } else if (which == "max") {
      v = d.max;
    } else if (which == "mean") {
      v = d.mean;
    } else {
      throw ReportError("unknown target metric " + metric);
    }
  } else if (metric == "jain") {
    v = sub->jain;
  } else if (metric == "failures") {
    v = double(sub->failed);
  } else if (metric == "tokens_per_s") {
    v = sub->tokens_per_s;
  } else {
    throw ReportError("unknown target metric " + metric);
  }
  if (!v) why = "run " + s.label + ": no value of " + metric + " for " + subject;
  return v;
}

}  // namespace

std::vector<TargetResult> evaluate_targets(std::string_view targets_json,
                                           const std::vector<Run>& runs) {
  std::vector<TargetResult> results;
  if (targets_json.empty()) return results;
  json list;
  try {
    list = json::parse(targets_json);
  } catch (const json::exception& e) {
    throw ReportError(std::string("targets: ") + e.what());
  }
  if (!list.is_array()) throw ReportError("targets: must be an array");
  auto find_run = [&](const std::string& label) -> const Run* {
    for (const auto& r : runs)
      if (r.summary.label == label) return &r;
    return nullptr;
  };
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    const std::string where = "targets[" + std::to_string(i) + "]";
    if (!t.is_object()) throw ReportError(where + ": must be an object");
    static const std::set<std::string> known = {"name", "run", "metric",    "subject",  "baseline",
                                                "max",  "min", "max_ratio", "min_ratio"};
    for (const auto& [k, v] : t.items())
      if (!known.count(k)) throw ReportError(where + "." + k + ": unknown key");
    auto str = [&](const char* key, std::string fallback) {
      auto it = t.find(key);
      if (it == t.end()) return fallback;
      if (!it->is_string()) throw ReportError(where + "." + key + ": must be a string");
      return it->get<std::string>();
    };
    auto bound = [&](const char* key) -> std::optional<double> {
      auto it = t.find(key);
      if (it == t.end()) return std::nullopt;
      if (!it->is_number()) throw ReportError(where + "." + key + ": must be a number");
      return it->get<double>();
    };
    TargetResult res;
    const std::string run_label = str("run", "");
    const std::string metric = str("metric", "");
    const std::string subject = str("subject", "all");
    const std::string baseline = str("baseline", "");
    if (run_label.empty() || metric.empty())
      throw ReportError(where + ": \"run\" and \"metric\" are required");
    const auto max = bound("max"), min = bound("min"), max_ratio = bound("max_ratio"),
               min_ratio = bound("min_ratio");
    if ((max_ratio || min_ratio) && baseline.empty())
      throw ReportError(where + ": a ratio bound needs \"baseline\"");
    if (!max && !min && !max_ratio && !min_ratio)
      throw ReportError(where + ": needs a bound (max, min, max_ratio or min_ratio)");
    res.name = str("name", metric + " of " + subject + " in " + run_label);

    const Run* run = find_run(run_label);
    const Run* base = baseline.empty() ? nullptr : find_run(baseline);
    if (!run || (!baseline.empty() && !base)) {
      res.status = "skipped";
      res.detail = "run " + (run ? baseline : run_label) + " is not part of this experiment";
      results.push_back(std::move(res));
      continue;
    }
    std::string why;
    const auto value = metric_value(run->summary, metric, subject, why);
    std::optional<double> base_value;
    if (base) base_value = metric_value(base->summary, metric, subject, why);
    if (!value || (base && (!base_value || !(*base_value > 0)))) {
      res.status = "skipped";
      res.detail = why.empty() ? "baseline value is zero" : why;
      results.push_back(std::move(res));
      continue;
    }
    bool met = true;
    std::ostringstream detail;
    const bool is_fraction = metric == "utilisation" || metric == "jain";
    auto show = [&](double v) {
      return metric == "utilisation" ? format_percent(v)
                                     : format_number(v) + (is_fraction ? "" : " s");
    };
    const bool plain_count =
        metric == "failures" || metric == "tokens_per_s" || metric == "model_loads";
    auto show_value = [&](double v) { return plain_count ? format_number(v) : show(v); };
    detail << run_label << " " << show_value(*value);
    if (max) {
      met = met && *value <= *max;
      detail << " (max " << show_value(*max) << ")";
    }
    if (min) {
      met = met && *value >= *min;
      detail << " (min " << show_value(*min) << ")";
    }
    if (base) {
      const double ratio = *value / *base_value;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", ratio);
      detail << " vs " << baseline << " " << show_value(*base_value) << " = " << buf << "×";
      if (max_ratio) {
        met = met && ratio <= *max_ratio;
        detail << " (max " << format_number(*max_ratio) << "×)";
      }
      if (min_ratio) {
        met = met && ratio >= *min_ratio;
        detail << " (min " << format_number(*min_ratio) << "×)";
      }
    }
    res.status = met ? "met" : "missed";
    res.detail = detail.str();
    results.push_back(std::move(res));
  }
  return results;
}

std::string targets_markdown(const std::vector<TargetResult>& results) {
  std::ostringstream out;
  out << "| target | result | figures |\n|---|---|---|\n";
  for (const auto& r : results)
    out << "| " << r.name << " | " << (r.status == "met" ? "**met**" : r.status) << " | "
        << r.detail << " |\n";
  return out.str();
}

}  // namespace sluice::bench
