// What sluice tells waiting clients: the request registry (core::RequestRegistry) with the queue
// order it reads positions from (core::Scheduler::queue_order), cached, and the record of one
// scheduled request as it goes through admission. Internal to src/net.
//
// Cost: the order is computed from a copy of the scheduler's state, so it is cached and
// recomputed only when the queue changed, at most every kMinRecompute, and at most as often as
// keeps its CPU time under 1/kCostShare of the loop (the interval grows with what the last
// computation cost). A request that parked after the cached order was computed forces one
// recomputation (within the CPU bound), so its first position is its own. Requests beyond the
// first kOrdered in order get the lower bound kOrdered.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/queue_order.hpp"
#include "sluice/core/request_registry.hpp"
#include "sluice/net/admission_gate.hpp"

namespace sluice::net {

class TrackedRequest;

/// A parked request's figures, as GET /sluice/requests/{id} and the progress keep-alives say them.
struct WaitFigures {
  std::int64_t position = 0;
  bool exact = true;
  std::optional<core::Duration> eta;
  std::optional<core::Duration> eta_rate;  ///< the drain-rate estimate alone (for measuring)
};

class WaitingBoard {
 public:
  static constexpr std::size_t kOrdered = 1000;
  static constexpr auto kMinRecompute = std::chrono::milliseconds(100);
  static constexpr int kCostShare = 20;
  /// Parked requests listed per workload in /admin/state.
  static constexpr std::size_t kListedPerWorkload = 100;

  explicit WaitingBoard(const AdmissionGate& gate) : gate_(gate) {}

  core::RequestRegistry registry;

  /// The figures of a record (parked: its place in the order; running or finished: 0, 0).
  WaitFigures figures(const core::RequestRecord& record);
  /// The same for a parked ticket that parked at gate event `epoch`.
  WaitFigures figures(core::Ticket ticket, std::uint64_t epoch);
  /// The order, recomputed if stale (see the file comment).
  const core::QueueOrder& order(std::uint64_t needed_epoch = 0);

  /// Requests recording their ETA at park (TrackedRequest::record_at_park) that parked before
  /// sluice could estimate one: they get the first ETA there is, at the next admission.
  void await_eta(TrackedRequest* request);
  void drop_await(TrackedRequest* request);
  /// Gives the awaiting requests their first ETA if the order now has one (a completion just
  /// taught the estimators); called on every admission while any awaits.
  void give_awaited_etas();

 private:
  const AdmissionGate& gate_;
  std::vector<TrackedRequest*> awaiting_eta_;
  core::QueueOrder order_;
  std::optional<std::uint64_t> version_;  // gate version the cached order was computed at
  std::chrono::steady_clock::time_point computed_at_{};
  std::chrono::steady_clock::duration cost_{};
};

/// The record of one scheduled request while it is served: registered in the board's registry
/// for its whole life (finished when it goes), told by the gate when it parks (ParkObserver),
/// and, for progress, wakes the keep-alive loop then.
class TrackedRequest final : public ParkObserver {
 public:
  TrackedRequest(WaitingBoard& board, const AdmissionGate& gate, std::string_view id,
                 std::string_view owner, std::string_view workload);
  ~TrackedRequest();
  TrackedRequest(const TrackedRequest&) = delete;
  TrackedRequest& operator=(const TrackedRequest&) = delete;

  void on_parked(core::Ticket ticket) override;
  /// Admitted (at once, or after waiting).
  void admitted();
  /// Its current figures (parked: position and ETA).
  WaitFigures figures();

  bool parked() const { return parked_; }
  /// Compute the figures when it parks (at_park()): for X-Sluice-Eta-Ms.
  bool record_at_park = false;
  const std::optional<WaitFigures>& at_park() const { return at_park_; }
  /// How long after parking at_park()'s ETA was given (0: when it parked; later when it parked
  /// before sluice could estimate): X-Sluice-Eta-After-Ms.
  const std::optional<core::Duration>& eta_after() const { return eta_after_; }
  /// Called once when it parks (the progress loop's wake-up); optional.
  std::function<void()> on_park;

 private:
  WaitingBoard& board_;
  const AdmissionGate& gate_;
  core::RequestRegistry::Handle handle_;
  core::Ticket ticket_;
  std::uint64_t epoch_ = 0;
  bool parked_ = false;
  core::Time parked_at_{};
  std::optional<WaitFigures> at_park_;
  std::optional<core::Duration> eta_after_;

  friend class WaitingBoard;
};

/// The JSON document of GET /sluice/requests/{id}: {id, state, workload, position,
/// position_exact, eta_ms (null while unknown), queued_ms}.
std::string request_status_json(const core::RequestRecord& record, const WaitFigures& figures,
                                core::Time now);

}  // namespace sluice::net
