// What runs around a load (run_load, load.cpp): the simulators' clocks and records before and
// after it, and a watcher thread during it that applies live changes to the simulator and polls
// the limit sluice has in force. Blocking calls (http_get.hpp), off the load's io_context.
// Private to src/bench.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "sluice/bench/load.hpp"
#include "sluice/bench/stream.hpp"

namespace sluice::bench {

/// Run time (simulated seconds since the run began) of a wall-clock instant.
using RunClock = std::function<double(std::chrono::steady_clock::time_point)>;

/// Each simulator's stats before the run and the wall time its clock was read at (the midpoint
/// of the round trip). Empty, with a note saying why, when one of them could not be read.
struct SimAnchors {
  struct Anchor {
    SimStats before;
    std::chrono::steady_clock::time_point wall{};
  };
  std::vector<Anchor> anchors;
  std::string note;
};
SimAnchors anchor_simulators(const std::vector<HttpTarget>& sim_stats);

/// The simulators' records since their anchors, as upstream usage of `result.records` (sets
/// result.intervals and result.upstream; upstream.available is false, with a note, when a
/// simulator could not be read).
void collect_upstream(const SimAnchors& sims, const LoadOptions& options, const RunClock& run_time,
                      LoadResult& result);

/// Applies options.live_changes at their run time and polls options.watch_state every
/// watch_interval_ms until stop(). Starts no thread when there is nothing to do.
class LoadWatcher {
 public:
  LoadWatcher(const LoadOptions& options, RunClock run_time);
  ~LoadWatcher();
  LoadWatcher(const LoadWatcher&) = delete;
  LoadWatcher& operator=(const LoadWatcher&) = delete;

  /// Joins the thread; then take_limits() and take_notes() hold the whole run.
  void stop();
  std::vector<LimitPoint> take_limits() { return std::move(limits_); }
  std::vector<std::string> take_notes() { return std::move(notes_); }

 private:
  void watch();

  const LoadOptions& options_;
  RunClock run_time_;
  std::atomic<bool> stop_{false};
  std::vector<LimitPoint> limits_;
  std::vector<std::string> notes_;
  std::thread thread_;
};

}  // namespace sluice::bench
