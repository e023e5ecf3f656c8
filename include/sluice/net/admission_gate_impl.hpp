// Implementation of BasicAdmissionGate (see admission_gate.hpp). Included only where the gate
// is explicitly instantiated: src/net/admission_gate.cpp for std::chrono::steady_clock, and the
// gate's tests for a manual clock.
//
// How a parked coroutine sleeps and wakes: each parked admit() owns a Waiter holding a timer that
// never expires; it co_awaits that timer. The gate wakes it by recording the outcome in the
// Waiter and cancelling the timer. If the wait completes and no outcome was recorded, the
// cancellation came from outside (the caller's cancellation slot): the request leaves the queue.
// Waiters register under their ticket value; the gate erases the entry when it records an
// outcome, and a Waiter whose coroutine frame is destroyed without resuming unregisters itself
// (cancelling its ticket, or releasing a permit it never collected).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "sluice/net/admission_gate.hpp"

namespace sluice::net {

template <class Clock>
struct BasicAdmissionGate<Clock>::Waiter {
  Waiter(BasicAdmissionGate* gate, core::Ticket ticket)
      : gate(gate),
        alive(gate->alive_),
        ticket(ticket),
        timer(gate->executor_, timer_type::time_point::max()) {
    gate->waiters_.emplace(ticket.value, this);
  }
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Runs when the coroutine frame goes away. Normally the outcome was collected and nothing is
  // left to do; otherwise make sure the request neither stays parked nor keeps a slot.
  ~Waiter() {
    if (alive.expired() || collected) return;
    if (!outcome) {
      gate->waiters_.erase(ticket.value);
      std::vector<core::Admission> admitted;
      gate->scheduler_.cancel(ticket, gate->now(), admitted);
      gate->wake(admitted);
      gate->arm_deadline_timer();
      gate->changed();
    } else if (*outcome == AdmitResult::Kind::admitted) {
      gate->release_slot(permit, -1, {});
    }
  }

  BasicAdmissionGate* gate;
  std::weak_ptr<void> alive;
  core::Ticket ticket;
  timer_type timer;
  std::optional<AdmitResult::Kind> outcome;
  core::Permit permit;
  core::RejectReason reason = core::RejectReason::queue_full;
  bool collected = false;
};

template <class Clock>
BasicAdmissionGate<Clock>::BasicAdmissionGate(boost::asio::any_io_executor executor,
                                              core::SchedulerConfig config)
    : executor_(std::move(executor)), scheduler_(std::move(config)), deadline_timer_(executor_) {}

template <class Clock>
BasicAdmissionGate<Clock>::~BasicAdmissionGate() {
  alive_.reset();  // Slots and Waiters that outlive the gate now do nothing
}

template <class Clock>
boost::asio::awaitable<AdmitResult> BasicAdmissionGate<Clock>::admit(core::Request request,
                                                                     ParkObserver* observer) {
  namespace asio = boost::asio;
  // Accept every cancellation type (operator|| sends terminal; others may send partial/total).
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());

  const core::Time start = now();
  std::vector<core::Admission> others;
  core::EnqueueResult queued = scheduler_.enqueue(request, start, others);
  AdmitResult result;
  result.workload = request.workload;
  switch (queued.kind) {
    case core::EnqueueResult::Kind::admitted: {
      result.kind = AdmitResult::Kind::admitted;
      result.workload = scheduler_.permit_workload(queued.permit).value_or(request.workload);
      result.slot =
          Slot(this, alive_, queued.permit, result.workload,
               scheduler_.permit_cost(queued.permit).value_or(request.cost), queued.backend);
      wake(others);
      changed();
      co_return result;
    }
    case core::EnqueueResult::Kind::rejected:
      result.kind = AdmitResult::Kind::rejected;
      result.reason = queued.reason;
      co_return result;
    case core::EnqueueResult::Kind::parked:
      break;
  }

  co_return co_await wait_parked(queued.ticket, start, request.workload, request.cost, others,
                                 observer);
}

