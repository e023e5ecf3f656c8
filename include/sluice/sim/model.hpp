// The simulated GPU of sluice-sim: a pure timing model with no I/O and no clock.
//
// One GPU serves a 7B model. A request holds one of `parallel` slots from the moment it starts
// until its last token. Its prompt is processed first (prefill, time proportional to prompt
// tokens), then it emits tokens one at a time; the time for one token depends on how many
// requests hold a slot at that moment (decoding is memory-bandwidth bound: a batch of N streams
// costs more than one stream, but much less than N streams). docs/simulator.md derives the
// defaults and explains how to recalibrate them.
//
// Everything here is deterministic: output lengths, words and embeddings are functions of a
// seed and the request's text, so two runs with the same seed produce the same bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/core/splitmix.hpp"

namespace sluice::sim {

using Duration = std::chrono::nanoseconds;

/// Per-stream decode speed with `streams` requests decoding together, as a fraction of the
/// speed of one stream alone (1.0 at one stream).
struct ScalingPoint {
  int streams = 1;
  double retention = 1.0;
};

/// The calibration of the simulated GPU. Defaults: a 7B Q4 model on a mid-range consumer GPU.
struct GpuParams {
  double decode_tokens_per_second = 60.0;     ///< one stream alone
  double prefill_tokens_per_second = 1500.0;  ///< prompt processing
  /// Measured retention at a few batch sizes; interpolated on total throughput in between and
  /// held at constant total throughput beyond the last point.
  std::vector<ScalingPoint> scaling = {{1, 1.0}, {2, 0.70}, {4, 0.37}, {8, 0.18}};
  double mean_output_tokens = 250.0;  ///< mean of the drawn output length (log-normal)
  double output_length_sigma = 0.6;   ///< shape of that log-normal (sigma of the log)
  int max_output_tokens = 4096;       ///< upper clamp of drawn lengths and of num_predict
};

/// Checks a calibration; returns a human reason when it is unusable.
std::optional<std::string> validate(const GpuParams& params);

/// Parses "1:1,2:0.7,4:0.37,8:0.18" (streams:retention pairs, streams strictly increasing,
/// retention in (0,1]). A missing 1:1 point is implied.
std::optional<std::vector<ScalingPoint>> parse_scaling(std::string_view text,
                                                       std::string* error = nullptr);
std::string format_scaling(const std::vector<ScalingPoint>& points);

/// Tokens the simulator charges for `chars` characters of prompt: ceil(chars / 4), at least 1.
int prompt_tokens_for_chars(std::size_t chars);

class GpuModel {
 public:
  /// Precondition: validate(params) is empty.
  explicit GpuModel(GpuParams params);

  const GpuParams& params() const { return params_; }

  /// Fraction of solo speed each stream keeps when `active` streams decode together.
  double retention(int active) const;
  /// Tokens per second of one stream when `active` streams decode together.
  double stream_tokens_per_second(int active) const;
  /// Time for one stream to produce its next token while `active` streams hold a slot.
  Duration token_interval(int active) const;
  /// Time to process a prompt of `prompt_tokens` tokens.
  Duration prefill_duration(int prompt_tokens) const;
  /// Output length for a request whose text hashes to `request_seed` when it does not set
  /// num_predict: log-normal with the configured mean, clamped to [1, max_output_tokens].
  int drawn_output_tokens(std::uint64_t request_seed) const;

 private:
  GpuParams params_;
};

/// One request of a planned workload, for predict_fifo().
struct PlannedRequest {
  Duration arrival{0};
  int prompt_tokens = 1;
  int output_tokens = 1;
};

/// What the model predicts for one planned request (times since the same origin as arrival).
struct PredictedTiming {
  Duration start{0};        ///< slot acquired
  Duration first_token{0};  ///< first token emitted
  Duration end{0};          ///< last token emitted
};

/// Replays a workload through the same rules the server follows: `parallel` slots handed out
/// first come first served; prefill, then one token at a time, each token's interval taken from
/// the number of slots held when it begins. Used by tests and docs to compare a run with the
/// model. Requests are served in order of arrival (ties: index order).
std::vector<PredictedTiming> predict_fifo(const GpuModel& model, int parallel,
                                          const std::vector<PlannedRequest>& requests);

// ---- deterministic randomness and text ----

/// 64-bit FNV-1a of `text`, mixed with `seed`.
std::uint64_t hash_text(std::uint64_t seed, std::string_view text);

/// splitmix64 (sluice/core/splitmix.hpp): small, fast, good enough for simulation.
using Rng = core::SplitMix64;

/// Emits pseudo-words, one token at a time: the first without a leading space, later ones
/// with one, occasional punctuation, capitals after a full stop. ASCII only.
class WordGenerator {
 public:
  explicit WordGenerator(std::uint64_t seed) : rng_(seed) {}
  std::string next_token();

 private:
  Rng rng_;
  bool first_ = true;
  bool capitalize_ = true;
};

/// A deterministic embedding of `text` with `dims` components in [-1, 1]; unit length when
/// `normalize` (as /api/embed returns), raw otherwise (as the legacy /api/embeddings).
std::vector<float> embedding(std::uint64_t seed, std::string_view text, int dims, bool normalize);

}  // namespace sluice::sim
