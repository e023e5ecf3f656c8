// Issue 13's benchmark, the pure part: what `sluice-bench run` records beside requests.csv for
// it (the limit sluice had in force over time, limits.csv; the simulator's per-request slot
// wait and service, upstream.csv), and what `sluice-bench adaptive` computes from the runs of
// one group (one simulator parallelism, one load): per arm (sluice with "auto" or a static
// limit) tokens/s, paid p90, the wait inside the backend as a share of service, and the time
// the auto limit took to settle, checked against the targets. No I/O, no clock.
//
// Definitions (docs/adaptive-concurrency.md repeats them):
//  * window: [from_s, end of the run]; from_s = 0 for a whole run, the time of a live change +
//    30 s for "back within the targets".
//  * tokens/s: output tokens of ok requests that ended in the window / (last end - from_s).
//  * paid p90: nearest-rank p90 latency of ok requests of tier "paid" sent in the window.
//  * backend wait share of a request (from the simulator's records): (slot acquired - arrival)
//    / (end - slot acquired); p90 over the requests that arrived in the window and finished.
//  * settled limit: the limit most often in force (time-weighted) over the last third of the
//    window; converged: the first time after which the limit in force stays within +-1 of it to
//    the end, minus from_s. Unknown without samples, or when the last limit is off by more.
//  * best static: per metric, the best value among the static arms (highest tokens/s, lowest
//    paid p90), so "auto >= 0.95x best" holds against every static limit.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/bench/scenario.hpp"
#include "sluice/bench/stats.hpp"

namespace sluice::bench {

/// The limit sluice reported at run time `t_s` (simulated seconds since the run started).
struct LimitPoint {
  double t_s = 0;
  long limit = 0;
};

/// backends[0].concurrency_limit of a GET /admin/state answer; nullopt (and why) otherwise.
std::optional<long> parse_state_limit(std::string_view json_text, std::string* why = nullptr);

std::string write_limits_csv(const std::vector<LimitPoint>& points);
/// Throws ReportError (report.hpp) on malformed input.
std::vector<LimitPoint> parse_limits_csv(std::string_view text);

/// One of the simulator's records of the run, in run time: arrival, slot acquired, end.
std::string write_upstream_csv(const std::vector<UpstreamInterval>& intervals);
std::vector<UpstreamInterval> parse_upstream_csv(std::string_view text);

/// Multiplies every Poisson group's rate by `factor` (> 0): the same scenario near the capacity
/// of a larger or smaller backend.
void scale_poisson_rates(Scenario& scenario, double factor);

/// One live change of the simulator during a run: at run time `at_s`, POST `body` to
/// /sim/config. Parsed from "SECONDS=JSON"; nullopt (and why) when malformed.
struct LiveChange {
  double at_s = 0;
  std::string body;
};
std::optional<LiveChange> parse_live_change(std::string_view text, std::string* why = nullptr);

struct ArmInput {
  std::string label;
  std::optional<long> static_limit;  ///< nullopt: "auto"
  std::vector<RequestRecord> records;
  std::vector<UpstreamInterval> upstream;
  std::vector<LimitPoint> limits;
};

struct ArmMetrics {
  std::string label;
  std::optional<long> static_limit;
  std::optional<double> tokens_per_s;
  std::optional<double> paid_p90_s;
  std::optional<double> wait_share_p90;
  std::optional<long> settled_limit;
  std::optional<double> converged_s;
  std::size_t failed = 0;
};

/// Settled limit and time to converge over [from_s, end_s] (definitions above).
std::pair<std::optional<long>, std::optional<double>> convergence(
    const std::vector<LimitPoint>& points, double from_s, double end_s);

/// Metrics over [from_s, end]; the convergence is measured from converge_from_s (default from_s).
ArmMetrics arm_metrics(const ArmInput& arm, double from_s,
                       std::optional<double> converge_from_s = std::nullopt);

struct AdaptiveTargets {
  double min_tokens_ratio = 0.95;
  double max_p90_ratio = 1.1;
  double max_wait_share = 0.05;
  double max_converge_s = 60;
};

/// The table of one group: one row per arm, the auto arm(s) checked against the best static.
std::string adaptive_markdown(const std::string& title, const std::vector<ArmMetrics>& arms,
                              const AdaptiveTargets& targets);

/// One line per auto arm: "met" or "missed: ..." for each target, for the summary.
struct AutoVerdict {
  std::string label;
  bool tokens = false, p90 = false, wait = false, converged = false;
  std::string detail;
};
std::vector<AutoVerdict> judge_auto(const std::vector<ArmMetrics>& arms,
                                    const AdaptiveTargets& targets);

/// The limit over time of each arm that has samples, one panel per group (title, arms).
struct LimitSeries {
  std::string label;
  std::vector<LimitPoint> points;
  double end_s = 0;
};
struct LimitPanel {
  std::string title;
  std::vector<LimitSeries> series;
  std::optional<double> mark_s;  ///< a dashed vertical line (a live change)
};
std::string limit_chart(const std::vector<LimitPanel>& panels, const std::string& title);

}  // namespace sluice::bench