template <class Clock>
boost::asio::awaitable<AdmitResult> BasicAdmissionGate<Clock>::requeue(Slot& slot,
                                                                       ParkObserver* observer) {
  namespace asio = boost::asio;
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  const core::Time start = now();
  const core::WorkloadId workload = slot.workload();
  const std::int64_t cost = slot.estimated_cost();
  const core::Permit permit = slot.surrender();
  std::vector<core::Admission> others;
  std::optional<core::RequeueResult> requeued = scheduler_.requeue(permit, start, others);
  AdmitResult result;
  result.workload = workload;
  result.kind = AdmitResult::Kind::rejected;
  result.reason = core::RejectReason::shutting_down;
  if (!requeued) co_return result;  // not a live permit (a precondition broken): nothing to do
  switch (requeued->kind) {
    case core::RequeueResult::Kind::admitted:
      result.kind = AdmitResult::Kind::admitted;
      result.slot = Slot(this, alive_, requeued->permit, workload, cost, requeued->backend);
      break;
    case core::RequeueResult::Kind::timed_out:
      result.kind = AdmitResult::Kind::timed_out;
      break;
    case core::RequeueResult::Kind::shutting_down:
      break;
    case core::RequeueResult::Kind::parked:
      co_return co_await wait_parked(requeued->ticket, start, workload, cost, others, observer);
  }
  settle(others);
  co_return result;
}

// Parks the caller under `ticket` until the gate records an outcome or the caller cancels.
// `others`: admissions of the same event, woken once the Waiter is registered.
template <class Clock>
boost::asio::awaitable<AdmitResult> BasicAdmissionGate<Clock>::wait_parked(
    core::Ticket ticket, core::Time start, core::WorkloadId workload, std::int64_t cost,
    const std::vector<core::Admission>& others, ParkObserver* observer) {
  namespace asio = boost::asio;
  AdmitResult result;
  result.workload = workload;
  Waiter waiter(this, ticket);
  if (observer) observer->on_parked(ticket);
  wake(others);
  arm_deadline_timer();
  changed();
  co_await waiter.timer.async_wait(asio::as_tuple(asio::use_awaitable));
  result.waited = now() - start;

  if (!waiter.outcome) {
    // Cancelled by the caller while parked: leave the queue; nobody takes the place.
    waiter.collected = true;
    waiters_.erase(ticket.value);
    std::vector<core::Admission> admitted;
    scheduler_.cancel(ticket, now(), admitted);
    wake(admitted);
    arm_deadline_timer();
    changed();
    result.kind = AdmitResult::Kind::cancelled;
    co_return result;
  }
  waiter.collected = true;
  result.kind = *waiter.outcome;
  result.reason = waiter.reason;
  if (result.kind == AdmitResult::Kind::admitted) {
    result.workload = scheduler_.permit_workload(waiter.permit).value_or(workload);
    result.slot = Slot(this, alive_, waiter.permit, result.workload,
                       scheduler_.permit_cost(waiter.permit).value_or(cost),
                       scheduler_.permit_backend(waiter.permit).value_or(0));
  }
  co_return result;
}

template <class Clock>
void BasicAdmissionGate<Clock>::wake(const std::vector<core::Admission>& admitted) {
  // Releasing an orphaned permit can admit more requests; handle those in the same loop.
  std::vector<core::Admission> pending(admitted.begin(), admitted.end());
  while (!pending.empty()) {
    core::Admission a = pending.back();
    pending.pop_back();
    auto it = waiters_.find(a.ticket.value);
    if (it == waiters_.end()) {
      // Nobody is waiting for it any more (cannot happen while Waiters unregister themselves,
      // but a leaked slot would be worse than a check).
      scheduler_.release(a.permit, -1, now(), pending);
      continue;
    }
    Waiter* waiter = it->second;
    waiters_.erase(it);
    waiter->outcome = AdmitResult::Kind::admitted;
    waiter->permit = a.permit;
    waiter->timer.cancel();
  }
}

template <class Clock>
void BasicAdmissionGate<Clock>::release_slot(core::Permit permit, std::int64_t actual_cost,
                                             const core::Timings& timings) {
  scratch_.clear();
  if (!scheduler_.release(permit, actual_cost, now(), scratch_, timings)) return;
  std::vector<core::Admission> admitted;
  admitted.swap(scratch_);
  for (const core::BackendLimitChange& change : scheduler_.take_limit_changes()) {
    if (on_limit_change) on_limit_change(change);
  }
  for (const core::BackendLimitNote& note : scheduler_.take_limit_notes()) {
    if (on_limit_note) on_limit_note(note);
  }
  settle(admitted);
}

