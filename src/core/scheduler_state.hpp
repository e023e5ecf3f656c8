// The scheduler's records and their storage: what Scheduler::State holds, shared by the files
// that implement it. Internal to src/core (see scheduler.hpp for the semantics):
//   scheduler_state.cpp     finding and creating records, and forgetting them when unused
//   idle_accounts.cpp       the idle list: fairness accounts remembered while idle
//   readiness.cpp           which subqueues may compete now; per-key limits that hold heads back
//   fair_queue.cpp          fair order: selection, admission, charging, removal
//   scheduler.cpp           the public API
//   scheduler_fleet.cpp     the public API across a fleet (reroute, requeue, observe_*)
//   scheduler_invariants.cpp  check_invariants()
//
// Structure (outermost first):
//   Band      strict priority level; holds a heap of *ready* classes ordered by virtual start tag.
//   Class     a workload, or (workload, overriding priority); weight = priority. Holds a heap of
//             ready accounts ordered by their virtual start tag, and its own virtual time.
//   Account   one fairness key (e.g. one user) inside a class; weight 1.
//   SubQueue  the requests of one account that share the same per-key limit keys (usually one
//             per account). FIFO, intrusive doubly-linked list of entries.
//   Entry     one request: parked (in a subqueue and the deadline heap) or in flight.
//   LimitKey  one value of one per-key limit (e.g. model=mistral); counts its in-flight
//             requests and lists the subqueues whose head it currently holds back.
//   Fleet     the backends and their placement state (fleet.hpp); per model, the subqueues
//             whose head placement holds back (no eligible backend has room, or it waits for a
//             warm slot).
//
// Every record kind has its own id type (Id<Tag>, an index into its slab); a record refers to
// another only by id. The short names mean one thing each, in every file:
//   e  EntryId      entry  Entry&
//   s  SubQueueId   sq     SubQueue&
//   a  AccountId    acc    Account&
//   c  ClassId      cls    Class&
//   k  LimitKeyId   key    LimitKey&
//   w  WorkloadId   info   WorkloadInfo&   (spec: its WorkloadSpec)
//   state          Scheduler::State&
//
// Counters: every parked and in-flight count (per subqueue, account, class, workload, limit key
// and in total) equals the number of live entries it covers; a subqueue's refs count its parked
// and in-flight entries, a limit key's refs its subqueues. A record whose refs reach zero is
// released at once (accounts may first wait on the idle list).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "id.hpp"
#include "indexed_heap.hpp"
#include "slab.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::core::detail {

using EntryId = Id<struct EntryTag>;
using SubQueueId = Id<struct SubQueueTag>;
using AccountId = Id<struct AccountTag>;
using ClassId = Id<struct ClassTag>;
using LimitKeyId = Id<struct LimitKeyTag>;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const {
    return std::hash<std::string_view>{}(text);
  }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

enum class EntryState : std::uint8_t { free, parked, in_flight };

struct Entry {
  std::uint32_t generation = 1;
  EntryState state = EntryState::free;
  EntryId prev;  // subqueue list while parked
  EntryId next;  // subqueue list while parked; free list while free
  SubQueueId subqueue;
  std::uint32_t heap_pos = kNotInHeap;  // deadline heap
  std::int64_t cost = 0;
  Time enqueued{};
  Time deadline{};
  std::uint64_t seq = 0;
  BackendId backend = 0;  // while in flight: where it runs
  BackendSet avoid = 0;   // backends that failed it (Scheduler::requeue); steers placement
  std::int64_t backend_in_flight = 0;  // on its backend once admitted there, itself included
  double backend_backlog = 0;    // parked requests its backend could take then (adaptive only)
  double backend_load_mark = 0;  // its backend's Fleet::in_flight_seconds then
  Time admitted{};      // while in flight: when it was admitted (service time, queue order)
  Time expected_end{};  // while in flight: when its backend expects it to end (Fleet::admit)
  std::uint64_t admit_seq = 0;  // while in flight: admission order
  // While parked: the dispatch() (State::dispatches) that first held it for a faster slot; 0
  // when none did. Admitted in a later one, it waited for that slot (faster_slot_waits).
  std::uint64_t deferred_in = 0;
};

