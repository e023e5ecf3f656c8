// Faults that sluice-sim injects into one request, chosen by the request header `X-Sim-Fault`
// (a comma-separated list) or drawn at random with --fault-rate. Pure: parsing and drawing only;
// the server carries the faults out (see docs/simulator.md for what each one does on the wire).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sim {

struct FaultPlan {
  bool error_500 = false;               ///< answer 500 {"error":...} at once
  bool refuse = false;                  ///< close the connection before any response byte
  bool hang_before_headers = false;     ///< take a slot, then never answer
  std::optional<int> hang_mid_stream;   ///< after N tokens: stop sending, keep the connection
  std::optional<int> reset_mid_stream;  ///< after N tokens: TCP reset
  std::optional<int> error_line;        ///< after N tokens: one {"error":...} line, then end
  std::chrono::milliseconds slow_first_token{0};  ///< extra simulated delay before token 1

  bool any() const;
  /// Tokens to emit before a mid-stream fault, if one is planned.
  std::optional<int> mid_stream_after() const;
  /// Canonical text, e.g. "slow-first-token=500,error-line=2" (empty when none).
  std::string text() const;
};

/// Tokens sent before a mid-stream fault when the header gives no count.
inline constexpr int kDefaultFaultAfterTokens = 2;

/// Parses an X-Sim-Fault value: items `error-500`, `refuse`, `hang-before-headers`,
/// `hang-mid-stream[=N]`, `reset-mid-stream[=N]`, `error-line[=N]`, `slow-first-token=MS`.
/// At most one mid-stream fault. On failure returns nullopt and a reason naming the item.
std::optional<FaultPlan> parse_faults(std::string_view text, std::string* error = nullptr);

/// Parses --fault-mix: the same items, each one a separate choice for --fault-rate.
std::optional<std::vector<FaultPlan>> parse_fault_mix(std::string_view text,
                                                      std::string* error = nullptr);

/// The default mix for --fault-rate: faults a soak run survives without manual cleanup.
std::vector<FaultPlan> default_fault_mix();

}  // namespace sluice::sim
