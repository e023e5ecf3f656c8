// Issue 13's benchmark: limits and backend waits, per-arm metrics, targets, the limit chart
// (see include/sluice/bench/adaptive.hpp).
#include "sluice/bench/adaptive.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sluice/bench/report.hpp"
#include "sluice/bench/svg.hpp"

namespace sluice::bench {
namespace {

using nlohmann::json;

std::vector<std::string> split(std::string_view line, char sep) {
  std::vector<std::string> out;
  std::size_t from = 0;
  while (true) {
    const auto at = line.find(sep, from);
    out.emplace_back(line.substr(from, at == std::string_view::npos ? at : at - from));
    if (at == std::string_view::npos) return out;
    from = at + 1;
  }
}

// Rows of a simple numeric CSV with the header `header`; throws ReportError naming the line.
std::vector<std::vector<double>> numeric_rows(std::string_view text, std::string_view header) {
  std::vector<std::vector<double>> rows;
  std::size_t line_no = 0;
  std::size_t from = 0;
  const std::size_t columns = split(header, ',').size();
  while (from < text.size()) {
    auto at = text.find('\n', from);
    if (at == std::string_view::npos) at = text.size();
    std::string_view line = text.substr(from, at - from);
    from = at + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1) {
      if (line != header)
        throw ReportError("line 1: expected the header \"" + std::string(header) + "\"");
      continue;
    }
    if (line.empty()) continue;
    const auto fields = split(line, ',');
    if (fields.size() != columns)
      throw ReportError("line " + std::to_string(line_no) + ": expected " +
                        std::to_string(columns) + " fields");
    std::vector<double> row;
    for (const auto& f : fields) {
      char* end = nullptr;
      const double v = std::strtod(f.c_str(), &end);
      if (f.empty() || end != f.c_str() + f.size() || !std::isfinite(v))
        throw ReportError("line " + std::to_string(line_no) + ": not a number: " + f);
      row.push_back(v);
    }
    rows.push_back(std::move(row));
  }
  if (line_no == 0) throw ReportError("empty file");
  return rows;
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string opt_text(const std::optional<double>& v, int decimals, const char* unit = "") {
  if (!v) return "–";
  return fixed(*v, decimals) + unit;
}

constexpr std::string_view kLimitsHeader = "t_s,limit";
constexpr std::string_view kUpstreamHeader = "arrival_s,start_s,end_s";

}  // namespace

std::optional<long> parse_state_limit(std::string_view json_text, std::string* why) {
  const json j = json::parse(json_text, nullptr, false);
  auto fail = [&](const char* reason) -> std::optional<long> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (j.is_discarded() || !j.is_object()) return fail("/admin/state: not a JSON object");
  const auto b = j.find("backends");
  if (b == j.end() || !b->is_array() || b->empty()) return fail("/admin/state: no backends");
  const auto& first = (*b)[0];
  if (!first.is_object()) return fail("/admin/state: backends[0] is not an object");
  const auto l = first.find("concurrency_limit");
  if (l == first.end() || !l->is_number_integer())
    return fail("/admin/state: backends[0].concurrency_limit is not an integer");
  return l->get<long>();
}

std::string write_limits_csv(const std::vector<LimitPoint>& points) {
  std::string out(kLimitsHeader);
  out += '\n';
  for (const auto& p : points) {
    out += fixed(p.t_s, 4);
    out += ',';
    out += std::to_string(p.limit);
    out += '\n';
  }
  return out;
}

std::vector<LimitPoint> parse_limits_csv(std::string_view text) {
  std::vector<LimitPoint> out;
  for (const auto& row : numeric_rows(text, kLimitsHeader))
    out.push_back({row[0], long(std::lround(row[1]))});
  return out;
}

std::string write_upstream_csv(const std::vector<UpstreamInterval>& intervals) {
  std::string out(kUpstreamHeader);
  out += '\n';
  for (const auto& i : intervals) {
    out += fixed(i.arrival_s, 6);
    out += ',';
    out += fixed(i.start_s, 6);
    out += ',';
    out += fixed(i.end_s, 6);
    out += '\n';
  }
  return out;
}

std::vector<UpstreamInterval> parse_upstream_csv(std::string_view text) {
  std::vector<UpstreamInterval> out;
  for (const auto& row : numeric_rows(text, kUpstreamHeader)) {
    UpstreamInterval i;
    i.arrival_s = row[0];
    i.start_s = row[1];
    i.end_s = row[2];
    out.push_back(i);
  }
  return out;
}

void scale_poisson_rates(Scenario& scenario, double factor) {
  for (auto& g : scenario.groups)
    if (g.arrival.mode == Arrival::Mode::poisson) g.arrival.rate_per_s *= factor;
}

std::optional<LiveChange> parse_live_change(std::string_view text, std::string* why) {
  const auto eq = text.find('=');
  auto fail = [&](const char* reason) -> std::optional<LiveChange> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (eq == std::string_view::npos) return fail("expected SECONDS=JSON");
  const std::string at(text.substr(0, eq));
  char* end = nullptr;
  const double seconds = std::strtod(at.c_str(), &end);
  if (at.empty() || end != at.c_str() + at.size() || !std::isfinite(seconds) || seconds < 0)
    return fail("SECONDS must be a number >= 0");
  const std::string body(text.substr(eq + 1));
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("JSON must be an object");
  return LiveChange{seconds, body};
}

std::pair<std::optional<long>, std::optional<double>> convergence(
    const std::vector<LimitPoint>& points, double from_s, double end_s) {
  std::vector<LimitPoint> p;
  for (const auto& x : points)
    if (x.t_s <= end_s) p.push_back(x);
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.t_s < b.t_s; });
  if (p.empty() || !(end_s > from_s)) return {std::nullopt, std::nullopt};
  // The limit in force over [a, b): the last sample at or before a, then the samples inside.
  const double tail_from = end_s - (end_s - from_s) / 3;
  std::map<long, double> weight;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double a = std::max(p[i].t_s, tail_from);
    const double b = i + 1 < p.size() ? std::min(p[i + 1].t_s, end_s) : end_s;
    if (b > a) weight[p[i].limit] += b - a;
  }
  if (weight.empty()) return {std::nullopt, std::nullopt};
  long settled = weight.begin()->first;
  for (const auto& [limit, w] : weight)
    if (w > weight[settled]) settled = limit;
  // The limit p[i] is in force over [p[i].t_s, p[i+1].t_s); converged once none that is off
  // by more than one is in force after from_s.
  double converged = from_s;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double until = i + 1 < p.size() ? p[i + 1].t_s : end_s;
    if (std::labs(p[i].limit - settled) > 1 && until > from_s)
      converged = std::max(converged, until);
  }
  if (converged >= end_s) return {settled, std::nullopt};
  return {settled, converged - from_s};
}

