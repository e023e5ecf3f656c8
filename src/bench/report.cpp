// CSV, JSON and Markdown reports of runs (see include/sluice/bench/report.hpp); the chart is in
// report_chart.cpp, the target checks in report_targets.cpp.
#include "sluice/bench/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace sluice::bench {
namespace {

using nlohmann::json;

// ---- CSV ----

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string seconds(const std::optional<double>& v) {
  if (!v) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", *v);
  return buf;
}

template <typename T>
std::string opt_int(const std::optional<T>& v) {
  return v ? std::to_string(*v) : "";
}

// Splits CSV text into rows of fields (RFC 4180). Throws on an unterminated quote.
std::vector<std::vector<std::string>> csv_rows(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, in_quotes = false, any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty() && !quoted) {
      in_quotes = quoted = any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      quoted = false;
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      quoted = any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (in_quotes) throw ReportError("csv: unterminated quoted field");
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::optional<double> parse_double(const std::string& s, std::size_t line, const char* column) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(d))
    throw ReportError("csv line " + std::to_string(line) + ": " + column + ": not a number: " + s);
  return d;
}

std::optional<long> parse_long(const std::string& s, std::size_t line, const char* column) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end != s.c_str() + s.size())
    throw ReportError("csv line " + std::to_string(line) + ": " + column +
                      ": not an integer: " + s);
  return v;
}

// ---- JSON ----

json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

std::optional<double> opt_double(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<double>();
}

json distribution_json(const Distribution& d) {
  return {{"n", d.n},
          {"p50", opt_json(d.p50)},
          {"p90", opt_json(d.p90)},
          {"p99", opt_json(d.p99)},
          {"max", opt_json(d.max)},
          {"mean", opt_json(d.mean)}};
}

Distribution distribution_from(const json& j) {
  Distribution d;
  d.n = j.at("n").get<std::size_t>();
  d.p50 = opt_double(j, "p50");
  d.p90 = opt_double(j, "p90");
  d.p99 = opt_double(j, "p99");
  d.max = opt_double(j, "max");
  d.mean = opt_double(j, "mean");
  return d;
}

json subject_json(const SubjectSummary& s) {
  json users = json::array();
  for (const auto& u : s.users)
    users.push_back({{"user", u.user},
                     {"count", u.count},
                     {"ok", u.ok},
                     {"mean_latency_s", opt_json(u.mean_latency_s)},
                     {"p90_latency_s", opt_json(u.p90_latency_s)}});
  return {{"name", s.name},
          {"count", s.count},
          {"ok", s.ok},
          {"failed", s.failed},
          {"latency_s", distribution_json(s.latency)},
          {"ttft_s", distribution_json(s.ttft)},
          {"queue_s", distribution_json(s.queue)},
          {"eta_error", distribution_json(s.eta_error)},
          {"eta_rate_error", distribution_json(s.eta_rate_error)},
          {"output_tokens", s.output_tokens},
          {"tokens_per_s", opt_json(s.tokens_per_s)},
          {"jain_user_mean_latency", opt_json(s.jain)},
          {"users", users}};
}

SubjectSummary subject_from(const json& j, std::string kind) {
  SubjectSummary s;
  s.kind = std::move(kind);
  s.name = j.at("name").get<std::string>();
  s.count = j.at("count").get<std::size_t>();
  s.ok = j.at("ok").get<std::size_t>();
  s.failed = j.at("failed").get<std::size_t>();
  s.latency = distribution_from(j.at("latency_s"));
  s.ttft = distribution_from(j.at("ttft_s"));
  s.queue = distribution_from(j.at("queue_s"));
  if (j.contains("eta_error")) s.eta_error = distribution_from(j.at("eta_error"));
  if (j.contains("eta_rate_error")) s.eta_rate_error = distribution_from(j.at("eta_rate_error"));
  s.output_tokens = j.at("output_tokens").get<long>();
  s.tokens_per_s = opt_double(j, "tokens_per_s");
  s.jain = opt_double(j, "jain_user_mean_latency");
  for (const auto& u : j.at("users")) {
    UserSummary us;
    us.user = u.at("user").get<std::string>();
    us.count = u.at("count").get<std::size_t>();
    us.ok = u.at("ok").get<std::size_t>();
    us.mean_latency_s = opt_double(u, "mean_latency_s");
    us.p90_latency_s = opt_double(u, "p90_latency_s");
    s.users.push_back(std::move(us));
  }
  return s;
}

// ---- text helpers ----

std::string fmt_opt(const std::optional<double>& v) {
  return v ? format_number(*v) : "–";
}

