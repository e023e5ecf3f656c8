// `sluice-bench adaptive` and `sluice-bench limit-chart` (see adaptive_cmd.hpp).
#include "adaptive_cmd.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/report.hpp"

namespace sluice::bench {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// A run folder's label, records, simulator records and limit series.
ArmInput load_arm(const fs::path& dir) {
  ArmInput arm;
  const auto summary = nlohmann::json::parse(slurp(dir / "summary.json"));
  arm.label = summary.value("label", dir.filename().string());
  if (arm.label.rfind("static-", 0) == 0) arm.static_limit = std::stol(arm.label.substr(7));
  arm.records = parse_csv(slurp(dir / "requests.csv"));
  if (fs::exists(dir / "upstream.csv"))
    arm.upstream = parse_upstream_csv(slurp(dir / "upstream.csv"));
  if (fs::exists(dir / "limits.csv")) arm.limits = parse_limits_csv(slurp(dir / "limits.csv"));
  return arm;
}

}  // namespace

int cmd_adaptive(const AdaptiveArgs& a) {
  std::vector<ArmMetrics> arms;
  for (const auto& dir : a.runs)
    arms.push_back(arm_metrics(load_arm(dir), a.from_s, a.converge_from_s));
  AdaptiveTargets targets;
  targets.max_converge_s = a.max_converge_s;
  const std::string md = adaptive_markdown(a.title, arms, targets);
  write(a.out, md);
  std::cout << md;
  return 0;
}

int cmd_limit_chart(const LimitChartArgs& a) {
  std::vector<LimitPanel> panels;
  for (const auto& spec : a.panels) {
    const auto eq = spec.rfind('=');
    if (eq == std::string::npos) throw std::invalid_argument("panel " + spec + ": TITLE=DIR...");
    LimitPanel panel;
    panel.title = spec.substr(0, eq);
    if (const auto at = panel.title.rfind('@'); at != std::string::npos) {
      panel.mark_s = std::stod(panel.title.substr(at + 1));
      panel.title.resize(at);
    }
    std::string dirs = spec.substr(eq + 1);
    std::size_t from = 0;
    while (from <= dirs.size()) {
      auto comma = dirs.find(',', from);
      if (comma == std::string::npos) comma = dirs.size();
      const ArmInput arm = load_arm(dirs.substr(from, comma - from));
      panel.series.push_back({arm.label, arm.limits, run_span(arm.records)});
      from = comma + 1;
    }
    panels.push_back(std::move(panel));
  }
  write(a.out, limit_chart(panels, a.title));
  return 0;
}

}  // namespace sluice::bench
