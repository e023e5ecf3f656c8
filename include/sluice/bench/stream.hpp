// Pure pieces of the load generator that read what comes back: the NDJSON stream scanner (token
// counts from the final object, error lines) and the simulator's /sim/stats document (the
// upstream's per-request generation intervals). No I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/bench/stats.hpp"
#include "sluice/util/line_splitter.hpp"

namespace sluice::bench {

/// Reads an Ollama NDJSON response body piece by piece (split on '\n', not on chunks).
/// Remembers the final object's counts and any `{"error": ...}` line. A line longer than
/// kMaxLineBytes is an error (the stream is not what a model server sends).
class NdjsonScanner {
 public:
  static constexpr std::size_t kMaxLineBytes = 1024 * 1024;

  void feed(std::string_view bytes);
  /// Call at the end of the body: a last line without '\n' is processed.
  void finish();

  bool done() const { return done_; }  ///< saw an object with "done": true
  const std::optional<long>& prompt_tokens() const { return prompt_tokens_; }
  const std::optional<long>& output_tokens() const { return output_tokens_; }
  const std::string& done_reason() const { return done_reason_; }
  /// The first error: an error line from the server, a malformed line, an overlong line.
  const std::string& error() const { return error_; }
  std::size_t lines() const { return lines_; }

 private:
  void line(std::string_view text);

  util::LineSplitter splitter_{kMaxLineBytes};
  bool done_ = false;
  std::optional<long> prompt_tokens_, output_tokens_;
  std::string done_reason_;
  std::string error_;
  std::size_t lines_ = 0;
};

/// What a `GET /sim/stats` returned, reduced to what the benchmark needs.
struct SimStats {
  double time_scale = 1;
  std::int64_t now_ns = 0;    ///< the simulator's clock when it answered
  std::uint64_t last_id = 0;  ///< highest record id in the answer (0 if none)
  int parallel = 0;
  /// Model loads completed since the simulator started (or since /sim/reset), and their total
  /// simulated time; absent from simulators without model residency.
  std::optional<std::uint64_t> loads;
  std::optional<std::int64_t> load_ns_total;
  struct Interval {
    std::uint64_t id = 0;
    std::int64_t start_ns = 0;    ///< slot acquired
    std::int64_t end_ns = 0;      ///< finished (or now_ns if still running)
    std::int64_t arrival_ns = 0;  ///< reached the simulator (start_ns - arrival_ns: its wait)
  };
  std::vector<Interval> generation;  ///< records of the run (see parse_sim_stats)
};

/// Parses /sim/stats JSON. Keeps the records that carry header `x-bench-run: RUN_ID` (all when
/// run_id is empty) and that started generating. Returns nullopt (and why) when malformed.
std::optional<SimStats> parse_sim_stats(std::string_view json_text, std::string_view run_id,
                                        std::string* why = nullptr);

/// Places generation intervals on the run's time line: `anchor_ns` is the simulator's clock at
/// the moment the run's clock read `anchor_run_s` (both in simulated time).
std::vector<UpstreamInterval> to_run_time(const SimStats& stats, std::int64_t anchor_ns,
                                          double anchor_run_s);

}  // namespace sluice::bench
