// The load generator: runs a plan against an Ollama-compatible URL and records what each request
// saw. Asio/Beast underneath (kept out of this header): one io_context thread, one coroutine per
// request, one TCP connection per request in flight, every response read as a stream.
//
// Measurement: the run's clock starts when the first request is due. sent_s is when the
// generator issued the request (before connecting, as a client's call would start); time to
// first token is send -> first body byte (Ollama sends no headers before the first token, so the
// first body byte is the first token); latency is send -> end of body. Every wall-clock duration is
// multiplied by LoadOptions::time_scale, so against a simulator running F times faster the numbers
// are in simulated seconds. X-Sluice-Queue-Ms (the proxy's real milliseconds) is scaled the same
// way.
//
// Bounds: at most max_in_flight requests at once (the rest wait their turn in the generator, in
// due order); every request ends by its own deadline (request_timeout_s) and by the run's
// (max_duration_s); response heads are limited to 64 KiB and NDJSON lines to 1 MiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/scenario.hpp"
#include "sluice/bench/stats.hpp"
#include "sluice/bench/target.hpp"

namespace sluice::bench {

struct LoadOptions {
  /// Where requests go; with several, user i of the plan sends everything to targets[i % n]
  /// (clients each configured with one server, no proxy in between). Not empty.
  std::vector<HttpTarget> targets;
  double time_scale = 1;  ///< simulated seconds per wall second (1 = real time)
  std::size_t max_in_flight = 4096;
  std::string run_id;  ///< sent as X-Bench-Run on every request
  /// Simulators whose GET /sim/stats give the upstream usage and model loads (summed over them).
  std::vector<HttpTarget> sim_stats;
  std::string label;     ///< shown in the progress line
  bool progress = true;  ///< live progress line on stderr
  /// sluice's admin listener: GET /admin/state is polled every watch_interval_ms (real
  /// milliseconds) during the run and backends[0].concurrency_limit recorded (LoadResult::limits).
  std::optional<HttpTarget> watch_state;
  int watch_interval_ms = 10;
  /// POSTed to sim_stats[0]'s /sim/config at their run time (simulated seconds), in order.
  std::vector<LiveChange> live_changes;
};

struct LoadResult {
  std::vector<RequestRecord> records;
  UpstreamUsage upstream;
  bool truncated = false;  ///< the run deadline cut requests off
  double wall_s = 0;
  std::vector<LimitPoint> limits;           ///< with watch_state: only changes, and the first
  std::vector<UpstreamInterval> intervals;  ///< the simulators' records of the run, in run time
  std::vector<std::string> notes;           ///< live changes applied (or failed), watch errors
};

/// Reads /sim/stats of each simulator once (blocking) to learn their time scale; nullopt (and
/// why) when one does not answer or they differ.
std::optional<double> probe_time_scale(const std::vector<HttpTarget>& stats,
                                       std::string* why = nullptr);

/// Runs the plan to completion (or to the scenario's max_duration_s). Blocking.
LoadResult run_load(const Scenario& scenario, const Plan& plan, const LoadOptions& options);

}  // namespace sluice::bench
