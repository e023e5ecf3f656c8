// What runs around a load (see load_watch.hpp), and probe_time_scale (load.hpp).
#include "load_watch.hpp"

#include <cmath>
#include <optional>

#include "http_get.hpp"
#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/report.hpp"

namespace sluice::bench {
namespace {

std::string failure(const GetResult& got) {
  return got.error.empty() ? "HTTP " + std::to_string(got.status) : got.error;
}

}  // namespace

std::optional<double> probe_time_scale(const std::vector<HttpTarget>& stats, std::string* why) {
  std::optional<double> scale;
  for (const auto& target : stats) {
    const auto got = http_get(target, "/sim/stats?limit=0", std::chrono::seconds(10));
    if (!got.error.empty() || got.status != 200) {
      if (why) *why = target.to_string() + ": " + failure(got);
      return std::nullopt;
    }
    const auto parsed = parse_sim_stats(got.body, "", why);
    if (!parsed) return std::nullopt;
    if (scale && std::abs(*scale - parsed->time_scale) > 1e-9) {
      if (why)
        *why = "the simulators run at different time scales (" + std::to_string(*scale) + " and " +
               std::to_string(parsed->time_scale) + ")";
      return std::nullopt;
    }
    scale = parsed->time_scale;
  }
  if (!scale && why) *why = "no simulator given";
  return scale;
}

SimAnchors anchor_simulators(const std::vector<HttpTarget>& sim_stats) {
  SimAnchors sims;
  for (const auto& target : sim_stats) {
    const auto got = http_get(target, "/sim/stats?limit=1", std::chrono::seconds(10));
    std::optional<SimStats> before;
    if (got.error.empty() && got.status == 200) {
      before = parse_sim_stats(got.body, "", &sims.note);
    } else {
      sims.note = "GET " + target.to_string() + "/sim/stats: " + failure(got);
    }
    if (!before) {
      sims.anchors.clear();
      break;
    }
    sims.anchors.push_back({*before, got.sent + (got.received - got.sent) / 2});
  }
  if (sim_stats.empty()) sims.note = "no --sim-stats given";
  return sims;
}

void collect_upstream(const SimAnchors& sims, const LoadOptions& options, const RunClock& run_time,
                      LoadResult& result) {
  std::vector<UpstreamObservation> observed;
  std::string stats_note = sims.note;
  std::string scale_note;
  for (std::size_t i = 0; i < sims.anchors.size(); ++i) {
    const auto& target = options.sim_stats[i];
    const auto& before = sims.anchors[i].before;
    const auto since = "/sim/stats?since=" + std::to_string(before.last_id);
    const auto got = http_get(target, since, std::chrono::seconds(30));
    std::optional<SimStats> after;
    if (got.error.empty() && got.status == 200) {
      after = parse_sim_stats(got.body, options.run_id, &stats_note);
    } else {
      stats_note = "GET " + target.to_string() + "/sim/stats after the run: " + failure(got);
    }
    if (!after) {
      observed.clear();
      break;
    }
    UpstreamObservation o;
    o.target = target.to_string();
    o.intervals = to_run_time(*after, before.now_ns, run_time(sims.anchors[i].wall));
    result.intervals.insert(result.intervals.end(), o.intervals.begin(), o.intervals.end());
    if (before.loads && after->loads && *after->loads >= *before.loads) {
      o.model_loads = *after->loads - *before.loads;
      o.load_s = double(after->load_ns_total.value_or(0) - before.load_ns_total.value_or(0)) / 1e9;
    }
    if (std::abs(after->time_scale - options.time_scale) > 1e-9)
      scale_note = "the simulator's time scale (" + std::to_string(after->time_scale) +
                   ") differs from --time-scale";
    observed.push_back(std::move(o));
  }
  if (!observed.empty()) {
    result.upstream = upstream_usage(result.records, observed);
    result.upstream.note = scale_note;
    return;
  }
  result.upstream.available = false;
  result.upstream.note = stats_note;
}

LoadWatcher::LoadWatcher(const LoadOptions& options, RunClock run_time)
    : options_(options), run_time_(std::move(run_time)) {
  if (options_.watch_state || !options_.live_changes.empty())
    thread_ = std::thread([this] { watch(); });
}

LoadWatcher::~LoadWatcher() {
  stop();
}

void LoadWatcher::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void LoadWatcher::watch() {
  std::size_t next_change = 0;
  std::optional<long> last;
  std::string why;
  while (!stop_) {
    const double now_s = run_time_(std::chrono::steady_clock::now());
    while (next_change < options_.live_changes.size() &&
           options_.live_changes[next_change].at_s <= now_s) {
      const LiveChange& change = options_.live_changes[next_change++];
      std::string note = "live change at " + format_number(now_s) + " s: " + change.body;
      if (options_.sim_stats.empty()) {
        note += " not applied: no --sim-stats";
      } else {
        const auto got =
            http_get(options_.sim_stats[0], "/sim/config", std::chrono::seconds(5), &change.body);
        if (!got.error.empty() || got.status != 200)
          note += " failed: " + (got.error.empty() ? got.body : got.error);
      }
      notes_.push_back(std::move(note));
    }
    if (options_.watch_state) {
      const auto got = http_get(*options_.watch_state, "/admin/state", std::chrono::seconds(5));
      std::optional<long> limit;
      if (got.error.empty() && got.status == 200) limit = parse_state_limit(got.body, &why);
      if (limit && limit != last) {
        limits_.push_back({run_time_(got.sent + (got.received - got.sent) / 2), *limit});
        last = limit;
      } else if (!limit && why.empty()) {
        why = failure(got);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.watch_interval_ms));
  }
  if (options_.watch_state && limits_.empty())
    notes_.push_back("GET /admin/state gave no limit: " + why);
}

}  // namespace sluice::bench