struct SubQueue {
  AccountId account;
  EntryId head;
  EntryId tail;
  std::uint32_t parked = 0;
  std::uint32_t refs = 0;             // parked + in flight entries
  LimitKeyId blocked_by;              // limit key holding the head back
  std::uint32_t blocked_pos = 0;      // index in that key's blocked list
  std::uint32_t slot_in_account = 0;  // index in Account::subqueues
  ModelId model = kUnlistedModel;     // the model its requests ask for (part of its identity)
  bool placement_held = false;        // on its model's held list (placement holds the head back)
  std::uint32_t held_pos = 0;         // index in that list
  bool ready = false;
  bool live = false;
  std::vector<LimitKeyId> keys;  // one per per-key limit: key id or nil
};

// The subqueues of one model whose head placement holds back, and (when some of them wait for a
// warm slot) the earliest time one may go cold.
struct ModelHold {
  std::vector<SubQueueId> held;
  Time wake = never();
  std::uint32_t listed_pos = UINT32_MAX;  // index in State::held_models while held is not empty
};

struct Account {
  ClassId class_id;
  std::string fairness_key;
  double tag = 0;
  std::uint64_t order = 0;
  std::uint32_t heap_pos = kNotInHeap;
  std::uint32_t ready = 0;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  bool live = false;
  bool idle_listed = false;  // on the idle list (see idle_accounts.cpp)
  AccountId idle_prev;       // idle list, while listed
  AccountId idle_next;       // idle list, while listed
  std::vector<SubQueueId> subqueues;
};

struct LimitKey {
  std::uint32_t limit = 0;  // index in SchedulerConfig::per_key
  std::string value;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::int64_t parked = 0;
  std::int64_t refs = 0;  // subqueues using this key
  bool live = false;
  std::vector<SubQueueId> blocked;
};

struct WorkloadInfo {
  WorkloadSpec spec;
  bool retired = false;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  ClassId base_class;
};

// The entries, with stable ids and a free list threaded through Entry::next. Freeing an entry
// moves its generation on, so a handle to its previous occupant no longer resolves.
struct EntryTable {
  std::vector<Entry> items;
  EntryId free_head;

  EntryId alloc() {
    if (!free_head.is_nil()) {
      EntryId e = free_head;
      free_head = items[e.value].next;
      items[e.value].next = EntryId::nil();
      return e;
    }
    items.emplace_back();
    return EntryId{static_cast<std::uint32_t>(items.size() - 1)};
  }
  void release(EntryId e) {
    Entry& entry = items[e.value];
    std::uint32_t generation = entry.generation + 1;
    entry = Entry{};
    entry.generation = generation == 0 ? 1 : generation;
    entry.next = free_head;
    free_head = e;
  }
  Entry& operator[](EntryId e) { return items[e.value]; }
  const Entry& operator[](EntryId e) const { return items[e.value]; }
  std::size_t size() const { return items.size(); }
  auto ids() const { return all_ids<EntryId>(items.size()); }
};

}  // namespace sluice::core::detail