template <class Clock>
std::optional<core::BackendId> BasicAdmissionGate<Clock>::reroute_slot(core::Permit permit) {
  std::vector<core::Admission> admitted;
  std::optional<core::BackendId> moved = scheduler_.reroute(permit, now(), admitted);
  settle(admitted);
  return moved;
}

template <class Clock>
void BasicAdmissionGate<Clock>::settle(std::vector<core::Admission>& admitted) {
  wake(admitted);
  arm_deadline_timer();
  changed();
}

template <class Clock>
void BasicAdmissionGate<Clock>::observe_up(core::BackendId backend, bool up) {
  std::vector<core::Admission> admitted;
  scheduler_.observe_up(backend, up, now(), admitted);
  settle(admitted);
}

template <class Clock>
void BasicAdmissionGate<Clock>::observe_catalog(core::BackendId backend,
                                                std::span<const std::string> models) {
  std::vector<core::Admission> admitted;
  scheduler_.observe_catalog(backend, models, now(), admitted);
  settle(admitted);
}

template <class Clock>
void BasicAdmissionGate<Clock>::observe_resident(core::BackendId backend,
                                                 std::span<const std::string> models) {
  std::vector<core::Admission> admitted;
  scheduler_.observe_resident(backend, models, now(), admitted);
  settle(admitted);
}

template <class Clock>
std::string BasicAdmissionGate<Clock>::reconfigure(core::SchedulerConfig config) {
  std::vector<core::Admission> admitted;
  std::string error = scheduler_.reconfigure(std::move(config), now(), admitted);
  if (!error.empty()) return error;
  wake(admitted);
  arm_deadline_timer();
  changed();
  return "";
}

template <class Clock>
void BasicAdmissionGate<Clock>::drain() {
  std::vector<core::Ticket> rejected;
  scheduler_.drain(rejected);
  for (core::Ticket t : rejected) {
    auto it = waiters_.find(t.value);
    if (it == waiters_.end()) continue;
    Waiter* waiter = it->second;
    waiters_.erase(it);
    waiter->outcome = AdmitResult::Kind::rejected;
    waiter->reason = core::RejectReason::shutting_down;
    waiter->timer.cancel();
  }
  arm_deadline_timer();
  changed();
}

template <class Clock>
void BasicAdmissionGate<Clock>::arm_deadline_timer() {
  std::optional<core::Time> next = scheduler_.next_deadline();
  core::Time target = next.value_or(core::never());
  if (target == armed_for_) return;
  armed_for_ = target;
  if (!next) {
    deadline_timer_.cancel();
    return;
  }
  using clock_duration = typename Clock::duration;
  deadline_timer_.expires_at(typename Clock::time_point(
      std::chrono::duration_cast<clock_duration>(target.time_since_epoch())));
  std::weak_ptr<void> alive = alive_;
  deadline_timer_.async_wait([this, alive](boost::system::error_code ec) {
    if (!alive.expired()) on_deadline(ec);
  });
}

template <class Clock>
void BasicAdmissionGate<Clock>::on_deadline(boost::system::error_code ec) {
  if (ec == boost::asio::error::operation_aborted) return;  // re-armed or cancelled
  armed_for_ = core::never();
  expired_scratch_.clear();
  std::vector<core::Admission> admitted;
  scheduler_.expire(now(), expired_scratch_, admitted);
  for (core::Ticket t : expired_scratch_) {
    auto it = waiters_.find(t.value);
    if (it == waiters_.end()) continue;
    Waiter* waiter = it->second;
    waiters_.erase(it);
    waiter->outcome = AdmitResult::Kind::timed_out;
    waiter->timer.cancel();
  }
  wake(admitted);
  arm_deadline_timer();
  changed();
}

template <class Clock>
void BasicAdmissionGate<Clock>::changed() {
  ++version_;
  if (on_change) on_change();
}

}  // namespace sluice::net
