// sluice-bench outputs: the per-request CSV (written and read back), the JSON summary, the
// Markdown tables, the SVG chart, and the targets a scenario declares. Pure text in, text out.
//
// CSV: RFC 4180 (fields with ',', '"' or line breaks are quoted, quotes doubled), one header
// line naming the columns (kCsvColumns), empty field = no value. Times in seconds with
// microsecond precision, on the target's clock (see stats.hpp). parse_csv() reads exactly what
// write_csv() writes, so `sluice-bench report` can recompute everything from the CSVs.
//
// SVG: one panel per run side by side, sharing the y axis (end-to-end latency) and the x axis
// (time since the run started, at which each request completed); one dot per ok request,
// coloured by tier (by group when all requests share one tier but groups differ); failed
// requests as crosses; a dashed line at each tier's (group's) p90. Self-contained
// (no scripts, no external fonts), so any browser opens it.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/bench/stats.hpp"

namespace sluice::bench {

class ReportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr std::string_view kCsvColumns =
    "index,user,tier,group,request_id,status,outcome,error,num_predict,sent_s,queue_s,ttft_s,"
    "latency_s,prompt_tokens,output_tokens,done_reason,workload,model,eta_s,eta_rate_s,eta_after_s";
/// The columns before eta_after_s was added; parse_csv() still reads such files.
inline constexpr std::string_view kCsvColumnsWithoutEtaAfter =
    "index,user,tier,group,request_id,status,outcome,error,num_predict,sent_s,queue_s,ttft_s,"
    "latency_s,prompt_tokens,output_tokens,done_reason,workload,model,eta_s,eta_rate_s";
/// The columns before the ETAs were added; parse_csv() still reads such files.
inline constexpr std::string_view kCsvColumnsWithoutEta =
    "index,user,tier,group,request_id,status,outcome,error,num_predict,sent_s,queue_s,ttft_s,"
    "latency_s,prompt_tokens,output_tokens,done_reason,workload,model";
/// The columns before `model` was added; parse_csv() still reads such files.
inline constexpr std::string_view kCsvColumnsWithoutModel =
    "index,user,tier,group,request_id,status,outcome,error,num_predict,sent_s,queue_s,ttft_s,"
    "latency_s,prompt_tokens,output_tokens,done_reason,workload";

std::string write_csv(const std::vector<RequestRecord>& records);
/// Throws ReportError naming the line on malformed input.
std::vector<RequestRecord> parse_csv(std::string_view text);

nlohmann::json summary_to_json(const Summary& summary);
/// Reads what summary_to_json() writes. Throws ReportError.
Summary summary_from_json(const nlohmann::json& json);

/// One run: its summary and its records (for the chart).
struct Run {
  Summary summary;
  std::vector<RequestRecord> records;
};

/// Per run and tier (then per group when a tier has several groups): n, failed, latency
/// p50/p90/p99/max, TTFT p50/p90, tokens/s, Jain, utilisation. When `baseline` names one of the
/// runs, adds the p50 and p90 ratio to the baseline's same tier/group.
std::string markdown_table(const std::vector<Run>& runs, const std::string& baseline = "");

/// Per run: failed, span, output tokens/s, model loads and their time, mean GPU busy and each
/// upstream's. Empty unless some run had several upstreams or loaded a model (a fleet), so the
/// single-GPU experiments print exactly what they printed before.
std::string fleet_markdown_table(const std::vector<Run>& runs);

/// Per run and tier: how far the ETA sluice gave when a request parked (X-Sluice-Eta-Ms, and
/// the drain-rate estimate X-Sluice-Eta-Rate-Ms) was from its real wait (X-Sluice-Queue-Ms):
/// median and p90 of |ETA - wait| / wait. Empty unless some request carried an ETA.
std::string eta_markdown_table(const std::vector<Run>& runs);

std::string svg_chart(const std::vector<Run>& runs, const std::string& title);

/// A target the scenario declares, checked against a set of runs:
///   {"name": "...", "run": "after", "metric": "latency_p90", "subject": "tier:paid",
///    "baseline": "before", "max_ratio": 0.5}
/// metric: latency_p50|p90|p99|max, ttft_p50|p90|p99|max, jain, utilisation, failures,
///         tokens_per_s, model_loads. subject: "tier:NAME", "group:NAME" or "all" (not for
///         utilisation and model_loads, which are the run's).
/// Bound: max / min (absolute) or max_ratio / min_ratio (against the baseline run's value).
struct TargetResult {
  std::string name;
  std::string status;  ///< met | missed | skipped
  std::string detail;  ///< the figures ("0.31 s / 0.92 s = 0.34x <= 0.4x")
};

/// Throws ReportError on a malformed target list.
std::vector<TargetResult> evaluate_targets(std::string_view targets_json,
                                           const std::vector<Run>& runs);
std::string targets_markdown(const std::vector<TargetResult>& results);

/// Three significant figures, no exponent for values >= 1 ("1234", "12.3", "1.23", "0.0421").
std::string format_number(double value);
/// A fraction as a percentage with one decimal ("83.3 %"); "–" when absent.
std::string format_percent(const std::optional<double>& fraction);

}  // namespace sluice::bench