std::string ratio_text(const std::optional<double>& value, const std::optional<double>& base) {
  if (!value || !base || !(*base > 0)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f×", *value / *base);
  return buf;
}

}  // namespace

std::string format_percent(const std::optional<double>& v) {
  if (!v) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %%", *v * 100);
  return buf;
}

std::string format_number(double v) {
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else if (a >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

std::string write_csv(const std::vector<RequestRecord>& records) {
  std::string out(kCsvColumns);
  out += '\n';
  for (const auto& r : records) {
    const std::string fields[] = {
        std::to_string(r.index),  csv_field(r.user),        csv_field(r.tier),
        csv_field(r.group),       csv_field(r.request_id),  std::to_string(r.status),
        csv_field(r.outcome),     csv_field(r.error),       opt_int(r.num_predict),
        seconds(r.sent_s),        seconds(r.queue_s),       seconds(r.ttft_s),
        seconds(r.latency_s),     opt_int(r.prompt_tokens), opt_int(r.output_tokens),
        csv_field(r.done_reason), csv_field(r.workload),    csv_field(r.model),
        seconds(r.eta_s),         seconds(r.eta_rate_s),    seconds(r.eta_after_s)};
    for (std::size_t i = 0; i < std::size(fields); ++i) {
      if (i) out += ',';
      out += fields[i];
    }
    out += '\n';
  }
  return out;
}

std::vector<RequestRecord> parse_csv(std::string_view text) {
  const auto rows = csv_rows(text);
  if (rows.empty()) throw ReportError("csv: empty");
  std::string header;
  for (std::size_t i = 0; i < rows[0].size(); ++i)
    header += (i ? "," : "") + rows[0][i];
  const bool with_eta_after = header == kCsvColumns;
  const bool with_eta = with_eta_after || header == kCsvColumnsWithoutEtaAfter;
  const bool with_model = with_eta || header == kCsvColumnsWithoutEta;
  if (!with_model && header != kCsvColumnsWithoutModel)
    throw ReportError("csv: unexpected header (not a sluice-bench requests.csv)");
  const std::size_t columns = with_eta_after ? 21 : with_eta ? 20 : with_model ? 18 : 17;
  std::vector<RequestRecord> records;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    const auto& f = rows[i];
    const std::size_t line = i + 1;
    if (f.size() != columns)
      throw ReportError("csv line " + std::to_string(line) + ": expected " +
                        std::to_string(columns) + " fields, got " + std::to_string(f.size()));
    RequestRecord r;
    r.index = std::size_t(parse_long(f[0], line, "index").value_or(0));
    r.user = f[1];
    r.tier = f[2];
    r.group = f[3];
    r.request_id = f[4];
    r.status = int(parse_long(f[5], line, "status").value_or(0));
    r.outcome = f[6];
    r.error = f[7];
    if (auto v = parse_long(f[8], line, "num_predict")) r.num_predict = int(*v);
    r.sent_s = parse_double(f[9], line, "sent_s").value_or(0);
    r.queue_s = parse_double(f[10], line, "queue_s");
    r.ttft_s = parse_double(f[11], line, "ttft_s");
    r.latency_s = parse_double(f[12], line, "latency_s");
    r.prompt_tokens = parse_long(f[13], line, "prompt_tokens");
    r.output_tokens = parse_long(f[14], line, "output_tokens");
    r.done_reason = f[15];
    r.workload = f[16];
    if (with_model) r.model = f[17];
    if (with_eta) {
      r.eta_s = parse_double(f[18], line, "eta_s");
      r.eta_rate_s = parse_double(f[19], line, "eta_rate_s");
    }
    if (with_eta_after) r.eta_after_s = parse_double(f[20], line, "eta_after_s");
    records.push_back(std::move(r));
  }
  return records;
}

json summary_to_json(const Summary& s) {
  json j;
  j["scenario"] = s.scenario;
  j["label"] = s.label;
  j["target"] = s.target;
  j["time_unit"] = s.time_scale == 1 ? "seconds" : "simulated seconds (wall time x time_scale)";
  j["time_scale"] = s.time_scale;
  j["span_s"] = s.span_s;
  j["requests"] = s.requests;
  j["ok"] = s.ok;
  j["failed"] = s.failed;
  j["truncated"] = s.truncated;
  j["tokens_per_s"] = opt_json(s.all.tokens_per_s);
  j["model_loads"] = s.upstream.model_loads ? json(*s.upstream.model_loads) : json(nullptr);
  json backends = json::array();
  for (const auto& b : s.upstream.backends)
    backends.push_back({{"target", b.target},
                        {"records", b.records},
                        {"busy_s", b.busy_s},
                        {"utilisation", opt_json(b.utilisation)},
                        {"model_loads", b.model_loads ? json(*b.model_loads) : json(nullptr)},
                        {"load_s", b.load_s}});
  j["upstream"] = {{"available", s.upstream.available},
                   {"records", s.upstream.records},
                   {"busy_s", s.upstream.busy_s},
                   {"utilisation", opt_json(s.upstream.utilisation)},
                   {"peak_active", s.upstream.peak_active},
                   {"model_loads", j["model_loads"]},
                   {"load_s", s.upstream.load_s},
                   {"backends", backends},
                   {"note", s.upstream.note}};
  j["all"] = subject_json(s.all);
  j["tiers"] = json::array();
  for (const auto& t : s.tiers)
    j["tiers"].push_back(subject_json(t));
  j["groups"] = json::array();
  for (const auto& g : s.groups)
    j["groups"].push_back(subject_json(g));
  j["notes"] = json::object();
  for (const auto& [k, v] : s.notes)
    j["notes"][k] = v;
  return j;
}

Summary summary_from_json(const json& j) {
  try {
    Summary s;
    s.scenario = j.at("scenario").get<std::string>();
    s.label = j.at("label").get<std::string>();
    s.target = j.at("target").get<std::string>();
    s.time_scale = j.at("time_scale").get<double>();
    s.span_s = j.at("span_s").get<double>();
    s.requests = j.at("requests").get<std::size_t>();
    s.ok = j.at("ok").get<std::size_t>();
    s.failed = j.at("failed").get<std::size_t>();
    s.truncated = j.at("truncated").get<bool>();
    const auto& u = j.at("upstream");
    s.upstream.available = u.at("available").get<bool>();
    s.upstream.records = u.at("records").get<std::size_t>();
    s.upstream.busy_s = u.at("busy_s").get<double>();
    s.upstream.utilisation = opt_double(u, "utilisation");
    s.upstream.peak_active = u.at("peak_active").get<std::size_t>();
    s.upstream.note = u.at("note").get<std::string>();
    // Absent from summaries written before fleets were measured.
    auto loads_of = [](const json& o) -> std::optional<std::uint64_t> {
      auto it = o.find("model_loads");
      if (it == o.end() || it->is_null()) return std::nullopt;
      return it->get<std::uint64_t>();
    };
    s.upstream.model_loads = loads_of(u);
    s.upstream.load_s = u.value("load_s", 0.0);
    if (auto it = u.find("backends"); it != u.end())
      for (const auto& b : *it) {
        BackendUsage bu;
        bu.target = b.at("target").get<std::string>();
        bu.records = b.at("records").get<std::size_t>();
        bu.busy_s = b.at("busy_s").get<double>();
        bu.utilisation = opt_double(b, "utilisation");
        bu.model_loads = loads_of(b);
        bu.load_s = b.value("load_s", 0.0);
        s.upstream.backends.push_back(std::move(bu));
      }
    s.all = subject_from(j.at("all"), "all");
    for (const auto& t : j.at("tiers"))
      s.tiers.push_back(subject_from(t, "tier"));
    for (const auto& g : j.at("groups"))
      s.groups.push_back(subject_from(g, "group"));
    for (const auto& [k, v] : j.at("notes").items())
      s.notes.emplace_back(k, v.get<std::string>());
    return s;
  } catch (const json::exception& e) {
    throw ReportError(std::string("summary: ") + e.what());
  }
}

std::string markdown_table(const std::vector<Run>& runs, const std::string& baseline) {
  const Run* base = nullptr;
  for (const auto& r : runs)
    if (!baseline.empty() && r.summary.label == baseline) base = &r;
  std::ostringstream out;
  const bool scaled =
      std::any_of(runs.begin(), runs.end(), [](const Run& r) { return r.summary.time_scale != 1; });
  out << "| run | tier / group | n | failed | p50 " << (scaled ? "(sim s)" : "(s)")
      << " | p90 | p99 | max | TTFT p50 | TTFT p90 | tok/s | Jain |";
  if (base) out << " p50 vs " << baseline << " | p90 vs " << baseline << " |";
  out << " GPU busy |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";
  if (base) out << "--:|--:|";
  out << "--:|\n";
  for (const auto& run : runs) {
    const Summary& s = run.summary;
    std::vector<const SubjectSummary*> rows;
    for (const auto& t : s.tiers) {
      rows.push_back(&t);
      std::vector<const SubjectSummary*> groups;
      for (const auto& g : s.groups) {
        const bool in_tier = std::any_of(
            run.records.begin(), run.records.end(),
            [&](const RequestRecord& r) { return r.group == g.name && r.tier == t.name; });
        if (in_tier) groups.push_back(&g);
      }
      if (groups.size() > 1) rows.insert(rows.end(), groups.begin(), groups.end());
    }
    bool first = true;
    for (const auto* row : rows) {
      const std::string name = row->kind == "group" ? "· " + row->name : row->name;
      out << "| " << (first ? s.label : "") << " | " << name << " | " << row->count << " | "
          << row->failed << " | " << fmt_opt(row->latency.p50) << " | " << fmt_opt(row->latency.p90)
          << " | " << fmt_opt(row->latency.p99) << " | " << fmt_opt(row->latency.max) << " | "
          << fmt_opt(row->ttft.p50) << " | " << fmt_opt(row->ttft.p90) << " | "
          << fmt_opt(row->tokens_per_s) << " | " << (row->jain ? format_number(*row->jain) : "–")
          << " |";
      if (base) {
        const SubjectSummary* b = base->summary.find(row->kind, row->name);
        out << " " << (b ? ratio_text(row->latency.p50, b->latency.p50) : "–") << " | "
            << (b ? ratio_text(row->latency.p90, b->latency.p90) : "–") << " |";
      }
      out << " " << (first ? format_percent(s.upstream.utilisation) : "") << " |\n";
      first = false;
    }
  }
  return out.str();
}

std::string eta_markdown_table(const std::vector<Run>& runs) {
  const bool any = std::any_of(runs.begin(), runs.end(), [](const Run& r) {
    return std::any_of(r.summary.tiers.begin(), r.summary.tiers.end(),
                       [](const SubjectSummary& t) { return t.eta_error.n > 0; });
  });
  if (!any) return "";
  auto pct = [](const std::optional<double>& v) {
    return v ? format_number(*v * 100) + " %" : std::string("–");
  };
  std::ostringstream out;
  out << "ETA at parking vs the real wait, |ETA - wait| / wait (requests that waited):\n\n"
      << "| run | tier | n | median | p90 | drain-rate ETA: median | p90 |\n"
      << "|---|---|--:|--:|--:|--:|--:|\n";
  for (const auto& run : runs) {
    bool first = true;
    for (const auto& t : run.summary.tiers) {
      if (t.eta_error.n == 0 && t.eta_rate_error.n == 0) continue;
      out << "| " << (first ? run.summary.label : "") << " | " << t.name << " | " << t.eta_error.n
          << " | " << pct(t.eta_error.p50) << " | " << pct(t.eta_error.p90) << " | "
          << pct(t.eta_rate_error.p50) << " | " << pct(t.eta_rate_error.p90) << " |\n";
      first = false;
    }
  }
  return out.str();
}

std::string fleet_markdown_table(const std::vector<Run>& runs) {
  const bool fleet = std::any_of(runs.begin(), runs.end(), [](const Run& r) {
    return r.summary.upstream.backends.size() > 1 || r.summary.upstream.model_loads.value_or(0) > 0;
  });
  if (!fleet) return "";
  const bool scaled =
      std::any_of(runs.begin(), runs.end(), [](const Run& r) { return r.summary.time_scale != 1; });
  const char* unit = scaled ? "sim s" : "s";
  std::ostringstream out;
  out << "| run | n | failed | span (" << unit << ") | output tok/s | model loads | loading ("
      << unit << ") | GPU busy | per backend |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n";
  for (const auto& run : runs) {
    const Summary& s = run.summary;
    std::string per_backend;
    for (const auto& b : s.upstream.backends) {
      if (!per_backend.empty()) per_backend += " · ";
      per_backend += format_percent(b.utilisation);
      if (b.model_loads) per_backend += ", " + std::to_string(*b.model_loads) + " loads";
    }
    out << "| " << s.label << " | " << s.requests << " | " << s.failed << " | "
        << format_number(s.span_s) << " | " << fmt_opt(s.all.tokens_per_s) << " | "
        << (s.upstream.model_loads ? std::to_string(*s.upstream.model_loads) : "–") << " | "
        << (s.upstream.model_loads ? format_number(s.upstream.load_s) : "–") << " | "
        << format_percent(s.upstream.utilisation) << " | "
        << (per_backend.empty() ? "–" : per_backend) << " |\n";
  }
  return out.str();
}

}  // namespace sluice::bench
