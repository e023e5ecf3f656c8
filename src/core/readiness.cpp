// Readiness: which subqueues may compete for the next slot, and the per-key limits and the
// placement that hold a subqueue's head back. All blocking and unblocking happens here.
//
// Placement holds work like key blocks, per model: a head that no backend may take now
// (Fleet::choose says full, down, unserved or wait_warm) puts its subqueue on its model's held
// list. The list is released when a backend that may serve the model frees a slot (a release
// or a reroute on it), when anything about the fleet changes (health, catalogs, residency,
// reconfigure), when a cold placement makes the model resident somewhere new, at the earliest
// time one of them may stop waiting for a warm slot (expire(), next_deadline()), and — for the
// models with a request waiting for a warm slot — whenever the demand changes (a request
// parked, admitted, ended or removed), since whether a load is worth it depends on it. A head
// told to wait for a faster slot (placement() with may_defer) is held only within one
// dispatch(), which releases it again before it returns (fair_queue.cpp).
//
// A subqueue is ready iff it has parked entries and no limit key holds its head back.
// An account is in its class heap iff it has a ready subqueue; a class is in its band heap iff
// its account heap is non-empty. Blocking is discovered lazily: selection looks at the best
// account, and if the head of a subqueue does not fit its keys' limits, that subqueue is parked
// on the key's blocked list until the key frees capacity. So a request held back by its own key
// never holds anyone else back.
//
// A blocked subqueue keeps its fair position (its account's tag does not move); it is judged
// again when its key frees capacity (a release of a request holding that key, unblock_keys_of),
// when its held-back head leaves (remove_parked), or when limits may have grown (reconfigure,
// unblock_every_key).
#include <cassert>

#include "scheduler_state.hpp"