namespace sluice::core {

using detail::AccountId;
using detail::ClassId;
using detail::EntryId;
using detail::LimitKeyId;
using detail::SubQueueId;

using detail::Account;
using detail::Entry;
using detail::EntryState;
using detail::EntryTable;
using detail::IndexedHeap;
using detail::kNotInHeap;
using detail::LimitKey;
using detail::ModelHold;
using detail::Slab;
using detail::StringMap;
using detail::SubQueue;
using detail::WorkloadInfo;

struct Scheduler::State {
  struct AccountLess {
    const State* state;
    bool operator()(AccountId lhs, AccountId rhs) const {
      const Account& x = state->accounts[lhs];
      const Account& y = state->accounts[rhs];
      return x.tag < y.tag || (x.tag == y.tag && x.order < y.order);
    }
  };
  struct AccountPos {
    State* state;
    std::uint32_t& operator()(AccountId a) const { return state->accounts[a].heap_pos; }
  };
  struct ClassLess {
    const State* state;
    bool operator()(ClassId lhs, ClassId rhs) const;
  };
  struct ClassPos {
    State* state;
    std::uint32_t& operator()(ClassId c) const;
  };
  struct DeadlineLess {
    const State* state;
    bool operator()(EntryId lhs, EntryId rhs) const {
      const Entry& x = state->entries[lhs];
      const Entry& y = state->entries[rhs];
      return x.deadline < y.deadline || (x.deadline == y.deadline && x.seq < y.seq);
    }
  };
  struct DeadlinePos {
    State* state;
    std::uint32_t& operator()(EntryId e) const { return state->entries[e].heap_pos; }
  };
  using AccountHeap = IndexedHeap<AccountId, AccountLess, AccountPos>;
  using ClassHeap = IndexedHeap<ClassId, ClassLess, ClassPos>;
  using DeadlineHeap = IndexedHeap<EntryId, DeadlineLess, DeadlinePos>;

  struct Class {
    WorkloadId workload = 0;
    double weight = 1;
    double override_priority = 0;  // 0 = the workload's own priority
    int band = 0;
    double tag = 0;
    std::uint64_t order = 0;
    std::uint32_t heap_pos = kNotInHeap;
    double vtime = 0;
    std::int64_t parked = 0;
    std::int64_t in_flight = 0;
    bool live = false;
    detail::HeapBox<AccountHeap> ready_accounts;  // accounts with a ready subqueue
    StringMap<AccountId> by_key;                  // fairness key -> account
  };

  struct Band {
    int level = 0;
    double vtime = 0;
    detail::HeapBox<ClassHeap> ready_classes;  // classes with a ready account
  };

  explicit State(const SchedulerConfig& config)
      : fleet(effective_backends(config)), deadlines(DeadlineLess{this}, DeadlinePos{this}) {
    key_index.resize(config.per_key.size());
  }
  // A complete, independent copy of this state (queue_order.cpp runs admissions on one): every
  // member copied (the implicit copy constructor, so a member added later is copied too), then
  // the heaps pointed at the copy's own records. Copy a State only through clone().
  std::unique_ptr<State> clone() const;
  void rebind();
  // A request that ran from entry.admitted to now, at `actual_cost` (< 0: its estimate), teaches
  // the service model (queue_order.cpp).
  void learn_service(const Entry& entry, std::int64_t actual_cost, Time now);
  // Records a completion for both ETA estimators' windows (after learn_service()).
  void record_completion(const Entry& entry, std::int64_t actual_cost, Duration load, Time now);

  /// The backends a config means: its own, or the single implicit one.
  static std::vector<BackendSpec> effective_backends(const SchedulerConfig& config) {
    if (!config.backends.empty()) return config.backends;
    return {BackendSpec{.name = std::string(kSingleBackend),
                        .max_concurrency = config.max_concurrency,
                        .auto_concurrency = config.auto_concurrency}};
  }

