// The settings of sluice-sim that GET/POST /sim/config read and change while it runs, their
// JSON form and their validation. Pure: no I/O. The server applies a validated change at once
// (docs/simulator.md, "Live changes", says what each one affects).
//
// Invariant: apply_live_changes() either returns settings that all pass validation, or an
// error and no change (a request changes everything it names or nothing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "sluice/sim/model.hpp"

namespace sluice::sim {

struct LiveSettings {
  int parallel = 1;                ///< slots per model
  std::size_t max_queue = 0;       ///< waiting requests per model before 503; 0 = unbounded
  GpuParams gpu;                   ///< decode_rate, prefill_rate, decode_scaling
  int max_loaded = 1;              ///< models resident at once
  std::int64_t load_ns = 0;        ///< time to load a model
  std::int64_t keep_alive_ns = 0;  ///< default keep-alive; < 0 = forever
  int external_streams = 0;        ///< streams of another tenant decoding on the same GPU
};

/// {"parallel":2,"max_queue":0,"decode_rate":60.0,...}: every key POST accepts, with values
/// POST accepts back (durations as seconds, -1 for a keep-alive kept forever).
std::string live_settings_json(const LiveSettings& settings);

/// Applies a POST /sim/config body (a JSON object with any subset of the keys above) to
/// `current`. Returns the new settings, or an error message naming the offending field
/// (unknown keys are errors).
std::variant<LiveSettings, std::string> apply_live_changes(const LiveSettings& current,
                                                           std::string_view body);

}  // namespace sluice::sim