namespace sluice::core {

void Scheduler::State::sync_ready(SubQueueId s) {
  SubQueue& sq = subqueues[s];
  bool want = sq.parked > 0 && sq.blocked_by.is_nil() && !sq.placement_held;
  if (want == sq.ready) return;
  sq.ready = want;
  Account& acc = accounts[sq.account];
  Class& cls = classes[acc.class_id];
  if (want) {
    if (acc.ready++ == 0) {
      cls.ready_accounts->push(sq.account);
      if (cls.heap_pos == kNotInHeap) band_of(cls).ready_classes->push(acc.class_id);
    }
  } else {
    if (--acc.ready == 0) {
      cls.ready_accounts->erase(sq.account);
      if (cls.ready_accounts->empty()) band_of(cls).ready_classes->erase(acc.class_id);
    }
  }
}

void Scheduler::State::block(SubQueueId s, LimitKeyId k) {
  SubQueue& sq = subqueues[s];
  LimitKey& key = keys[k];
  sq.blocked_by = k;
  sq.blocked_pos = static_cast<std::uint32_t>(key.blocked.size());
  key.blocked.push_back(s);
  sync_ready(s);
}

void Scheduler::State::unblock(SubQueueId s) {
  SubQueue& sq = subqueues[s];
  if (sq.blocked_by.is_nil()) return;
  LimitKey& key = keys[sq.blocked_by];
  SubQueueId last = key.blocked.back();
  key.blocked[sq.blocked_pos] = last;
  subqueues[last].blocked_pos = sq.blocked_pos;
  key.blocked.pop_back();
  sq.blocked_by = LimitKeyId::nil();
  sync_ready(s);
}

void Scheduler::State::unblock_all(LimitKeyId k) {
  while (!keys[k].blocked.empty())
    unblock(keys[k].blocked.back());
}

// The limit key that holds back a request of `cost` in subqueue sq, or nil.
LimitKeyId Scheduler::State::blocking_key(const SubQueue& sq, std::int64_t cost,
                                          const std::vector<KeyLimitSpec>& limits) const {
  for (LimitKeyId k : sq.keys) {
    if (k.is_nil()) continue;
    const LimitKey& key = keys[k];
    const KeyLimitSpec& limit = limits[key.limit];
    if (limit.max_concurrency > 0 && key.in_flight >= limit.max_concurrency) return k;
    if (limit.max_tokens > 0 && key.in_flight > 0 &&
        key.in_flight_tokens + cost > limit.max_tokens) {
      return k;
    }
  }
  return LimitKeyId::nil();
}

// A request of subqueue s ended: its limit keys have room again, so the subqueues they held
// back are judged again at the next selection.
void Scheduler::State::unblock_keys_of(SubQueueId s) {
  for (LimitKeyId k : subqueues[s].keys) {
    if (!k.is_nil()) unblock_all(k);
  }
}

// Limits may have grown (reconfigure): every held-back subqueue is judged again.
void Scheduler::State::unblock_every_key() {
  for (LimitKeyId k : keys.ids()) {
    if (keys[k].live) unblock_all(k);
  }
}

Placement Scheduler::State::placement(const SubQueue& sq, Time now, bool may_defer) const {
  const Entry& head = entries[sq.head];
  // A requeued head avoids the backends that failed it while another is up and serves its
  // model; without one it is placed as if it avoided nothing (see Scheduler::requeue). It has
  // waited already: it does not wait for a faster slot.
  if (head.avoid != 0) {
    const Placement avoiding = fleet.choose(sq.model, head.cost, head.enqueued, now, head.avoid);
    if (avoiding.kind != Placement::Kind::down && avoiding.kind != Placement::Kind::unserved)
      return avoiding;
  }
  const Placement where = fleet.choose(sq.model, head.cost, head.enqueued, now);
  if (!may_defer || head.avoid != 0 || where.kind != Placement::Kind::place) return where;
  const auto faster =
      fleet.faster_slot(sq.model, head.cost, where.backend, now - head.enqueued, now);
  if (!faster || !outranks_ready_work(sq)) return where;
  return {.kind = Placement::Kind::wait_faster, .backend = *faster};
}

// Whether some ready subqueue has lower priority than sq: a lower band, or in sq's band a class
// of lower weight. Only then may sq's head leave a free slot to others (the slot goes to that
// work, not to its peers).
bool Scheduler::State::outranks_ready_work(const SubQueue& sq) const {
  const Class& mine = classes[accounts[sq.account].class_id];
  for (const Band& band : bands) {  // highest level first
    if (band.level > mine.band || band.ready_classes->empty()) continue;
    if (band.level < mine.band) return true;
    for (ClassId c : band.ready_classes->elements()) {
      if (classes[c].weight < mine.weight) return true;
    }
  }
  return false;
}

void Scheduler::State::hold(SubQueueId s, const Placement& why) {
  SubQueue& sq = subqueues[s];
  const ModelId m = sq.model;
  if (holds.size() <= m) holds.resize(m + 1);
  ModelHold& h = holds[m];
  if (h.held.empty()) {
    h.listed_pos = static_cast<std::uint32_t>(held_models.size());
    held_models.push_back(m);
  }
  sq.placement_held = true;
  sq.held_pos = static_cast<std::uint32_t>(h.held.size());
  h.held.push_back(s);
  if (why.kind == Placement::Kind::wait_warm) h.wake = std::min(h.wake, why.until);
  if (why.kind == Placement::Kind::wait_faster) {
    deferred.push_back(s);
    if (entries[sq.head].deferred_in == 0) entries[sq.head].deferred_in = dispatches;
  }
  sync_ready(s);
}

void Scheduler::State::release_hold(SubQueueId s) {
  SubQueue& sq = subqueues[s];
  if (!sq.placement_held) return;
  ModelHold& h = holds[sq.model];
  const SubQueueId last = h.held.back();
  h.held[sq.held_pos] = last;
  subqueues[last].held_pos = sq.held_pos;
  h.held.pop_back();
  sq.placement_held = false;
  if (h.held.empty()) {
    const ModelId moved = held_models.back();
    held_models[h.listed_pos] = moved;
    holds[moved].listed_pos = h.listed_pos;
    held_models.pop_back();
    h.listed_pos = UINT32_MAX;
    h.wake = never();
  }
  sync_ready(s);
}

void Scheduler::State::release_holds(ModelId m) {
  if (m >= holds.size()) return;
  while (!holds[m].held.empty())
    release_hold(holds[m].held.back());
}

void Scheduler::State::release_holds_for(BackendId b) {
  for (std::size_t i = held_models.size(); i-- > 0;) {
    if (i >= held_models.size()) continue;
    const ModelId m = held_models[i];
    if ((fleet.eligible(m) >> b) & 1) release_holds(m);
  }
}

void Scheduler::State::release_every_hold() {
  while (!held_models.empty())
    release_holds(held_models.back());
}

void Scheduler::State::release_holds_due(Time now) {
  for (std::size_t i = held_models.size(); i-- > 0;) {
    if (i >= held_models.size()) continue;
    const ModelId m = held_models[i];
    if (holds[m].wake <= now) release_holds(m);
  }
}

// Whether a request that waited a load time may go cold depends on the demand on the fleet
// (Fleet::choose, worth_loading()): requests parked and running per model. Every change of it
// judges the warm waits again (only they depend on it; a model's list is released whole).
void Scheduler::State::release_warm_waits() {
  for (std::size_t i = held_models.size(); i-- > 0;) {
    if (i >= held_models.size()) continue;
    const ModelId m = held_models[i];
    if (holds[m].wake != never()) release_holds(m);
  }
}

std::optional<Time> Scheduler::State::next_wake() const {
  std::optional<Time> wake;
  for (ModelId m : held_models) {
    if (holds[m].wake != never() && (!wake || holds[m].wake < *wake)) wake = holds[m].wake;
  }
  return wake;
}

}  // namespace sluice::core
