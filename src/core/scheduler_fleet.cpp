// The scheduling core across a fleet: a request moved off a backend that failed it (reroute,
// requeue) and what the network layer observes about backends (health, catalogs, residency).
// See scheduler.hpp for the semantics; scheduler.cpp holds the rest of the public API.
#include <algorithm>
#include <optional>

#include "scheduler_state.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::core {

std::optional<BackendId> Scheduler::reroute(Permit permit, Time now,
                                            std::vector<Admission>& admitted) {
  State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return std::nullopt;
  Entry& entry = state.entries[e];
  const ModelId m = state.subqueues[entry.subqueue].model;
  const BackendId failed = entry.backend;
  // A retry does not wait for a warm slot: it has waited already.
  const Placement where =
      state.fleet.choose(m, entry.cost, Time::min(), now, BackendSet{1} << failed);
  if (where.kind != Placement::Kind::place) return std::nullopt;
  state.fleet.release(failed, m, {}, now, entry.expected_end);
  const bool cold = m != kUnlistedModel && !state.fleet.is_resident(where.backend, m);
  entry.expected_end = state.fleet.admit(where.backend, m, now, entry.cost);
  entry.backend = where.backend;
  entry.backend_in_flight = state.fleet.in_flight(where.backend);
  entry.backend_backlog = state.adaptive_backlog(where.backend);
  entry.backend_load_mark = state.fleet.in_flight_seconds(where.backend, now);
  if (cold) state.release_holds_for(where.backend);
  state.release_holds_for(failed);
  state.dispatch(config_, admitted, now);
  return where.backend;
}

std::optional<RequeueResult> Scheduler::requeue(Permit permit, Time now,
                                                std::vector<Admission>& admitted) {
  State& state = *state_;
  const EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return std::nullopt;
  const SubQueueId s = state.entries[e].subqueue;
  const BackendId failed = state.entries[e].backend;
  const ModelId m = state.subqueues[s].model;
  // Off its backend as in release(), but no completion and no cost correction: it did not run.
  state.count_in_flight(e, -1);
  state.fleet.release(failed, m, {}, now, state.entries[e].expected_end);
  state.release_holds_for(failed);
  state.unblock_keys_of(s);
  // Refund what admit() charged (tag += cost, and cost / weight on the class).
  state.charge(s, -static_cast<double>(state.entries[e].cost));

  RequeueResult result;
  if (draining_ || state.entries[e].deadline <= now) {
    result.kind = draining_ ? RequeueResult::Kind::shutting_down : RequeueResult::Kind::timed_out;
    state.entries.release(e);
    state.drop_subqueue_ref(s);
    state.dispatch(config_, admitted, now);
    return result;
  }
  {
    Entry& entry = state.entries[e];
    const std::uint32_t generation = entry.generation + 1;  // the permit's handle goes stale
    entry.generation = generation == 0 ? 1 : generation;
    entry.state = EntryState::parked;
    entry.avoid |= BackendSet{1} << failed;
  }
  state.link_head(s, e);
  state.count_parked(e, +1);
  // Back in the queue: as in enqueue(), a node that becomes backlogged again starts no earlier
  // than the virtual time, but keeps its original arrival as the tie-break.
  const AccountId a = state.subqueues[s].account;
  Account& acc = state.accounts[a];
  const ClassId c = acc.class_id;
  State::Class& cls = state.classes[c];
  const std::uint64_t seq = state.entries[e].seq;
  if (acc.parked == 1) {
    acc.tag = std::max(acc.tag, cls.vtime);
    acc.order = seq;
  }
  if (cls.parked == 1) {
    cls.tag = std::max(cls.tag, state.band_of(cls).vtime);
    cls.order = seq;
  }
  cls.ready_accounts->update(a);
  state.band_of(cls).ready_classes->update(c);
  // Its subqueue has a new head: whatever held the old one back is judged afresh.
  state.unblock(s);
  state.release_hold(s);
  state.sync_ready(s);
  state.deadlines.push(e);

  const std::size_t before = admitted.size();
  state.dispatch(config_, admitted, now);
  const std::uint64_t h = State::handle(e, state.entries[e]);
  if (state.entries[e].state == EntryState::in_flight) {
    auto own =
        std::find_if(admitted.begin() + static_cast<std::ptrdiff_t>(before), admitted.end(),
                     [&](const Admission& admission) { return admission.permit.value == h; });
    result.kind = RequeueResult::Kind::admitted;
    result.permit = Permit{h};
    result.backend = own->backend;
    admitted.erase(own);
    return result;
  }
  result.kind = RequeueResult::Kind::parked;
  result.ticket = Ticket{h};
  result.deadline = state.entries[e].deadline;
  return result;
}

void Scheduler::observe_up(BackendId backend, bool up, Time now, std::vector<Admission>& admitted) {
  State& state = *state_;
  if (!state.fleet.live(backend)) return;
  state.fleet.set_up(backend, up);
  state.release_every_hold();
  state.dispatch(config_, admitted, now);
}

void Scheduler::observe_catalog(BackendId backend, std::span<const std::string> models, Time now,
                                std::vector<Admission>& admitted) {
  State& state = *state_;
  if (!state.fleet.live(backend)) return;
  if (!state.fleet.set_catalog(backend, models)) return;
  state.release_every_hold();
  state.dispatch(config_, admitted, now);
}

void Scheduler::observe_resident(BackendId backend, std::span<const std::string> models, Time now,
                                 std::vector<Admission>& admitted) {
  State& state = *state_;
  if (!state.fleet.live(backend)) return;
  if (!state.fleet.set_resident(backend, models, now)) return;
  state.release_every_hold();
  state.dispatch(config_, admitted, now);
}

const Fleet& Scheduler::fleet() const {
  return state_->fleet;
}

std::optional<BackendId> Scheduler::permit_backend(Permit permit) const {
  const State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return std::nullopt;
  return state.entries[e].backend;
}

}  // namespace sluice::core