  // --- storage ---------------------------------------------------------------------------
  EntryTable entries;
  Slab<SubQueue, SubQueueId> subqueues;
  Slab<Account, AccountId> accounts;
  Slab<Class, ClassId> classes;
  Slab<LimitKey, LimitKeyId> keys;
  std::vector<Band> bands;  // sorted by level, highest first
  std::vector<WorkloadInfo> workloads;
  std::vector<WorkloadId> current;  // config order; last = default workload
  std::map<std::pair<WorkloadId, double>, ClassId> class_index;
  std::vector<StringMap<LimitKeyId>> key_index;  // per per-key limit: value -> key id
  // The idle list: accounts remembered while idle, longest idle first (intrusive, doubly linked
  // through Account::idle_prev/idle_next), and the reclamation cursor walking it.
  AccountId idle_head;
  AccountId idle_tail;
  AccountId idle_cursor;  // next account to examine; nil = start again at the head
  std::size_t idle_count = 0;
  std::uint64_t idle_visits = 0;  // accounts examined by reclaim_idle() or evicted (a work count)
  // How often some class's virtual time has moved; only a move can make a listed account
  // reclaimable. lap_moves: its value when the cursor last set out from the head. While
  // settled_moves == vtime_moves, a full lap found every listed account still owing.
  std::uint64_t vtime_moves = 0;
  std::uint64_t lap_moves = 0;
  std::optional<std::uint64_t> settled_moves;
  // The fleet, and per model the subqueues placement holds back (models with any: held_models).
  Fleet fleet;
  std::vector<ModelHold> holds;  // by ModelId, grown on demand
  std::vector<ModelId> held_models;
  Time last_now{};  // the time of the latest dispatch (check_invariants judges placement at it)
  DeadlineHeap deadlines;
  // Adaptive limits (scheduler_adaptive.cpp): by BackendId, a controller for each backend with
  // auto_concurrency; the changes not yet taken by take_limit_changes().
  std::vector<std::optional<ConcurrencyController>> adaptive;
  std::vector<BackendLimitChange> limit_changes;
  std::vector<BackendLimitNote> limit_notes;  ///< not yet taken by take_limit_notes()

  // --- totals ----------------------------------------------------------------------------
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::int64_t concurrency_ceiling = 0;  // max(limit, in-flight at the last lowering)
  bool key_limits_lowered = false;
  std::uint64_t seq = 0;

  // Completion times for the drain-rate estimate behind Retry-After.
  static constexpr std::size_t kRateWindow = 32;
  std::array<Time, kRateWindow> completions{};
  std::size_t completion_count = 0;

  std::vector<LimitKeyId> key_scratch;  // enqueue's limit key ids, reused

  // Service times for the queue-order ETA (queue_order.cpp): recent averages of how long an
  // admitted request ran and of its cost, and the admission counter behind Entry::admit_seq.
  double service_ns_avg = 0;
  double service_cost_avg = 0;
  std::uint64_t service_samples = 0;
  std::uint64_t admit_seq = 0;
  // Work throughput for the queue-order ETA (queue_order.cpp): by completion (the ring above),
  // its cost in tokens and the model load it spent; and when the current busy period began (the
  // first admission after the last moment nothing ran).
  std::array<double, kRateWindow> completion_costs{};
  /// When each completion's model load may have run: [admitted, admitted + load_duration].
  /// Ollama's load_duration runs from the request's arrival until its model is ready, so the
  /// requests that arrived during one load all report it: the loads count as the union.
  std::array<std::pair<Time, Time>, kRateWindow> completion_loads{};
  Time busy_since{};
  /// Cost tokens completed per second while busy, over the recent completions of the current busy
  /// period (else the last one's figure); set by record_completion(), 0 while unknown.
  double work_throughput = 0;

  // --- handles -----------------------------------------------------------------------------
  static std::uint64_t handle(EntryId e, const Entry& entry) {
    return (static_cast<std::uint64_t>(entry.generation) << 32) | e.value;
  }
  // The entry a ticket or permit names, or nil when it is stale or in another state.
  EntryId resolve(std::uint64_t value, EntryState expected) const {
    EntryId e{static_cast<std::uint32_t>(value & 0xffffffffu)};
    std::uint32_t generation = static_cast<std::uint32_t>(value >> 32);
    if (e.value >= entries.size()) return EntryId::nil();
    const Entry& entry = entries[e];
    if (entry.generation != generation || entry.state != expected) return EntryId::nil();
    return e;
  }

