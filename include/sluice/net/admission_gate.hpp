// The admission gate: the asynchronous adapter around the pure scheduling core.
//
// A session co_awaits admit(request). The gate hands the request to core::Scheduler; if the core
// admits it at once the coroutine continues immediately, otherwise it is parked until the core
// wakes it (a release, a reconfigure, another request's cancellation), its deadline passes, the
// gate drains for shutdown, or the caller cancels the wait (the client went away).
//
// Threading: single-threaded. Every member function must be called on the gate's executor (the
// io_context thread); nothing here locks.
//
// Time: the gate converts its Clock to core time (nanoseconds since the clock's epoch). One timer
// is armed for the core's next_deadline(); when it fires the gate calls Scheduler::expire. The
// Clock is a template parameter so tests can use a manual clock and step the io_context
// (AdmissionGate is the production instantiation over std::chrono::steady_clock).
//
// Cancellation: admit() supports terminal, partial and total cancellation through the awaiting
// coroutine's cancellation slot, e.g. `co_await (gate.admit(r) || client_closed())` with
// asio::experimental::awaitable_operators. A cancelled wait removes the request from the queue
// (its place is given to nobody and no slot is taken) and returns Kind::cancelled. If the
// request had been admitted in the same instant, the slot is released at once.
//
// Requeue: when a slot's backend failed and no other backend has room (Slot::reroute() said
// no), requeue(slot) puts the request back into the queue at its place (Scheduler::requeue) and
// waits for its new admission exactly as admit() waits, with the same cancellation.
//
// Slots: an admitted request holds a Slot, an RAII permit. Destroying or releasing it returns the
// slot exactly once and wakes the next parked requests immediately. The gate must outlive every
// Slot it handed out.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/core/scheduler.hpp"

namespace sluice::net {

/// Who a Slot returns its permit to. Implemented by BasicAdmissionGate.
class SlotOwner {
 public:
  virtual void release_slot(core::Permit permit, std::int64_t actual_cost,
                            const core::Timings& timings) = 0;
  virtual std::optional<core::BackendId> reroute_slot(core::Permit permit) = 0;

 protected:
  ~SlotOwner() = default;
};

/// An admitted request's hold on a concurrency slot. Move-only; releases on destruction. If the
/// owner is already gone (process teardown), releasing does nothing.
class Slot {
 public:
  Slot() = default;
  Slot(SlotOwner* owner, std::weak_ptr<void> owner_alive, core::Permit permit,
       core::WorkloadId workload, std::int64_t cost, core::BackendId backend = 0)
      : owner_(owner),
        owner_alive_(std::move(owner_alive)),
        permit_(permit),
        workload_(workload),
        cost_(cost),
        backend_(backend) {}
  Slot(Slot&& other) noexcept { *this = std::move(other); }
  Slot& operator=(Slot&& other) noexcept {
    if (this != &other) {
      release();
      owner_ = std::exchange(other.owner_, nullptr);
      owner_alive_ = std::move(other.owner_alive_);
      permit_ = other.permit_;
      workload_ = other.workload_;
      cost_ = other.cost_;
      actual_cost_ = other.actual_cost_;
      backend_ = other.backend_;
      timings_ = other.timings_;
    }
    return *this;
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() { release(); }

  explicit operator bool() const { return owner_ != nullptr; }
  core::WorkloadId workload() const { return workload_; }
  /// The estimated cost the request was admitted with.
  std::int64_t estimated_cost() const { return cost_; }
  /// Records the real cost (prompt + output tokens) to charge back on release.
  void set_actual_cost(std::int64_t tokens) { actual_cost_ = tokens; }
  /// The durations the final object reported (they teach the fleet load times and speeds).
  void set_timings(const core::Timings& timings) { timings_ = timings; }
  /// The backend the request runs on.
  core::BackendId backend() const { return backend_; }

  /// The backend failed before answering: moves the request to another that has room now.
  /// Returns false (nothing changed) when none has.
  bool reroute() {
    if (!owner_ || owner_alive_.expired()) return false;
    std::optional<core::BackendId> moved = owner_->reroute_slot(permit_);
    if (moved) backend_ = *moved;
    return moved.has_value();
  }

  /// Gives the permit up without releasing it: the owner took the request back (requeue).
  core::Permit surrender() {
    owner_ = nullptr;
    return permit_;
  }

  /// Returns the slot now (idempotent).
  void release() {
    SlotOwner* owner = std::exchange(owner_, nullptr);
    if (owner && !owner_alive_.expired()) owner->release_slot(permit_, actual_cost_, timings_);
  }

 private:
  SlotOwner* owner_ = nullptr;
  std::weak_ptr<void> owner_alive_;
  core::Permit permit_;
  core::WorkloadId workload_ = 0;
  std::int64_t cost_ = 0;
  std::int64_t actual_cost_ = -1;  // unknown: keep the estimate
  core::BackendId backend_ = 0;
  core::Timings timings_;
};

/// Told when a request waiting in admit() or requeue() is parked, with its ticket (for its
/// position in the queue, Scheduler::queue_order). Called synchronously, on the gate's executor;
/// it must not call back into the gate.
class ParkObserver {
 public:
  virtual void on_parked(core::Ticket ticket) = 0;

