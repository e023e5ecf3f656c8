// The scheduling core's implementation. See scheduler.hpp for the semantics.
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
//
// Fair queuing is start-time fair queuing applied twice (classes within a band, accounts within
// a class): a node that becomes backlogged starts at max(its last finish tag, the virtual time);
// serving a request of cost c advances its tag by c / weight; the virtual time is the start tag
// of the latest node served. Idle nodes therefore bank no credit, and a node that used more
// than its share waits until the others catch up.
//
// Idle accounts. An account whose last request is done (no subqueue left) is forgotten at once
// when its tag is not ahead of its class's virtual time: a newcomer would start there anyway.
// Otherwise it used more than its share, and it is remembered so that going idle cannot wipe
// that debt. The remembered accounts form the idle list, in the order they went idle (longest
// idle first), intrusive and doubly linked, so that every step below is O(1):
//   * a request for a remembered key unlinks its account (it is active again);
//   * every retirement moves a cursor kReclaimSteps (2) accounts further round the list,
//     forgetting those whose class's virtual time has caught up with their tag. The cursor moves
//     two places per retirement and the list grows by at most one, so it laps the list: an
//     account that owes nothing any more is forgotten within 1.5 x (list length) retirements.
//     Only a move of some class's virtual time can make a listed account reclaimable, so once
//     the cursor completes a lap during which none moved, it rests until one does (a flood of
//     new keys never moves it: each starts at the virtual time);
//   * an account joining a list of kMaxIdleAccounts first forgets the head, the longest idle,
//     debt and all: the price of bounded memory, paid by the key least likely to come back.
// So the work spent on idle accounts is at most kReclaimSteps + 1 visits per request, however
// many keys were ever seen (a new X-User-Id with every request does not make later ones dearer).
// Keeping an account that owes nothing a little longer changes no decision: when its key
// returns it starts at max(tag, virtual time) = the virtual time, exactly as a new account. An
// order by tag per class would forget each one the moment the virtual time passes it, at
// O(log n) per retirement, for no difference in fairness.
// Invariants: an account is on the idle list iff it is live and has no subqueue; a listed
// account is in no heap and its tag no longer changes (nothing of it is in flight to charge);
// idle_count is the list's length, <= kMaxIdleAccounts; the cursor is nil or a listed account;
// while the list is settled (settled_moves == vtime_moves) every listed account owes.
//
// Readiness: a subqueue is ready iff it has parked entries and no limit key holds its head back.
// An account is in its class heap iff it has a ready subqueue; a class is in its band heap iff
// its account heap is non-empty. Blocking is discovered lazily: selection looks at the best
// account, and if the head of a subqueue does not fit its keys' limits, that subqueue is parked
// on the key's blocked list until the key frees capacity. So a request held back by its own key
// never holds anyone else back.
#include "sluice/core/scheduler.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <map>
#include <optional>
#include <ranges>

#include "id.hpp"
#include "indexed_heap.hpp"

namespace sluice::core {

using detail::Id;
using detail::IndexedHeap;
using detail::kNotInHeap;

namespace {

// One id type per kind of record; the short names below mean one thing each throughout:
//   e  EntryId      entry  Entry&
//   s  SubQueueId   sq     SubQueue&
//   a  AccountId    acc    Account&
//   c  ClassId      cls    Class&
//   k  LimitKeyId   key    LimitKey&
//   w  WorkloadId   info   WorkloadInfo&   (spec: its WorkloadSpec)
using EntryId = Id<struct EntryTag>;
using SubQueueId = Id<struct SubQueueTag>;
using AccountId = Id<struct AccountTag>;
using ClassId = Id<struct ClassTag>;
using LimitKeyId = Id<struct LimitKeyTag>;

// Idle accounts examined each time an account retires. More than one, so the reclamation cursor
// outruns the idle list's growth and laps it (see "Idle accounts" above).
constexpr int kReclaimSteps = 2;

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
  bool ready = false;
  bool live = false;
  std::vector<LimitKeyId> keys;  // one per per-key limit: key id or nil
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
  bool idle_listed = false;  // on the idle list (see "Idle accounts" above)
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

// Every id of a table with `size` slots, live or not, in index order (callers check `live`).
template <class IdT>
auto all_ids(std::size_t size) {
  return std::views::iota(std::uint32_t{0}, static_cast<std::uint32_t>(size)) |
         std::views::transform([](std::uint32_t index) { return IdT{index}; });
}

// A slab of records with stable ids and a free list.
template <class T, class IdT>
struct Slab {
  std::vector<T> items;
  std::vector<IdT> free;
  std::size_t live = 0;