  Band& band_of(const Class& cls) { return band_for(cls.band); }

  // --- records: finding, creating and forgetting them (scheduler_state.cpp) ---------------
  // The *_for lookups create the record on first use; the rest release records nothing refers
  // to any more (a subqueue without entries, an account without subqueues that owes nothing).
  Band& band_for(int level);
  ClassId class_for(WorkloadId w, double priority);
  AccountId account_for(ClassId c, std::string_view fairness_key);
  LimitKeyId limit_key_for(std::uint32_t limit, std::string_view value);
  SubQueueId subqueue_for(AccountId a, const std::vector<LimitKeyId>& key_ids, ModelId model);
  void drop_subqueue_ref(SubQueueId s);
  void erase_account(AccountId a);
  void maybe_erase_class(ClassId c);

  // --- the idle list (idle_accounts.cpp) --------------------------------------------------
  // Precondition of maybe_retire_account: account a has no subqueue left.
  void maybe_retire_account(AccountId a);
  void reclaim_idle();
  void idle_push(AccountId a);
  void idle_unlink(AccountId a);
  void forget_idle(AccountId a);

  // --- readiness and blocking (readiness.cpp) ---------------------------------------------
  // Every change of a subqueue's parked count or blocker goes through sync_ready (directly or
  // via block/unblock), which keeps the account and class heaps equal to "has a ready subqueue".
  void sync_ready(SubQueueId s);
  void block(SubQueueId s, LimitKeyId k);  // precondition: s is ready and k holds its head back
  void unblock(SubQueueId s);              // a no-op when s is not blocked
  void unblock_all(LimitKeyId k);
  void unblock_keys_of(SubQueueId s);  // a request of s ended: its keys have room again
  void unblock_every_key();            // limits may have grown
  LimitKeyId blocking_key(const SubQueue& sq, std::int64_t cost,
                          const std::vector<KeyLimitSpec>& limits) const;
  // Placement holds: a subqueue whose head no backend may take now waits on its model's list
  // until a backend eligible for the model frees a slot or changes, or until `wake`.
  // `may_defer`: a head that a busy faster backend would serve sooner may be told to wait
  // for it (wait_faster) while work of lower priority is ready to take the free slot.
  Placement placement(const SubQueue& sq, Time now, bool may_defer = false) const;
  bool outranks_ready_work(const SubQueue& sq) const;
  void hold(SubQueueId s, const Placement& why);  // precondition: s is ready
  void release_hold(SubQueueId s);                // a no-op when s is not held
  void release_holds(ModelId m);
  void release_holds_for(BackendId b);  // b freed a slot: the models it may serve
  void release_every_hold();            // the fleet changed
  void release_holds_due(Time now);     // waits for a warm slot that ended
  void release_warm_waits();            // the demand changed: warm waits are judged again

  // --- adaptive limits (scheduler_adaptive.cpp) --------------------------------------------
  // Creates, keeps (new bounds) or drops each backend's controller after the fleet took
  // `config`, and gives each adaptive backend the controller's limit.
  void sync_adaptive(const SchedulerConfig& config);
  // What b could take from the queue right now (Fleet::backlog), for b's controller; 0 when b
  // has none (not computed).
  double adaptive_backlog(BackendId b) const;
  // A request admitted on b at `in_flight` ended with `timings`: teaches b's controller, if any
  // (nothing without a measured time to first byte), and applies a new limit.
  void learn_limit(BackendId b, const Entry& entry, const Timings& timings, Time now);
  std::optional<Time> next_wake() const;

  // --- the queue: subqueue lists and counters (here, inline: every event uses them) -------
  void link_tail(SubQueueId s, EntryId e) {
    SubQueue& sq = subqueues[s];
    entries[e].prev = sq.tail;
    entries[e].next = EntryId::nil();
    if (!sq.tail.is_nil()) {
      entries[sq.tail].next = e;
    } else {
      sq.head = e;
    }
    sq.tail = e;
  }

