// The comparison chart of runs: each request's latency against its completion time, one panel
// per run (see include/sluice/bench/report.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/bench/report.hpp"
#include "sluice/bench/svg.hpp"

namespace sluice::bench {
namespace {

using svg::nice_step;
using svg::num;
using svg::tick;

std::string fmt_opt(const std::optional<double>& v) {
  return v ? format_number(*v) : "–";
}

}  // namespace

std::string svg_chart(const std::vector<Run>& runs, const std::string& title) {
  constexpr double panel_w = 440, panel_h = 300, left = 56, right = 16, top = 58, bottom = 46;
  const std::size_t columns = std::min<std::size_t>(std::max<std::size_t>(runs.size(), 1), 3);
  const std::size_t rows_n = (runs.size() + columns - 1) / std::max<std::size_t>(columns, 1);
  const double width = double(columns) * panel_w;
  const double height = 64 + double(std::max<std::size_t>(rows_n, 1)) * panel_h + 24;

  // Colour by tier; by group when every request is of one tier but groups differ (e.g. a heavy
  // and a light group of the same tier), so the chart still tells them apart.
  std::vector<std::string> tiers, groups;
  double max_latency = 0, max_time = 0;
  bool scaled = false;
  for (const auto& run : runs) {
    scaled = scaled || run.summary.time_scale != 1;
    for (const auto& r : run.records) {
      if (std::find(tiers.begin(), tiers.end(), r.tier) == tiers.end()) tiers.push_back(r.tier);
      if (std::find(groups.begin(), groups.end(), r.group) == groups.end())
        groups.push_back(r.group);
      if (r.latency_s) {
        max_latency = std::max(max_latency, *r.latency_s);
        max_time = std::max(max_time, r.end_s());
      }
    }
  }
  const double y_step = nice_step(max_latency, 5);
  const double y_max = std::max(y_step, std::ceil(max_latency / y_step) * y_step);
  const double x_step = nice_step(max_time, 5);
  const double x_max = std::max(x_step, std::ceil(max_time / x_step) * x_step);
  const bool by_group = tiers.size() <= 1 && groups.size() > 1;
  const std::vector<std::string>& keys = by_group ? groups : tiers;
  const char* key_kind = by_group ? "group" : "tier";
  auto key_of = [&](const RequestRecord& r) -> const std::string& {
    return by_group ? r.group : r.tier;
  };
  auto colour_of = [&](const std::string& key) {
    return svg::colour(std::size_t(std::find(keys.begin(), keys.end(), key) - keys.begin()));
  };
  auto subjects = [&](const Summary& s) -> const std::vector<SubjectSummary>& {
    return by_group ? s.groups : s.tiers;
  };

  std::ostringstream out;
  svg::open(out, width, height, title);
  out << "<text x=\"16\" y=\"42\" fill=\"#555\">end-to-end latency of each request (y) against "
         "the time it completed (x)"
      << (scaled ? ", simulated seconds" : ", seconds") << "; dashed: p90 per " << key_kind;
  out << "</text>\n";
  double lx = width - 16;
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) {
    lx -= 8 + 7 * double(it->size()) + 18;
    out << "<circle cx=\"" << num(lx) << "\" cy=\"20\" r=\"5\" fill=\"" << colour_of(*it)
        << "\"/><text x=\"" << num(lx + 9) << "\" y=\"24\">" << svg::escape(*it) << "</text>\n";
  }

  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& run = runs[i];
    const double ox = double(i % columns) * panel_w;
    const double oy = 56 + double(i / columns) * panel_h;
    const double pw = panel_w - left - right, ph = panel_h - top - bottom;
    const double x0 = ox + left, y0 = oy + top;
    const svg::Axes axes{x0, y0, pw, ph, x_max, x_step, y_max, y_step};
    auto px = [&](double t) { return axes.px(t); };
    auto py = [&](double l) { return axes.py(l); };

    out << "<g>\n<text x=\"" << num(x0) << "\" y=\"" << num(oy + 20)
        << "\" font-size=\"13\" font-weight=\"bold\">" << svg::escape(run.summary.label)
        << "</text>\n";
    std::string figures;
    for (const auto& t : subjects(run.summary)) {
      if (!figures.empty()) figures += " · ";
      figures += t.name + " p50 " + fmt_opt(t.latency.p50) + " p90 " + fmt_opt(t.latency.p90);
    }
    if (run.summary.upstream.utilisation)
      figures += " · busy " + format_percent(run.summary.upstream.utilisation);
    out << "<text x=\"" << num(x0) << "\" y=\"" << num(oy + 36) << "\" fill=\"#555\">"
        << svg::escape(figures) << "</text>\n";
    svg::axes(out, axes, "completed at (s since start)", "latency (s)");
    // The most numerous tier (group) first, so the smaller ones are drawn on top of it.
    std::map<std::string, std::size_t> counts;
    for (const auto& r : run.records)
      ++counts[key_of(r)];
    std::vector<std::string> draw = keys;
    std::stable_sort(draw.begin(), draw.end(), [&](const std::string& a, const std::string& b) {
      return counts[a] > counts[b];
    });
    std::vector<const RequestRecord*> order;
    for (const auto& k : draw)
      for (const auto& r : run.records)
        if (key_of(r) == k) order.push_back(&r);
    for (const RequestRecord* rp : order) {
      const RequestRecord& r = *rp;
      if (!r.latency_s) continue;
      const double cx = px(r.end_s()), cy = py(*r.latency_s);
      if (r.ok()) {
        out << "<circle cx=\"" << num(cx) << "\" cy=\"" << num(cy) << "\" r=\"2.4\" fill=\""
            << colour_of(key_of(r)) << "\" fill-opacity=\"0.75\"/>\n";
      } else {
        out << "<path d=\"M" << num(cx - 3) << " " << num(cy - 3) << "l6 6m0 -6l-6 6\" stroke=\""
            << colour_of(key_of(r)) << "\" stroke-width=\"1.5\"/>\n";
      }
    }
    for (const auto& t : subjects(run.summary)) {
      if (!t.latency.p90) continue;
      const double y = py(*t.latency.p90);
      out << "<line x1=\"" << num(x0) << "\" x2=\"" << num(x0 + pw) << "\" y1=\"" << num(y)
          << "\" y2=\"" << num(y) << "\" stroke=\"" << colour_of(t.name)
          << "\" stroke-dasharray=\"5 4\" stroke-width=\"1.2\"/>\n";
    }
    out << "</g>\n";
  }
  out << "</svg>\n";
  return out.str();
}

}  // namespace sluice::bench
