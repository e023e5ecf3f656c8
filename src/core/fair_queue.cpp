// Fair order: which parked request runs next, and what running it costs its flows.
//
// Fair queuing is start-time fair queuing applied twice (classes within a band, accounts within
// a class): a node that becomes backlogged starts at max(its last finish tag, the virtual time);
// serving a request of cost c advances its tag by c / weight; the virtual time is the start tag
// of the latest node served. Idle nodes therefore bank no credit, and a node that used more
// than its share waits until the others catch up.
//
// Order of a selection: bands from the highest; in a band the ready class with the smallest
// (tag, order); in it the ready account with the smallest (tag, order); of that account's ready
// subqueues the head that arrived first. A head that its limit keys do not allow, or that no
// backend may take now (placement), is set aside (readiness.cpp) and selection goes on, so it
// never holds back anyone else. The global token
// budget is checked after selection and holds everyone back (no bypass, so a big request is
// never starved by a stream of small ones).
#include <algorithm>
#include <cassert>

#include "scheduler_state.hpp"

namespace sluice::core {

// Removes a parked entry (cancel, expiry, bound rejection, drain) and frees it.
void Scheduler::State::remove_parked(EntryId e) {
  SubQueueId s = entries[e].subqueue;
  bool was_head = subqueues[s].head == e;
  unlink(e);
  count_parked(e, -1);
  deadlines.erase(e);
  SubQueue& sq = subqueues[s];
  if ((!sq.blocked_by.is_nil() || sq.placement_held) && (sq.parked == 0 || was_head)) {
    // The held-back head is gone: the new head (if any) is judged afresh at selection.
    unblock(s);
    release_hold(s);
  } else {
    sync_ready(s);
  }
  entries.release(e);
  drop_subqueue_ref(s);
}

// The best admissible head of account a's subqueues (earliest arrival), blocking the
// subqueues whose head does not fit its keys. Nil when none is admissible.
EntryId Scheduler::State::best_head(AccountId a, const std::vector<KeyLimitSpec>& limits, Time now,
                                    bool may_defer) {
  EntryId best;
  // Blocking never changes acc.subqueues, so iterating by index is safe.
  const std::size_t n = accounts[a].subqueues.size();
  for (std::size_t i = 0; i < n; ++i) {
    SubQueueId s = accounts[a].subqueues[i];
    SubQueue& sq = subqueues[s];
    if (!sq.ready) continue;
    EntryId head = sq.head;
    LimitKeyId blocker = blocking_key(sq, entries[head].cost, limits);
    if (!blocker.is_nil()) {
      block(s, blocker);
      continue;
    }
    const Placement where = placement(sq, now, may_defer);
    if (where.kind != Placement::Kind::place) {
      hold(s, where);
      continue;
    }
    if (best.is_nil() || entries[head].seq < entries[best].seq) {
      best = head;
      chosen_backend = where.backend;
    }
  }
  return best;
}

// The next request in fair order that its per-key limits allow, or nil.
EntryId Scheduler::State::select(const std::vector<KeyLimitSpec>& limits, Time now,
                                 bool may_defer) {
  for (Band& band : bands) {
    while (!band.ready_classes->empty()) {
      Class& cls = classes[band.ready_classes->top()];
      while (!cls.ready_accounts->empty()) {
        EntryId e = best_head(cls.ready_accounts->top(), limits, now, may_defer);
        if (!e.is_nil()) return e;
      }
      // sync_ready removed the class from the band once its last account went unready.
    }
  }
  return EntryId::nil();
}

void Scheduler::State::admit(EntryId e, BackendId b, Time now) {
  SubQueueId s = entries[e].subqueue;
  unlink(e);
  count_parked(e, -1);
  deadlines.erase(e);
  entries[e].state = EntryState::in_flight;
  entries[e].backend = b;
  entries[e].admitted = now;
  entries[e].admit_seq = ++admit_seq;
  if (in_flight == 0) busy_since = now;
  count_in_flight(e, +1);
  const ModelId m = subqueues[s].model;
  const bool cold = m != kUnlistedModel && !fleet.is_resident(b, m);
  entries[e].expected_end = fleet.admit(b, m, now, entries[e].cost);
  entries[e].backend_in_flight = fleet.in_flight(b);
  entries[e].backend_backlog = adaptive_backlog(b);
  entries[e].backend_load_mark = fleet.in_flight_seconds(b, now);
  // Held for a faster slot by an earlier dispatch(): it let others take a free slot and waited.
  if (entries[e].deferred_in != 0 && entries[e].deferred_in != dispatches)
    fleet.count_faster_slot_wait(b);
  entries[e].deferred_in = 0;
  // Residency on b changed (m is resident there now, maybe another model was evicted): the
  // requests b may serve are judged again, e.g. those waiting for a warm m may go to b now.
  if (cold) release_holds_for(b);

  AccountId a = subqueues[s].account;
  Account& acc = accounts[a];
  ClassId c = acc.class_id;
  Class& cls = classes[c];
  Band& band = band_of(cls);
  const double cost = static_cast<double>(entries[e].cost);
  if (acc.tag > cls.vtime) {
    cls.vtime = acc.tag;
    ++vtime_moves;
  }
  acc.tag += cost;
  band.vtime = std::max(band.vtime, cls.tag);
  cls.tag += cost / cls.weight;
  sync_ready(s);
  cls.ready_accounts->update(a);
  band.ready_classes->update(c);
}

void Scheduler::State::dispatch(const SchedulerConfig& config, std::vector<Admission>& out,
                                Time now) {
  last_now = std::max(last_now, now);
  ++dispatches;
  release_holds_due(now);  // an event may come before the expire() of a warm wait's end
  admit_in_order(config, out, now, true);
  if (!deferred.empty()) {
    // Heads that waited for a faster slot while lower-priority work took the free ones: a slot
    // nobody took is theirs after all (work conservation), in fair order; the others are held
    // as full, judged again when a slot frees.
    for (SubQueueId s : deferred)
      release_hold(s);
    deferred.clear();
    admit_in_order(config, out, now, false);
  }
  concurrency_ceiling = std::max(config.max_concurrency, in_flight);
}

void Scheduler::State::admit_in_order(const SchedulerConfig& config, std::vector<Admission>& out,
                                      Time now, bool may_defer) {
  while (in_flight < config.max_concurrency) {
    EntryId e = select(config.per_key, now, may_defer);
    if (e.is_nil()) break;
    if (config.max_inflight_tokens > 0 && in_flight > 0 &&
        in_flight_tokens + entries[e].cost > config.max_inflight_tokens) {
      break;  // the global budget holds everyone back; no bypass, so big requests can't starve
    }
    const BackendId b = chosen_backend;
    admit(e, b, now);
    std::uint64_t h = handle(e, entries[e]);
    out.push_back(Admission{Ticket{h}, Permit{h}, b});
  }
}

// Charges `delta` tokens (actual - estimated) to the account and class of subqueue s.
void Scheduler::State::charge(SubQueueId s, double delta) {
  if (delta == 0) return;
  AccountId a = subqueues[s].account;
  Account& acc = accounts[a];
  ClassId c = acc.class_id;
  Class& cls = classes[c];
  acc.tag += delta;
  cls.tag += delta / cls.weight;
  cls.ready_accounts->update(a);
  band_of(cls).ready_classes->update(c);
}

}  // namespace sluice::core