  // A requeued entry goes back to the front: it was its subqueue's head when admitted, so the
  // list stays in arrival (seq) order.
  void link_head(SubQueueId s, EntryId e) {
    SubQueue& sq = subqueues[s];
    entries[e].prev = EntryId::nil();
    entries[e].next = sq.head;
    if (!sq.head.is_nil()) {
      entries[sq.head].prev = e;
    } else {
      sq.tail = e;
    }
    sq.head = e;
  }

  void unlink(EntryId e) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    if (!entry.prev.is_nil()) {
      entries[entry.prev].next = entry.next;
    } else {
      sq.head = entry.next;
    }
    if (!entry.next.is_nil()) {
      entries[entry.next].prev = entry.prev;
    } else {
      sq.tail = entry.prev;
    }
    entry.prev = entry.next = EntryId::nil();
  }

  void count_parked(EntryId e, int delta) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    Account& acc = accounts[sq.account];
    Class& cls = classes[acc.class_id];
    sq.parked += delta;
    acc.parked += delta;
    cls.parked += delta;
    workloads[cls.workload].parked += delta;
    for (LimitKeyId k : sq.keys) {
      if (!k.is_nil()) keys[k].parked += delta;
    }
    fleet.note_parked(sq.model, delta);
    parked += delta;
    if (!held_models.empty()) release_warm_waits();
  }

  void count_in_flight(EntryId e, int delta) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    Account& acc = accounts[sq.account];
    Class& cls = classes[acc.class_id];
    std::int64_t tokens = delta * entry.cost;
    acc.in_flight += delta;
    cls.in_flight += delta;
    WorkloadInfo& info = workloads[cls.workload];
    info.in_flight += delta;
    info.in_flight_tokens += tokens;
    for (LimitKeyId k : sq.keys) {
      if (k.is_nil()) continue;
      keys[k].in_flight += delta;
      keys[k].in_flight_tokens += tokens;
    }
    in_flight += delta;
    in_flight_tokens += tokens;
    if (!held_models.empty()) release_warm_waits();
  }

  // --- fair order: selection, admission, charging, removal (fair_queue.cpp) ---------------
  void remove_parked(EntryId e);
  // The chosen head's backend, set by best_head()/select() with the entry they return.
  BackendId chosen_backend = 0;
  // The subqueues held for a faster slot by dispatch()'s first pass (released again before it
  // returns; empty between calls). `may_defer`: whether heads may wait for one in this pass.
  std::vector<SubQueueId> deferred;
  std::uint64_t dispatches = 0;  // dispatch() calls so far (Entry::deferred_in)
  void admit_in_order(const SchedulerConfig& config, std::vector<Admission>& out, Time now,
                      bool may_defer);
  EntryId best_head(AccountId a, const std::vector<KeyLimitSpec>& limits, Time now, bool may_defer);
  EntryId select(const std::vector<KeyLimitSpec>& limits, Time now, bool may_defer);
  void admit(EntryId e, BackendId b, Time now);
  void dispatch(const SchedulerConfig& config, std::vector<Admission>& out, Time now);
  void charge(SubQueueId s, double delta);

  WorkloadId valid_workload(WorkloadId w) const {
    if (w >= workloads.size() || workloads[w].retired) return current.back();
    return w;
  }
};

inline bool Scheduler::State::ClassLess::operator()(ClassId lhs, ClassId rhs) const {
  const Class& x = state->classes[lhs];
  const Class& y = state->classes[rhs];
  return x.tag < y.tag || (x.tag == y.tag && x.order < y.order);
}

inline std::uint32_t& Scheduler::State::ClassPos::operator()(ClassId c) const {
  return state->classes[c].heap_pos;
}

}  // namespace sluice::core
