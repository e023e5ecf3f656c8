// Scheduler::check_invariants(): recomputes every counter from the entries and checks the
// structure against it (heaps, FIFO order, readiness, blocked lists, the idle list, limits and
// work conservation). O(n); for tests, which call it after every step of the model check.
#include <string>
#include <vector>

#include "scheduler_state.hpp"

namespace sluice::core {

std::string Scheduler::check_invariants() const {
  const State& state = *state_;
  auto fail = [](const std::string& what) { return what; };
  std::int64_t parked = 0, in_flight = 0, tokens = 0;
  // Counts recomputed from the entries, indexed by WorkloadId or by an id's value.
  std::vector<std::int64_t> w_parked(state.workloads.size()), w_flight(state.workloads.size()),
      w_tokens(state.workloads.size());
  std::vector<std::int64_t> s_parked(state.subqueues.items.size()),
      s_refs(state.subqueues.items.size());
  std::vector<std::int64_t> a_parked(state.accounts.items.size()),
      a_flight(state.accounts.items.size());
  std::vector<std::int64_t> k_parked(state.keys.items.size()), k_flight(state.keys.items.size()),
      k_tokens(state.keys.items.size());
  std::size_t deadline_entries = 0;
  std::vector<std::int64_t> b_flight(state.fleet.size());
  for (EntryId e : state.entries.ids()) {
    const Entry& entry = state.entries[e];
    if (entry.state == EntryState::free) continue;
    if (!state.subqueues.contains(entry.subqueue)) {
      return fail("entry " + std::to_string(e.value) + " points to a dead subqueue");
    }
    const SubQueue& sq = state.subqueues[entry.subqueue];
    const Account& acc = state.accounts[sq.account];
    WorkloadId w = state.classes[acc.class_id].workload;
    ++s_refs[entry.subqueue.value];
    if (entry.state == EntryState::parked) {
      ++parked;
      ++w_parked[w];
      ++s_parked[entry.subqueue.value];
      ++a_parked[sq.account.value];
      for (LimitKeyId k : sq.keys) {
        if (!k.is_nil()) ++k_parked[k.value];
      }
      if (entry.heap_pos == kNotInHeap) return fail("parked entry missing from deadline heap");
      ++deadline_entries;
    } else {
      ++in_flight;
      tokens += entry.cost;
      if (!state.fleet.live(entry.backend)) return fail("in-flight entry on a dead backend");
      ++b_flight[entry.backend];
      ++w_flight[w];
      w_tokens[w] += entry.cost;
      ++a_flight[sq.account.value];
      for (LimitKeyId k : sq.keys) {
        if (k.is_nil()) continue;
        ++k_flight[k.value];
        k_tokens[k.value] += entry.cost;
      }
      if (entry.heap_pos != kNotInHeap) return fail("in-flight entry in the deadline heap");
    }
  }
  if (deadline_entries != state.deadlines.size()) return fail("deadline heap size mismatch");
  if (parked != state.parked) return fail("global parked count mismatch");
  if (in_flight != state.in_flight) return fail("global in-flight count mismatch");
  if (tokens != state.in_flight_tokens) return fail("global in-flight tokens mismatch");
  if (state.in_flight > state.concurrency_ceiling) return fail("in-flight above max_concurrency");
  for (WorkloadId w = 0; w < state.workloads.size(); ++w) {
    const WorkloadInfo& info = state.workloads[w];
    if (info.parked != w_parked[w] || info.in_flight != w_flight[w] ||
        info.in_flight_tokens != w_tokens[w]) {
      return fail("workload '" + info.spec.name + "' counters mismatch");
    }
  }
  for (SubQueueId s : state.subqueues.ids()) {
    const SubQueue& sq = state.subqueues[s];
    if (!sq.live) continue;
    if (sq.parked != s_parked[s.value]) return fail("subqueue parked mismatch");
    if (sq.refs != s_refs[s.value]) return fail("subqueue refs mismatch");
    if (sq.refs == 0) return fail("live subqueue without entries");
    bool want_ready = sq.parked > 0 && sq.blocked_by.is_nil() && !sq.placement_held;
    if (sq.ready != want_ready) return fail("subqueue readiness stale");
    std::uint32_t count = 0;
    for (EntryId e = sq.head; !e.is_nil(); e = state.entries[e].next) {
      const Entry& entry = state.entries[e];
      if (entry.subqueue != s || entry.state != EntryState::parked) {
        return fail("subqueue list holds a foreign entry");
      }
      if (!entry.next.is_nil() && state.entries[entry.next].seq < entry.seq) {
        return fail("subqueue not FIFO");
      }
      if (++count > sq.parked) return fail("subqueue list longer than its count");
    }
    if (count != sq.parked) return fail("subqueue list shorter than its count");
    if (!sq.blocked_by.is_nil()) {
      const LimitKey& key = state.keys[sq.blocked_by];
      if (sq.blocked_pos >= key.blocked.size() || key.blocked[sq.blocked_pos] != s) {
        return fail("blocked subqueue not on its key's list");
      }
    }
    if (sq.placement_held) {
      if (sq.model >= state.holds.size()) return fail("held subqueue's model has no hold list");
      const ModelHold& h = state.holds[sq.model];
      if (sq.held_pos >= h.held.size() || h.held[sq.held_pos] != s) {
        return fail("held subqueue not on its model's list");
      }
    }
  }
  for (AccountId a : state.accounts.ids()) {
    const Account& acc = state.accounts[a];
    if (!acc.live) continue;
    if (acc.parked != a_parked[a.value] || acc.in_flight != a_flight[a.value]) {
      return fail("account '" + acc.fairness_key + "' counters mismatch");
    }
    if (acc.idle_listed != acc.subqueues.empty()) {
      return fail("account '" + acc.fairness_key +
                  "' is idle but not listed, or listed but active");
    }
    std::uint32_t ready = 0;
    for (SubQueueId s : acc.subqueues)
      ready += state.subqueues[s].ready ? 1 : 0;
    if (ready != acc.ready) return fail("account ready count mismatch");
    bool in_heap = acc.heap_pos != kNotInHeap;
    if (in_heap != (acc.ready > 0)) return fail("account heap membership wrong");
  }
  // The idle list: each listed account once, links consistent both ways, cursor on the list.
  std::size_t listed = 0;
  bool cursor_listed = state.idle_cursor.is_nil();
  AccountId prev;
  for (AccountId a = state.idle_head; !a.is_nil(); prev = a, a = state.accounts[a].idle_next) {
    if (!state.accounts.contains(a) || !state.accounts[a].idle_listed) {
      return fail("idle list holds an account that is not listed");
    }
    if (state.accounts[a].idle_prev != prev) return fail("idle list links broken");
    if (++listed > state.idle_count) return fail("idle list longer than its count");
    if (a == state.idle_cursor) cursor_listed = true;
  }
  if (prev != state.idle_tail) return fail("idle list tail wrong");
  if (listed != state.idle_count) return fail("idle list shorter than its count");
  if (state.idle_count > kMaxIdleAccounts) return fail("idle list above kMaxIdleAccounts");
  if (!cursor_listed) return fail("idle cursor off the list");
  if (state.settled_moves == state.vtime_moves) {
    for (AccountId a = state.idle_head; !a.is_nil(); a = state.accounts[a].idle_next) {
      const Account& acc = state.accounts[a];
      if (acc.tag <= state.classes[acc.class_id].vtime) {
        return fail("idle list settled while an account on it owes nothing");
      }
    }
  }
  for (ClassId c : state.classes.ids()) {
    const State::Class& cls = state.classes[c];
    if (!cls.live) continue;
    bool in_heap = cls.heap_pos != kNotInHeap;
    if (in_heap != !cls.ready_accounts->empty()) return fail("class heap membership wrong");
  }
  for (LimitKeyId k : state.keys.ids()) {
    const LimitKey& key = state.keys[k];
    if (!key.live) continue;
    if (key.parked != k_parked[k.value] || key.in_flight != k_flight[k.value] ||
        key.in_flight_tokens != k_tokens[k.value]) {
      return fail("limit key '" + key.value + "' counters mismatch");
    }
    const KeyLimitSpec& limit = config_.per_key[key.limit];
    if (!state.key_limits_lowered && limit.max_concurrency > 0 &&
        key.in_flight > limit.max_concurrency) {
      return fail("limit key '" + key.value + "' above its max_concurrency");
    }
  }
  // The fleet: its own invariants; each backend's in-flight count is its entries'; hold lists
  // hold held subqueues only, and the list of held models is exact.
  if (std::string problem = state.fleet.check_invariants(); !problem.empty()) {
    return fail("fleet: " + problem);
  }
  for (BackendId b = 0; b < state.fleet.size(); ++b) {
    if (state.fleet.in_flight(b) != b_flight[b]) return fail("backend in-flight count mismatch");
  }
  std::size_t models_held = 0;
  for (ModelId m = 0; m < state.holds.size(); ++m) {
    const ModelHold& h = state.holds[m];
    for (SubQueueId s : h.held) {
      if (!state.subqueues.contains(s) || !state.subqueues[s].placement_held ||
          state.subqueues[s].model != m) {
        return fail("a model's hold list holds a subqueue that is not held for it");
      }
    }
    if (h.held.empty()) continue;
    ++models_held;
    if (h.listed_pos >= state.held_models.size() || state.held_models[h.listed_pos] != m) {
      return fail("held model missing from held_models");
    }
  }
  if (models_held != state.held_models.size()) return fail("held_models has stale models");
  if (!state.deferred.empty()) return fail("a wait for a faster slot outlived dispatch()");
  // Work conservation: with a free slot, no parked head may fit its per-key limits and have a
  // backend that may take it now, unless the global token budget is what holds the queue back.
  // (A head waiting for a warm slot has no backend that may take it now: choose() says so.)
  if (state.in_flight < config_.max_concurrency) {
    bool token_held = config_.max_inflight_tokens > 0 && state.in_flight > 0;
    for (SubQueueId s : state.subqueues.ids()) {
      const SubQueue& sq = state.subqueues[s];
      if (!sq.live || sq.parked == 0 || token_held) continue;
      if (!state.blocking_key(sq, state.entries[sq.head].cost, config_.per_key).is_nil()) continue;
      const Placement where = state.placement(sq, state.last_now);
      if (where.kind == Placement::Kind::place) {
        return fail("work conservation: backend " + std::to_string(where.backend) +
                    " has a free slot while a request it may take is parked");
      }
    }
  }
  return "";
}

}  // namespace sluice::core
