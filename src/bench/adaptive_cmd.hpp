// `sluice-bench adaptive` and `sluice-bench limit-chart`: issue 13's benchmark tables and the
// limit-over-time chart from run folders (requests.csv, upstream.csv, limits.csv, summary.json).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sluice::bench {

struct AdaptiveArgs {
  std::string out, title;
  double from_s = 0;
  std::optional<double> converge_from_s;
  double max_converge_s = 60;
  std::vector<std::string> runs;
};
int cmd_adaptive(const AdaptiveArgs& args);

struct LimitChartArgs {
  std::string out, title;
  std::vector<std::string> panels;  ///< "TITLE=DIR[,DIR...]" or "TITLE@MARK_S=DIR[,...]"
};
int cmd_limit_chart(const LimitChartArgs& args);

}  // namespace sluice::bench
