// What sluice-bench measures and how it summarises it. Pure: no I/O, no clock.
//
// Units: every time is in seconds of the *target's* clock. Against a simulator running F times
// faster than real time, the load generator multiplies what it measures on the wall clock by F
// (Summary::time_scale), so numbers compare with a real GPU's.
//
// Definitions (docs/experiment.md repeats them for readers):
//  * percentile p of n values: nearest rank, the value at position ceil(p/100 * n) in ascending
//    order (1-based); always one of the observed values; max is p100.
//  * a request is ok when the status was 200 and the stream ended with a `done: true` object.
//    Latency and time-to-first-token percentiles are over ok requests only; failures are counted.
//  * tokens/s of a subject: output tokens of its ok requests / the run's span.
//  * span: first send to last response end, over all requests of the run.
//  * Jain's fairness index of values x_1..x_n: (sum x)^2 / (n * sum x^2), in (0, 1]; 1 when all
//    are equal. Computed over the mean latency of each user (ok requests) of a tier or group.
//  * upstream utilisation: length of the union of the upstream's generation intervals (slot
//    acquired -> finished, from the simulator's per-request records) inside the span, divided by
//    the span. 1.0 means the GPU was never idle from the first send to the last answer. With
//    several upstreams (a fleet): the sum of their busy times / (number of upstreams x span),
//    the mean over the backends; peak_active counts generations at once across all of them.
//  * model loads: loads the upstreams completed during the run (their /sim/stats `loads`
//    counters after minus before, summed), whoever caused them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::bench {

/// One request as the load generator saw it.
struct RequestRecord {
  std::size_t index = 0;
  std::string user;
  std::string tier;
  std::string group;
  std::string request_id;
  int status = 0;       ///< HTTP status; 0 when no response head arrived
  std::string outcome;  ///< ok | http_error | stream_error | transport_error | timeout | not_sent
  std::string error;    ///< short reason when not ok
  std::optional<int> num_predict;     ///< what the request asked for
  double sent_s = 0;                  ///< since the run started
  std::optional<double> queue_s;      ///< X-Sluice-Queue-Ms, when the response carried it
  std::optional<double> ttft_s;       ///< send -> first body byte
  std::optional<double> latency_s;    ///< send -> last byte (or failure)
  std::optional<long> prompt_tokens;  ///< prompt_eval_count of the final object
  std::optional<long> output_tokens;  ///< eval_count of the final object
  std::string done_reason;
  std::string workload;              ///< X-Sluice-Workload, when present
  std::string model;                 ///< what the request asked for
  std::optional<double> eta_s;       ///< X-Sluice-Eta-Ms: the ETA given when it parked
  std::optional<double> eta_rate_s;  ///< X-Sluice-Eta-Rate-Ms: the drain-rate ETA then
  /// X-Sluice-Eta-After-Ms: how long after parking the ETAs were given (a request that parked
  /// before sluice could estimate gets its first ETA later); their error is against the wait
  /// left then, queue_s - eta_after_s.
  std::optional<double> eta_after_s;

  bool ok() const { return outcome == "ok"; }
  double end_s() const { return sent_s + latency_s.value_or(0); }
};

/// Nearest-rank percentile of `values` (any order); nullopt when empty. 0 < p <= 100.
std::optional<double> percentile(std::vector<double> values, double p);

/// Jain's fairness index; nullopt when empty or all zero.
std::optional<double> jain_index(const std::vector<double>& values);

/// Length of the union of [begin, end] intervals clipped to [lo, hi].
double union_length(std::vector<std::pair<double, double>> intervals, double lo, double hi);

struct Distribution {
  std::size_t n = 0;
  std::optional<double> p50, p90, p99, max, mean;
};

Distribution distribution(const std::vector<double>& values);

struct UserSummary {
  std::string user;
  std::size_t count = 0;
  std::size_t ok = 0;
  std::optional<double> mean_latency_s;
  std::optional<double> p90_latency_s;
};

/// Statistics of one tier, one group, or all requests.
struct SubjectSummary {
  std::string kind;  ///< "tier", "group" or "all"
  std::string name;
  std::size_t count = 0;
  std::size_t ok = 0;
  std::size_t failed = 0;
  Distribution latency;
  Distribution ttft;
  Distribution queue;
  /// |ETA at parking - wait| / wait of ok requests that waited and carried the ETA (service
  /// estimate, and the drain-rate one).
  Distribution eta_error;
  Distribution eta_rate_error;
  long output_tokens = 0;
  std::optional<double> tokens_per_s;
  std::optional<double> jain;  ///< of per-user mean latency
  std::vector<UserSummary> users;
};

/// One upstream's share of UpstreamUsage (one per --sim-stats, in their order).
struct BackendUsage {
  std::string target;       ///< the --sim-stats URL
  std::size_t records = 0;  ///< the run's requests it saw
  double busy_s = 0;
  std::optional<double> utilisation;
  std::optional<std::uint64_t> model_loads;
  double load_s = 0;  ///< simulated time of those loads
};

/// What the upstream (a simulator, or several) reported about the run's requests.
struct UpstreamUsage {
  bool available = false;
  std::size_t records = 0;  ///< the run's requests the upstreams saw
  double busy_s = 0;        ///< summed over the upstreams
  std::optional<double> utilisation;
  std::size_t peak_active = 0;  ///< most requests generating at once (across all upstreams)
  std::optional<std::uint64_t> model_loads;  ///< summed; unknown if any upstream did not say
  double load_s = 0;
  std::vector<BackendUsage> backends;  ///< per upstream, when there are several or loads are known
  std::string note;                    ///< why it is unavailable, when it is
};

struct Summary {
  std::string scenario;
  std::string label;
  std::string target;
  double time_scale = 1;
  double span_s = 0;
  std::size_t requests = 0;
  std::size_t ok = 0;
  std::size_t failed = 0;
  bool truncated = false;  ///< the run hit max_duration_s and cut requests off
  SubjectSummary all;
  std::vector<SubjectSummary> tiers;
  std::vector<SubjectSummary> groups;
  UpstreamUsage upstream;
  std::vector<std::pair<std::string, std::string>> notes;

  const SubjectSummary* find(const std::string& kind, const std::string& name) const;
};

/// Span of a run: first send to last end, over every record that was sent.
double run_span(const std::vector<RequestRecord>& records);

/// Summarises records; `upstream` is passed through (compute it with upstream_usage()).
Summary summarize(const std::vector<RequestRecord>& records, UpstreamUsage upstream);

/// One upstream generation interval in run time (seconds since the run started).
struct UpstreamInterval {
  double start_s = 0;
  double end_s = 0;
  double arrival_s = 0;  ///< when the request reached the upstream (before its wait for a slot)
};

/// Utilisation of the upstream over [first send, last end] of `records`.
UpstreamUsage upstream_usage(const std::vector<RequestRecord>& records,
                             const std::vector<UpstreamInterval>& intervals);

/// What one upstream reported: its generation intervals on the run's clock and the model loads
/// it completed during the run (nullopt when it does not count them).
struct UpstreamObservation {
  std::string target;
  std::vector<UpstreamInterval> intervals;
  std::optional<std::uint64_t> model_loads;
  double load_s = 0;
};

/// Usage of several upstreams (definitions above). With one, the same figures as the overload
/// above, plus its loads. Precondition: `upstreams` is not empty.
UpstreamUsage upstream_usage(const std::vector<RequestRecord>& records,
                             const std::vector<UpstreamObservation>& upstreams);

}  // namespace sluice::bench
