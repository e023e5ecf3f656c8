// The bounds of the scheduler's numbers, in one place: sluice::core::validate() enforces them and
// the config loader (src/config) reads every field against the same constants, so a value the
// config accepts is one the core accepts (tests/unit/test_config_description.cpp checks both
// sides). docs/configuration.md and config/sluice.schema.json state the same numbers; the schema is
// checked against the config's description.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::core {

/// scheduler.max_concurrency is 1..kMaxConcurrency; a per-key max_concurrency 0..kMaxConcurrency.
inline constexpr std::int64_t kMaxConcurrency = 100'000;
/// Every max_queue (global, per workload, per key) is 0..kMaxQueue.
inline constexpr std::int64_t kMaxQueue = 10'000'000;
/// max_inflight_tokens and a per-key max_tokens are 0..kMaxTokenBudget (0 = no budget).
inline constexpr std::int64_t kMaxTokenBudget = 1'000'000'000'000;
/// A workload's priority is > 0 and <= kMaxPriority (also the bound of X-Priority).
inline constexpr double kMaxPriority = 1'000'000.0;
/// A workload's band is kMinBand..kMaxBand.
inline constexpr int kMinBand = -1000;
inline constexpr int kMaxBand = 1000;

/// scheduler.progress_queue_timeout_cap is at most this.
inline constexpr std::chrono::seconds kMaxProgressQueueTimeout{3600};

}  // namespace sluice::core