  IdT alloc() {
    ++live;
    if (!free.empty()) {
      IdT id = free.back();
      free.pop_back();
      items[id.value] = T{};
      items[id.value].live = true;
      return id;
    }
    items.emplace_back();
    items.back().live = true;
    return IdT{static_cast<std::uint32_t>(items.size() - 1)};
  }
  void release(IdT id) {
    items[id.value] = T{};
    free.push_back(id);
    --live;
  }
  T& operator[](IdT id) { return items[id.value]; }
  const T& operator[](IdT id) const { return items[id.value]; }
  bool contains(IdT id) const { return id.value < items.size() && items[id.value].live; }
  auto ids() const { return all_ids<IdT>(items.size()); }
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

}  // namespace

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
    std::unique_ptr<AccountHeap> ready_accounts;  // accounts with a ready subqueue
    StringMap<AccountId> by_key;                  // fairness key -> account
  };

  struct Band {
    int level = 0;
    double vtime = 0;
    std::unique_ptr<ClassHeap> ready_classes;  // classes with a ready account
  };

  explicit State(const SchedulerConfig& config) : deadlines(DeadlineLess{this}, DeadlinePos{this}) {
    key_index.resize(config.per_key.size());
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
  DeadlineHeap deadlines;

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

  // --- lookups -----------------------------------------------------------------------------
  Band& band_for(int level) {
    auto it = std::find_if(bands.begin(), bands.end(),
                           [&](const Band& band) { return band.level <= level; });
    if (it != bands.end() && it->level == level) return *it;
    Band band;
    band.level = level;
    band.ready_classes = std::make_unique<ClassHeap>(ClassLess{this}, ClassPos{this});
    return *bands.insert(it, std::move(band));
  }
  Band& band_of(const Class& cls) { return band_for(cls.band); }

  ClassId class_for(WorkloadId w, double priority) {
    const WorkloadSpec& spec = workloads[w].spec;
    double override_priority = (priority > 0 && priority != spec.priority) ? priority : 0;
    auto [it, inserted] = class_index.try_emplace({w, override_priority}, ClassId::nil());
    if (!inserted) return it->second;
    ClassId c = classes.alloc();
    Class& cls = classes[c];
    cls.workload = w;
    cls.override_priority = override_priority;
    cls.weight = override_priority > 0 ? override_priority : spec.priority;
    cls.band = spec.band;
    cls.ready_accounts = std::make_unique<AccountHeap>(AccountLess{this}, AccountPos{this});
    band_for(cls.band);
    it->second = c;
    if (override_priority == 0) workloads[w].base_class = c;
    return c;
  }

  AccountId account_for(ClassId c, std::string_view fairness_key) {
    Class& cls = classes[c];
    auto it = cls.by_key.find(fairness_key);
    if (it != cls.by_key.end()) {
      if (accounts[it->second].idle_listed) idle_unlink(it->second);  // active again
      return it->second;
    }
    AccountId a = accounts.alloc();
    Account& acc = accounts[a];
    acc.class_id = c;
    acc.fairness_key.assign(fairness_key);
    classes[c].by_key.emplace(std::string(fairness_key), a);
    return a;
  }

  LimitKeyId limit_key_for(std::uint32_t limit, std::string_view value) {
    if (value.empty()) return LimitKeyId::nil();
    auto& index = key_index[limit];
    auto it = index.find(value);
    if (it != index.end()) return it->second;
    LimitKeyId k = keys.alloc();
    keys[k].limit = limit;
    keys[k].value.assign(value);
    index.emplace(std::string(value), k);
    return k;
  }

  SubQueueId subqueue_for(AccountId a, const std::vector<LimitKeyId>& key_ids) {
    for (SubQueueId s : accounts[a].subqueues) {
      if (subqueues[s].keys == key_ids) return s;
    }
    SubQueueId s = subqueues.alloc();
    SubQueue& sq = subqueues[s];
    sq.account = a;
    sq.keys = key_ids;
    for (LimitKeyId k : key_ids) {
      if (!k.is_nil()) ++keys[k].refs;
    }
    Account& acc = accounts[a];
    sq.slot_in_account = static_cast<std::uint32_t>(acc.subqueues.size());
    acc.subqueues.push_back(s);
    return s;
  }

  // --- readiness ---------------------------------------------------------------------------
  void sync_ready(SubQueueId s) {
    SubQueue& sq = subqueues[s];
    bool want = sq.parked > 0 && sq.blocked_by.is_nil();
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

  void block(SubQueueId s, LimitKeyId k) {
    SubQueue& sq = subqueues[s];
    LimitKey& key = keys[k];
    sq.blocked_by = k;
    sq.blocked_pos = static_cast<std::uint32_t>(key.blocked.size());
    key.blocked.push_back(s);
    sync_ready(s);
  }

  void unblock(SubQueueId s) {
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

  void unblock_all(LimitKeyId k) {
    while (!keys[k].blocked.empty())
      unblock(keys[k].blocked.back());
  }

  // The limit key that holds back a request of `cost` in subqueue sq, or nil.
  LimitKeyId blocking_key(const SubQueue& sq, std::int64_t cost,
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

  // --- garbage collection -------------------------------------------------------------------
  void drop_subqueue_ref(SubQueueId s) {
    SubQueue& sq = subqueues[s];
    if (--sq.refs > 0) return;
    assert(sq.parked == 0 && sq.blocked_by.is_nil() && !sq.ready);
    AccountId a = sq.account;
    Account& acc = accounts[a];
    SubQueueId moved = acc.subqueues.back();
    acc.subqueues[sq.slot_in_account] = moved;
    subqueues[moved].slot_in_account = sq.slot_in_account;
    acc.subqueues.pop_back();
    for (LimitKeyId k : sq.keys) {
      if (k.is_nil()) continue;
      LimitKey& key = keys[k];
      if (--key.refs == 0) {
        key_index[key.limit].erase(key.value);
        keys.release(k);
      }
    }
    subqueues.release(s);
    maybe_retire_account(a);
  }

  // Account a has no subqueue left (nothing parked, nothing in flight): forget it if it owes
  // nothing, else remember it on the idle list, making room and reclaiming as described above.
  void maybe_retire_account(AccountId a) {
    Account& acc = accounts[a];
    if (!acc.subqueues.empty()) return;
    assert(!acc.idle_listed);
    if (acc.tag <= classes[acc.class_id].vtime) {
      erase_account(a);
    } else {
      if (idle_count >= kMaxIdleAccounts) {
        ++idle_visits;
        forget_idle(idle_head);  // the longest idle gives up its debt: memory stays bounded
      }
      idle_push(a);
    }
    reclaim_idle();
  }

  // Examines the next kReclaimSteps accounts of the idle list (wrapping round), forgetting
  // those whose class's virtual time has caught up with their tag.
  void reclaim_idle() {
    for (int step = 0; step < kReclaimSteps && idle_count > 0; ++step) {
      if (settled_moves == vtime_moves) return;  // nothing to forget until a virtual time moves
      if (idle_cursor.is_nil()) {
        idle_cursor = idle_head;
        lap_moves = vtime_moves;
      }
      const AccountId a = idle_cursor;
      const Account& acc = accounts[a];
      idle_cursor = acc.idle_next;
      ++idle_visits;
      if (acc.tag <= classes[acc.class_id].vtime) forget_idle(a);
      // A whole lap without a move: every account it passed, and every one that joined since
      // (each joins owing), still owes.
      if (idle_cursor.is_nil() && lap_moves == vtime_moves) settled_moves = vtime_moves;
    }
  }

  void idle_push(AccountId a) {
    Account& acc = accounts[a];
    acc.idle_listed = true;
    acc.idle_prev = idle_tail;
    acc.idle_next = AccountId::nil();
    if (!idle_tail.is_nil()) {
      accounts[idle_tail].idle_next = a;
    } else {
      idle_head = a;
    }
    idle_tail = a;
    ++idle_count;
  }

  void idle_unlink(AccountId a) {
    Account& acc = accounts[a];
    assert(acc.idle_listed);
    if (idle_cursor == a) idle_cursor = acc.idle_next;
    if (!acc.idle_prev.is_nil()) {
      accounts[acc.idle_prev].idle_next = acc.idle_next;
    } else {
      idle_head = acc.idle_next;
    }
    if (!acc.idle_next.is_nil()) {
      accounts[acc.idle_next].idle_prev = acc.idle_prev;
    } else {
      idle_tail = acc.idle_prev;
    }
    acc.idle_prev = acc.idle_next = AccountId::nil();
    acc.idle_listed = false;
    --idle_count;
  }

  void forget_idle(AccountId a) {
    idle_unlink(a);
    erase_account(a);
  }

  void erase_account(AccountId a) {
    assert(!accounts[a].idle_listed && accounts[a].subqueues.empty());
    ClassId c = accounts[a].class_id;
    classes[c].by_key.erase(accounts[a].fairness_key);
    accounts.release(a);
    maybe_erase_class(c);
  }

  // Classes of a priority override, and base classes of retired workloads, go away when empty.
  void maybe_erase_class(ClassId c) {
    Class& cls = classes[c];
    if (!cls.by_key.empty() || cls.parked > 0 || cls.in_flight > 0) return;
    WorkloadInfo& info = workloads[cls.workload];
    if (cls.override_priority == 0 && !info.retired) return;
    assert(cls.heap_pos == kNotInHeap);
    class_index.erase({cls.workload, cls.override_priority});
    if (info.base_class == c) info.base_class = ClassId::nil();
    classes.release(c);
  }

  // --- the queue ---------------------------------------------------------------------------
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
    parked += delta;
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
  }

  // Removes a parked entry (cancel, expiry, bound rejection, drain) and frees it.
  void remove_parked(EntryId e) {
    SubQueueId s = entries[e].subqueue;
    bool was_head = subqueues[s].head == e;
    unlink(e);
    count_parked(e, -1);
    deadlines.erase(e);
    SubQueue& sq = subqueues[s];
    if (!sq.blocked_by.is_nil() && (sq.parked == 0 || was_head)) {
      // The held-back head is gone: the new head (if any) is judged afresh at selection.
      unblock(s);
    } else {
      sync_ready(s);
    }
    entries.release(e);
    drop_subqueue_ref(s);
  }

  // The best admissible head of account a's subqueues (earliest arrival), blocking the
  // subqueues whose head does not fit its keys. Nil when none is admissible.
  EntryId best_head(AccountId a, const std::vector<KeyLimitSpec>& limits) {
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
      if (best.is_nil() || entries[head].seq < entries[best].seq) best = head;
    }
    return best;
  }

  // The next request in fair order that its per-key limits allow, or nil.
  EntryId select(const std::vector<KeyLimitSpec>& limits) {
    for (Band& band : bands) {
      while (!band.ready_classes->empty()) {
        Class& cls = classes[band.ready_classes->top()];
        while (!cls.ready_accounts->empty()) {
          EntryId e = best_head(cls.ready_accounts->top(), limits);
          if (!e.is_nil()) return e;
        }
        // sync_ready removed the class from the band once its last account went unready.
      }
    }
    return EntryId::nil();
  }

  void admit(EntryId e) {
    SubQueueId s = entries[e].subqueue;
    unlink(e);
    count_parked(e, -1);
    deadlines.erase(e);
    entries[e].state = EntryState::in_flight;
    count_in_flight(e, +1);

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

  void dispatch(const SchedulerConfig& config, std::vector<Admission>& out) {
    while (in_flight < config.max_concurrency) {
      EntryId e = select(config.per_key);
      if (e.is_nil()) break;
      if (config.max_inflight_tokens > 0 && in_flight > 0 &&
          in_flight_tokens + entries[e].cost > config.max_inflight_tokens) {
        break;  // the global budget holds everyone back; no bypass, so big requests can't starve
      }
      admit(e);
      std::uint64_t h = handle(e, entries[e]);
      out.push_back(Admission{Ticket{h}, Permit{h}});
    }
    concurrency_ceiling = std::max(config.max_concurrency, in_flight);
  }

  // Charges `delta` tokens (actual - estimated) to the account and class of subqueue s.
  void charge(SubQueueId s, double delta) {
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

  WorkloadId valid_workload(WorkloadId w) const {
    if (w >= workloads.size() || workloads[w].retired) return current.back();
    return w;
  }
};

bool Scheduler::State::ClassLess::operator()(ClassId lhs, ClassId rhs) const {
  const Class& x = state->classes[lhs];
  const Class& y = state->classes[rhs];
  return x.tag < y.tag || (x.tag == y.tag && x.order < y.order);
}

std::uint32_t& Scheduler::State::ClassPos::operator()(ClassId c) const {
  return state->classes[c].heap_pos;
}

// ---------------------------------------------------------------------------------------------

std::string_view reason_name(RejectReason reason) {
  switch (reason) {
    case RejectReason::queue_full:
    case RejectReason::workload_queue_full:
      return "queue_full";
    case RejectReason::key_queue_full:
      return "user_queue_full";
    case RejectReason::shutting_down:
      return "shutting_down";
  }
  return "queue_full";
}

std::string validate(const SchedulerConfig& config) {
  if (config.max_concurrency < 1) return "max_concurrency must be >= 1";
  if (config.max_concurrency > 1'000'000) return "max_concurrency must be <= 1000000";
  if (config.max_inflight_tokens < 0) return "max_inflight_tokens must be >= 0";
  if (config.max_queue < 0) return "max_queue must be >= 0";
  if (config.max_queue > 10'000'000) return "max_queue must be <= 10000000";
  if (config.queue_timeout_cap.count() < 0) return "queue_timeout_cap must not be negative";
  for (std::size_t i = 0; i < config.per_key.size(); ++i) {
    const KeyLimitSpec& limit = config.per_key[i];
    std::string where = "per_key[" + std::to_string(i) + "].";
    if (limit.label.empty()) return where + "label must not be empty";
    if (limit.max_concurrency < 0) return where + "max_concurrency must be >= 0";
    if (limit.max_tokens < 0) return where + "max_tokens must be >= 0";
    if (limit.max_queue < 0) return where + "max_queue must be >= 0";
    for (std::size_t j = 0; j < i; ++j) {
      if (config.per_key[j].label == limit.label)
        return where + "label repeats per_key[" + std::to_string(j) + "].label";
    }
  }
  std::vector<std::string_view> names;
  for (std::size_t i = 0; i <= config.workloads.size(); ++i) {
    const WorkloadSpec& w =
        i < config.workloads.size() ? config.workloads[i] : config.default_workload;
    std::string where = i < config.workloads.size() ? "workloads[" + std::to_string(i) + "]."
                                                    : std::string("default_workload.");
    std::string error = validate(w);
    if (!error.empty()) return where + error;
    if (std::find(names.begin(), names.end(), w.name) != names.end()) {
      return where + "name '" + w.name + "' is used twice";
    }
    names.push_back(w.name);
  }
  return "";
}

Scheduler::Scheduler(SchedulerConfig config)
    : config_(std::move(config)), state_(std::make_unique<State>(config_)) {
  assert(validate(config_).empty());
  State& state = *state_;
  for (std::size_t i = 0; i <= config_.workloads.size(); ++i) {
    const WorkloadSpec& spec =
        i < config_.workloads.size() ? config_.workloads[i] : config_.default_workload;
    state.workloads.push_back(WorkloadInfo{.spec = spec});
    state.current.push_back(static_cast<WorkloadId>(i));
  }
  state.concurrency_ceiling = config_.max_concurrency;
}

Scheduler::~Scheduler() = default;

WorkloadId Scheduler::classify(const Labels& labels) const {
  std::size_t i = core::classify(config_.workloads, labels);
  return state_->current[i];
}

std::optional<WorkloadId> Scheduler::find_workload(std::string_view name) const {
  for (WorkloadId id : state_->current) {
    if (state_->workloads[id].spec.name == name) return id;
  }
  return std::nullopt;
}

const WorkloadSpec& Scheduler::workload(WorkloadId id) const {
  return state_->workloads.at(id).spec;
}

std::size_t Scheduler::workload_count() const {
  return state_->workloads.size();
}

std::int64_t Scheduler::parked() const {
  return state_->parked;
}

std::int64_t Scheduler::in_flight() const {
  return state_->in_flight;
}

EnqueueResult Scheduler::enqueue(const Request& request, Time now,
                                 std::vector<Admission>& admitted) {
  State& state = *state_;
  EnqueueResult result;
  if (draining_) {
    result.reason = RejectReason::shutting_down;
    return result;
  }
  const WorkloadId w = state.valid_workload(request.workload);
  const WorkloadSpec& spec = state.workloads[w].spec;

  // Resolve (and create on first use) class, account, limit keys and subqueue.
  const ClassId c = state.class_for(w, request.priority);
  const AccountId a = state.account_for(c, request.fairness_key);
  std::vector<LimitKeyId>& key_ids = state.key_scratch;
  key_ids.assign(config_.per_key.size(), LimitKeyId::nil());
  for (std::size_t i = 0; i < key_ids.size() && i < request.limit_keys.size(); ++i) {
    key_ids[i] = state.limit_key_for(static_cast<std::uint32_t>(i), request.limit_keys[i]);
  }
  const SubQueueId s = state.subqueue_for(a, key_ids);

  Duration timeout = std::min(spec.queue_timeout, config_.queue_timeout_cap);
  if (request.queue_timeout)
    timeout = std::min(timeout, std::max(*request.queue_timeout, Duration{}));

  const EntryId e = state.entries.alloc();
  {
    Entry& entry = state.entries[e];
    entry.state = EntryState::parked;
    entry.subqueue = s;
    entry.cost = std::max<std::int64_t>(request.cost, 1);
    entry.enqueued = now;
    entry.deadline = (now.time_since_epoch() > Duration::max() - timeout) ? never() : now + timeout;
    entry.seq = ++state.seq;
  }
  ++state.subqueues[s].refs;
  state.link_tail(s, e);
  state.count_parked(e, +1);

  // A node that becomes backlogged starts no earlier than the virtual time (no banked credit).
  State::Class& cls = state.classes[c];
  Account& acc = state.accounts[a];
  if (acc.parked == 1) {
    acc.tag = std::max(acc.tag, cls.vtime);
    acc.order = state.entries[e].seq;
  }
  if (cls.parked == 1) {
    cls.tag = std::max(cls.tag, state.band_of(cls).vtime);
    cls.order = state.entries[e].seq;
  }
  state.sync_ready(s);
  state.deadlines.push(e);

  const std::size_t before = admitted.size();
  state.dispatch(config_, admitted);
  if (state.entries[e].state == EntryState::in_flight) {
    const std::uint64_t h = State::handle(e, state.entries[e]);
    auto own =
        std::find_if(admitted.begin() + static_cast<std::ptrdiff_t>(before), admitted.end(),
                     [&](const Admission& admission) { return admission.permit.value == h; });
    admitted.erase(own);
    result.kind = EnqueueResult::Kind::admitted;
    result.permit = Permit{h};
    return result;
  }

  // Parked: enforce the queue bounds, most specific first.
  std::optional<RejectReason> reject;
  for (std::size_t i = 0; i < key_ids.size(); ++i) {
    if (key_ids[i].is_nil()) continue;
    std::int64_t bound = config_.per_key[i].max_queue;
    if (bound > 0 && state.keys[key_ids[i]].parked > bound) reject = RejectReason::key_queue_full;
  }
  if (!reject && spec.max_queue > 0 && state.workloads[w].parked > spec.max_queue) {
    reject = RejectReason::workload_queue_full;
  }
  if (!reject && state.parked > config_.max_queue) reject = RejectReason::queue_full;
  if (reject) {
    state.remove_parked(e);
    result.reason = *reject;
    return result;
  }
  result.kind = EnqueueResult::Kind::parked;
  result.ticket = Ticket{State::handle(e, state.entries[e])};
  result.deadline = state.entries[e].deadline;
  return result;
}

bool Scheduler::cancel(Ticket ticket, Time /*now*/, std::vector<Admission>& admitted) {
  State& state = *state_;
  EntryId e = state.resolve(ticket.value, EntryState::parked);
  if (e.is_nil()) return false;
  state.remove_parked(e);
  state.dispatch(config_, admitted);
  return true;
}

bool Scheduler::release(Permit permit, std::int64_t actual_cost, Time now,
                        std::vector<Admission>& admitted) {
  State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return false;
  const SubQueueId s = state.entries[e].subqueue;
  state.count_in_flight(e, -1);
  if (actual_cost >= 0) {
    state.charge(
        s, static_cast<double>(std::max<std::int64_t>(actual_cost, 1) - state.entries[e].cost));
  }
  // Capacity returned to the request's keys: let the subqueues they held back be judged again.
  for (LimitKeyId k : state.subqueues[s].keys) {
    if (!k.is_nil()) state.unblock_all(k);
  }
  state.completions[state.completion_count % State::kRateWindow] = now;
  ++state.completion_count;
  state.entries.release(e);
  state.drop_subqueue_ref(s);
  state.dispatch(config_, admitted);
  return true;
}

void Scheduler::expire(Time now, std::vector<Ticket>& expired, std::vector<Admission>& admitted) {
  State& state = *state_;
  bool any = false;
  while (!state.deadlines.empty()) {
    EntryId e = state.deadlines.top();
    if (state.entries[e].deadline > now) break;
    expired.push_back(Ticket{State::handle(e, state.entries[e])});
    state.remove_parked(e);
    any = true;
  }
  if (any) state.dispatch(config_, admitted);
}

std::optional<Time> Scheduler::next_deadline() const {
  if (state_->deadlines.empty()) return std::nullopt;
  return state_->entries[state_->deadlines.top()].deadline;
}

void Scheduler::drain(std::vector<Ticket>& rejected) {
  State& state = *state_;
  draining_ = true;
  while (!state.deadlines.empty()) {
    EntryId e = state.deadlines.top();
    rejected.push_back(Ticket{State::handle(e, state.entries[e])});
    state.remove_parked(e);
  }
}

std::string Scheduler::reconfigure(SchedulerConfig config, Time /*now*/,
                                   std::vector<Admission>& admitted) {
  if (std::string error = validate(config); !error.empty()) return error;
  if (config.per_key.size() != config_.per_key.size()) {
    return "per_key: the set of per-key limit labels cannot change without a restart";
  }
  for (std::size_t i = 0; i < config.per_key.size(); ++i) {
    if (config.per_key[i].label != config_.per_key[i].label) {
      return "per_key[" + std::to_string(i) +
             "].label: per-key limit labels cannot change without a restart";
    }
  }
  State& state = *state_;
  for (std::size_t i = 0; i < config.per_key.size(); ++i) {
    const KeyLimitSpec& next_limit = config.per_key[i];
    const KeyLimitSpec& old_limit = config_.per_key[i];
    auto lowered = [](std::int64_t next, std::int64_t prev) {
      return next > 0 && (prev == 0 || next < prev);
    };
    if (lowered(next_limit.max_concurrency, old_limit.max_concurrency) ||
        lowered(next_limit.max_tokens, old_limit.max_tokens)) {
      state.key_limits_lowered = true;
    }
  }

  // Workloads are matched by name; ids stay stable.
  std::vector<WorkloadId> next_current;
  for (std::size_t i = 0; i <= config.workloads.size(); ++i) {
    const WorkloadSpec& spec =
        i < config.workloads.size() ? config.workloads[i] : config.default_workload;
    std::optional<WorkloadId> id;
    for (WorkloadId w = 0; w < state.workloads.size(); ++w) {
      if (state.workloads[w].spec.name == spec.name) id = w;
    }
    if (!id) {
      state.workloads.push_back(WorkloadInfo{.spec = spec});
      id = static_cast<WorkloadId>(state.workloads.size() - 1);
    } else {
      state.workloads[*id].spec = spec;
      state.workloads[*id].retired = false;
    }
    next_current.push_back(*id);
  }
  for (WorkloadId w = 0; w < state.workloads.size(); ++w) {
    if (std::find(next_current.begin(), next_current.end(), w) == next_current.end()) {
      state.workloads[w].retired = true;
    }
  }
  state.current = std::move(next_current);

  // Classes take their workload's new weight and band.
  for (ClassId c : state.classes.ids()) {
    State::Class& cls = state.classes[c];
    if (!cls.live) continue;
    const WorkloadSpec& spec = state.workloads[cls.workload].spec;
    if (cls.override_priority == 0) cls.weight = spec.priority;
    if (cls.band != spec.band) {
      bool queued = cls.heap_pos != kNotInHeap;
      if (queued) state.band_of(cls).ready_classes->erase(c);
      cls.band = spec.band;
      State::Band& band = state.band_for(cls.band);
      cls.tag = std::max(cls.tag, band.vtime);
      if (queued) band.ready_classes->push(c);
    }
  }
  config_ = std::move(config);
  // Limits may have grown: every held-back subqueue is judged again.
  for (LimitKeyId k : state.keys.ids()) {
    if (state.keys[k].live) state.unblock_all(k);
  }
  state.concurrency_ceiling = std::max(config_.max_concurrency, state.in_flight);
  state.dispatch(config_, admitted);
  // Retired workloads whose classes are already empty disappear now.
  for (ClassId c : state.classes.ids()) {
    if (state.classes[c].live) state.maybe_erase_class(c);
  }
  return "";
}

std::int64_t Scheduler::retry_after_seconds(Time now) const {
  const State& state = *state_;
  const std::int64_t cap = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(config_.queue_timeout_cap).count());
  std::size_t n = std::min(state.completion_count, State::kRateWindow);
  if (n < 2) return 1;
  Time newest = state.completions[(state.completion_count - 1) % State::kRateWindow];
  Time oldest = state.completions[(state.completion_count - n) % State::kRateWindow];
  // A window that ended long ago says little about now: stretch it to the present.
  Duration span = std::max(newest, now) - oldest;
  double seconds = std::chrono::duration<double>(span).count();
  if (seconds <= 0) return 1;
  double rate = static_cast<double>(n - 1) / seconds;  // completions per second
  double wait = static_cast<double>(state.parked + 1) / rate;
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(wait)), 1, cap);
}

std::optional<WorkloadId> Scheduler::permit_workload(Permit permit) const {
  const State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return std::nullopt;
  const SubQueue& sq = state.subqueues[state.entries[e].subqueue];
  return state.classes[state.accounts[sq.account].class_id].workload;
}

std::optional<std::int64_t> Scheduler::permit_cost(Permit permit) const {
  const State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return std::nullopt;
  return state.entries[e].cost;
}

Snapshot Scheduler::snapshot(Time now) const {
  const State& state = *state_;
  Snapshot snap;
  snap.max_concurrency = config_.max_concurrency;
  snap.parked = state.parked;
  snap.in_flight = state.in_flight;
  snap.in_flight_tokens = state.in_flight_tokens;
  std::vector<std::optional<Time>> oldest(state.workloads.size());
  for (const SubQueue& sq : state.subqueues.items) {
    if (!sq.live || sq.head.is_nil()) continue;
    WorkloadId w = state.classes[state.accounts[sq.account].class_id].workload;
    Time t = state.entries[sq.head].enqueued;
    if (!oldest[w] || t < *oldest[w]) oldest[w] = t;
  }
  for (WorkloadId w = 0; w < state.workloads.size(); ++w) {
    const WorkloadInfo& info = state.workloads[w];
    if (info.retired && info.parked == 0 && info.in_flight == 0) continue;
    WorkloadStats stats{.name = info.spec.name,
                        .id = w,
                        .priority = info.spec.priority,
                        .band = info.spec.band,
                        .parked = info.parked,
                        .in_flight = info.in_flight,
                        .in_flight_tokens = info.in_flight_tokens,
                        .retired = info.retired};
    if (oldest[w]) stats.oldest_wait = std::max(Duration{}, now - *oldest[w]);
    snap.workloads.push_back(std::move(stats));
  }
  // Fairness keys, merged across the classes of a workload.
  std::map<std::pair<std::string, std::string>, KeyStats> merged;
  for (const Account& acc : state.accounts.items) {
    if (!acc.live || (acc.parked == 0 && acc.in_flight == 0)) continue;
    const std::string& label =
        state.workloads[state.classes[acc.class_id].workload].spec.fairness_label;
    KeyStats& stats = merged[{label, acc.fairness_key}];
    stats.label = label;
    stats.value = acc.fairness_key;
    stats.parked += acc.parked;
    stats.in_flight += acc.in_flight;
  }
  for (auto& [_, stats] : merged)
    snap.keys.push_back(std::move(stats));
  for (const LimitKey& key : state.keys.items) {
    if (!key.live || (key.parked == 0 && key.in_flight == 0)) continue;
    const std::string& label = config_.per_key[key.limit].label;
    bool same_as_fairness = false;
    for (const KeyStats& stats : snap.keys) {
      if (stats.label == label && stats.value == key.value) same_as_fairness = true;
    }
    if (!same_as_fairness) {
      snap.keys.push_back(KeyStats{
          .label = label, .value = key.value, .parked = key.parked, .in_flight = key.in_flight});
    }
  }
  return snap;
}

IdleAccountStats Scheduler::idle_account_stats() const {
  return {.remembered = state_->idle_count, .visits = state_->idle_visits};
}

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
    bool want_ready = sq.parked > 0 && sq.blocked_by.is_nil();
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
  // Work conservation: with a free slot, no parked head may fit its per-key limits, unless the
  // global token budget is what holds the queue back.
  if (state.in_flight < config_.max_concurrency) {
    bool token_held = config_.max_inflight_tokens > 0 && state.in_flight > 0;
    for (SubQueueId s : state.subqueues.ids()) {
      const SubQueue& sq = state.subqueues[s];
      if (!sq.live || sq.parked == 0) continue;
      if (state.blocking_key(sq, state.entries[sq.head].cost, config_.per_key).is_nil() &&
          !token_held) {
        return fail("work conservation: a slot is free while an admissible request is parked");
      }
    }
  }
  return "";
}

}  // namespace sluice::core