ArmMetrics arm_metrics(const ArmInput& arm, double from_s, std::optional<double> converge_from_s) {
  ArmMetrics m;
  m.label = arm.label;
  m.static_limit = arm.static_limit;
  long tokens = 0;
  double last_end = from_s;
  std::vector<double> paid;
  for (const auto& r : arm.records) {
    if (!r.ok()) {
      if (r.sent_s >= from_s) ++m.failed;
      continue;
    }
    last_end = std::max(last_end, r.end_s());
    if (r.end_s() >= from_s) tokens += r.output_tokens.value_or(0);
    if (r.sent_s >= from_s && r.tier == "paid" && r.latency_s) paid.push_back(*r.latency_s);
  }
  if (last_end > from_s) m.tokens_per_s = double(tokens) / (last_end - from_s);
  m.paid_p90_s = percentile(paid, 90);
  std::vector<double> shares;
  for (const auto& u : arm.upstream) {
    if (u.arrival_s < from_s || !(u.end_s > u.start_s)) continue;
    shares.push_back(std::max(0.0, u.start_s - u.arrival_s) / (u.end_s - u.start_s));
  }
  m.wait_share_p90 = percentile(shares, 90);
  if (!arm.static_limit) {
    const auto [settled, converged] =
        convergence(arm.limits, converge_from_s.value_or(from_s), last_end);
    m.settled_limit = settled;
    m.converged_s = converged;
  }
  return m;
}

std::vector<AutoVerdict> judge_auto(const std::vector<ArmMetrics>& arms, const AdaptiveTargets& t) {
  std::optional<double> best_tokens, best_p90;
  for (const auto& a : arms) {
    if (!a.static_limit) continue;
    if (a.tokens_per_s && (!best_tokens || *a.tokens_per_s > *best_tokens))
      best_tokens = a.tokens_per_s;
    if (a.paid_p90_s && (!best_p90 || *a.paid_p90_s < *best_p90)) best_p90 = a.paid_p90_s;
  }
  std::vector<AutoVerdict> out;
  for (const auto& a : arms) {
    if (a.static_limit) continue;
    AutoVerdict v;
    v.label = a.label;
    std::ostringstream d;
    if (a.tokens_per_s && best_tokens && *best_tokens > 0) {
      const double r = *a.tokens_per_s / *best_tokens;
      v.tokens = r >= t.min_tokens_ratio;
      d << "tokens/s " << fixed(r, 3) << "x best static";
    } else {
      d << "tokens/s unknown";
    }
    if (a.paid_p90_s && best_p90 && *best_p90 > 0) {
      const double r = *a.paid_p90_s / *best_p90;
      v.p90 = r <= t.max_p90_ratio;
      d << "; paid p90 " << fixed(r, 3) << "x best static";
    } else {
      d << "; paid p90 unknown";
    }
    v.wait = a.wait_share_p90 && *a.wait_share_p90 <= t.max_wait_share;
    d << "; wait p90 "
      << opt_text(a.wait_share_p90 ? std::optional<double>(*a.wait_share_p90 * 100) : std::nullopt,
                  1, "%");
    v.converged = a.converged_s && *a.converged_s <= t.max_converge_s;
    d << "; converged " << opt_text(a.converged_s, 1, " s");
    v.detail = d.str();
    out.push_back(std::move(v));
  }
  return out;
}