 protected:
  ~ParkObserver() = default;
};

struct AdmitResult {
  enum class Kind : std::uint8_t {
    admitted,   ///< `slot` holds the permit
    rejected,   ///< a queue bound or shutdown refused it; see `reason`
    timed_out,  ///< its queue deadline passed while parked
    cancelled,  ///< the caller cancelled the wait (client gone)
  };
  Kind kind = Kind::rejected;
  core::RejectReason reason = core::RejectReason::queue_full;  ///< when rejected
  Slot slot;                                                   ///< when admitted
  core::WorkloadId workload = 0;
  core::Duration waited{};  ///< time spent parked (0 when admitted at once)
};

template <class Clock>
class BasicAdmissionGate final : public SlotOwner {
 public:
  using timer_type = boost::asio::basic_waitable_timer<Clock>;

  /// Precondition: core::validate(config) == "".
  BasicAdmissionGate(boost::asio::any_io_executor executor, core::SchedulerConfig config);
  ~BasicAdmissionGate();
  BasicAdmissionGate(const BasicAdmissionGate&) = delete;
  BasicAdmissionGate& operator=(const BasicAdmissionGate&) = delete;

  /// Waits for a slot. See the file comment for cancellation.
  /// `observer` (optional) hears when the request parks.
  boost::asio::awaitable<AdmitResult> admit(core::Request request,
                                            ParkObserver* observer = nullptr);

  /// The backend of `slot` failed and no other has room (precondition: `slot` holds a live
  /// permit of this gate, and slot.reroute() returned false). Puts the request back into the
  /// queue at the place it had, avoiding the failed backend, and waits for its new admission as
  /// admit() does (same cancellation). `slot` is empty afterwards; a new one is in the result
  /// when admitted. timed_out: its original queue deadline passed; rejected: shutting down.
  boost::asio::awaitable<AdmitResult> requeue(Slot& slot, ParkObserver* observer = nullptr);

  /// Applies a new scheduler config (see Scheduler::reconfigure); "" on success, else why
  /// nothing changed. Parked requests keep their place; newly admissible ones wake at once.
  std::string reconfigure(core::SchedulerConfig config);

  /// What the network layer learns about a backend (see Scheduler::observe_*); parked requests
  /// this lets run wake at once.
  void observe_up(core::BackendId backend, bool up);
  void observe_catalog(core::BackendId backend, std::span<const std::string> models);
  void observe_resident(core::BackendId backend, std::span<const std::string> models);

  /// Shutdown: every parked request wakes with Kind::rejected / shutting_down, and so does every
  /// later admit(). Slots already handed out stay valid.
  void drain();

  /// The scheduling core, for classification (classify, find_workload, workload) and reads.
  const core::Scheduler& scheduler() const { return scheduler_; }
  core::Snapshot snapshot() const { return scheduler_.snapshot(now()); }
  std::int64_t retry_after_seconds() const { return scheduler_.retry_after_seconds(now()); }
  std::size_t waiting() const { return waiters_.size(); }
  /// Moves on with every event that changes the queue or the in-flight requests (a cached
  /// Scheduler::queue_order() is current while this has not moved).
  std::uint64_t version() const { return version_; }

  /// Called (synchronously) after each event that changes queue or in-flight counts, so metrics
  /// can follow without polling. Optional.
  std::function<void()> on_change;
  /// Called (synchronously) when a backend's adaptive limit changed, before on_change.
  std::function<void(const core::BackendLimitChange&)> on_limit_change;
  /// Called (synchronously) for each note of an adaptive controller that changed no limit.
  std::function<void(const core::BackendLimitNote&)> on_limit_note;

  void release_slot(core::Permit permit, std::int64_t actual_cost,
                    const core::Timings& timings) override;
  std::optional<core::BackendId> reroute_slot(core::Permit permit) override;

  core::Time now() const {
    return core::Time{std::chrono::duration_cast<core::Duration>(Clock::now().time_since_epoch())};
  }

 private:
  struct Waiter;
  boost::asio::awaitable<AdmitResult> wait_parked(core::Ticket ticket, core::Time start,
                                                  core::WorkloadId workload, std::int64_t cost,
                                                  const std::vector<core::Admission>& others,
                                                  ParkObserver* observer);
  void wake(const std::vector<core::Admission>& admitted);
  void settle(std::vector<core::Admission>& admitted);
  void arm_deadline_timer();
  void on_deadline(boost::system::error_code ec);
  void changed();

  boost::asio::any_io_executor executor_;
  core::Scheduler scheduler_;
  timer_type deadline_timer_;
  core::Time armed_for_ = core::never();
  std::unordered_map<std::uint64_t, Waiter*> waiters_;  // by ticket value
  std::vector<core::Admission> scratch_;
  std::vector<core::Ticket> expired_scratch_;
  std::uint64_t version_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // weak_ptrs see the gate's death
};

using AdmissionGate = BasicAdmissionGate<std::chrono::steady_clock>;
extern template class BasicAdmissionGate<std::chrono::steady_clock>;

}  // namespace sluice::net