std::string adaptive_markdown(const std::string& title, const std::vector<ArmMetrics>& arms,
                              const AdaptiveTargets& targets) {
  std::ostringstream out;
  out << "#### " << title << "\n\n";
  out << "| arm | limit | tokens/s | paid p90 (s) | backend wait p90 (% of service) | "
         "settled limit | converged (s) | failed |\n";
  out << "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& a : arms) {
    out << "| " << a.label << " | "
        << (a.static_limit ? std::to_string(*a.static_limit) : std::string("auto")) << " | "
        << opt_text(a.tokens_per_s, 1) << " | " << opt_text(a.paid_p90_s, 1) << " | "
        << opt_text(
               a.wait_share_p90 ? std::optional<double>(*a.wait_share_p90 * 100) : std::nullopt, 1)
        << " | " << (a.settled_limit ? std::to_string(*a.settled_limit) : std::string("–")) << " | "
        << opt_text(a.converged_s, 1) << " | " << a.failed << " |\n";
  }
  out << "\n";
  for (const auto& v : judge_auto(arms, targets)) {
    auto mark = [](bool ok) { return ok ? "met" : "**missed**"; };
    out << "- " << v.label << ": tokens/s " << mark(v.tokens) << ", paid p90 " << mark(v.p90)
        << ", backend wait " << mark(v.wait) << ", converged " << mark(v.converged) << " ("
        << v.detail << ")\n";
  }
  out << "\n";
  return out.str();
}

std::string limit_chart(const std::vector<LimitPanel>& panels, const std::string& title) {
  constexpr double panel_w = 440, panel_h = 260, left = 56, right = 16, top = 40, bottom = 46;
  const std::size_t columns = std::min<std::size_t>(std::max<std::size_t>(panels.size(), 1), 2);
  const std::size_t rows_n = (panels.size() + columns - 1) / columns;
  const double width = double(columns) * panel_w;
  const double height = 56 + double(std::max<std::size_t>(rows_n, 1)) * panel_h + 16;
  std::ostringstream out;
  svg::open(out, width, height, title);
  out << "<text x=\"16\" y=\"42\" fill=\"#555\">the concurrency limit sluice had in force "
         "(GET /admin/state) against simulated seconds since the run started; dashed: a live "
         "change</text>\n";
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const LimitPanel& panel = panels[i];
    const double ox = double(i % columns) * panel_w;
    const double oy = 48 + double(i / columns) * panel_h;
    double x_max = 1, y_max = 1;
    for (const auto& s : panel.series) {
      x_max = std::max(x_max, s.end_s);
      for (const auto& p : s.points)
        y_max = std::max(y_max, double(p.limit));
    }
    const double x_step = svg::nice_step(x_max, 5), y_step = svg::nice_step(y_max + 1, 5);
    const svg::Axes axes{ox + left,
                         oy + top,
                         panel_w - left - right,
                         panel_h - top - bottom,
                         svg::nice_max(x_max, x_step),
                         x_step,
                         svg::nice_max(y_max + 1, y_step),
                         y_step};
    out << "<g>\n<text x=\"" << svg::num(axes.x0) << "\" y=\"" << svg::num(oy + 28)
        << "\" font-size=\"13\" font-weight=\"bold\">" << svg::escape(panel.title) << "</text>\n";
    svg::axes(out, axes, "simulated seconds since start", "limit");
    if (panel.mark_s) {
      out << "<line x1=\"" << svg::num(axes.px(*panel.mark_s)) << "\" x2=\""
          << svg::num(axes.px(*panel.mark_s)) << "\" y1=\"" << svg::num(axes.y0) << "\" y2=\""
          << svg::num(axes.y0 + axes.ph) << "\" stroke=\"#333\" stroke-dasharray=\"5 4\"/>\n";
    }
    double lx = axes.x0 + axes.pw;
    for (std::size_t k = panel.series.size(); k-- > 0;) {
      const LimitSeries& s = panel.series[k];
      // A step line: the limit holds until the next sample.
      std::ostringstream d;
      for (std::size_t j = 0; j < s.points.size(); ++j) {
        const double x = axes.px(s.points[j].t_s), y = axes.py(double(s.points[j].limit));
        if (j == 0) {
          d << "M" << svg::num(x) << " " << svg::num(y);
        } else {
          d << " H" << svg::num(x) << " V" << svg::num(y);
        }
      }
      if (!s.points.empty()) d << " H" << svg::num(axes.px(s.end_s));
      out << "<path d=\"" << d.str() << "\" fill=\"none\" stroke=\"" << svg::colour(k)
          << "\" stroke-width=\"1.6\"/>\n";
      lx -= 8 + 7 * double(s.label.size()) + 18;
      out << "<rect x=\"" << svg::num(lx) << "\" y=\"" << svg::num(oy + 19)
          << "\" width=\"10\" height=\"3\" fill=\"" << svg::colour(k) << "\"/><text x=\""
          << svg::num(lx + 13) << "\" y=\"" << svg::num(oy + 24) << "\">" << svg::escape(s.label)
          << "</text>\n";
    }
    out << "</g>\n";
  }
  out << "</svg>\n";
  return out.str();
}

}  // namespace sluice::bench
