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
// idle_count is the list's length, <= kMaxIdleAccounts; the cursor is kNil or a listed account;
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

#include "indexed_heap.hpp"
#include "sluice/core/limits.hpp"

namespace sluice::core {

using detail::IndexedHeap;
using detail::kNotInHeap;

namespace {

constexpr std::uint32_t kNil = UINT32_MAX;

// Idle accounts examined each time an account retires. More than one, so the reclamation cursor
// outruns the idle list's growth and laps it (see "Idle accounts" above).
constexpr int kReclaimSteps = 2;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

enum class EntryState : std::uint8_t { free, parked, in_flight };

struct Entry {
  std::uint32_t generation = 1;
  EntryState state = EntryState::free;
  std::uint32_t prev = kNil;  // subqueue list while parked
  std::uint32_t next = kNil;  // subqueue list while parked; free list while free
  std::uint32_t subqueue = kNil;
  std::uint32_t heap_pos = kNotInHeap;  // deadline heap
  std::int64_t cost = 0;
  Time enqueued{};
  Time deadline{};
  std::uint64_t seq = 0;
};

struct SubQueue {
  std::uint32_t account = kNil;
  std::uint32_t head = kNil;
  std::uint32_t tail = kNil;
  std::uint32_t parked = 0;
  std::uint32_t refs = 0;             // parked + in flight entries
  std::uint32_t blocked_by = kNil;    // limit key holding the head back
  std::uint32_t blocked_pos = 0;      // index in that key's blocked list
  std::uint32_t slot_in_account = 0;  // index in Account::subqueues
  bool ready = false;
  bool live = false;
  std::vector<std::uint32_t> keys;  // one per per-key limit: key id or kNil
};

struct Account {
  std::uint32_t cls = kNil;
  std::string key;
  double tag = 0;
  std::uint64_t order = 0;
  std::uint32_t heap_pos = kNotInHeap;
  std::uint32_t ready = 0;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  bool live = false;
  bool idle_listed = false;        // on the idle list (see "Idle accounts" above)
  std::uint32_t idle_prev = kNil;  // idle list, while listed
  std::uint32_t idle_next = kNil;  // idle list, while listed
  std::vector<std::uint32_t> subqueues;
};

struct LimitKey {
  std::uint32_t limit = 0;
  std::string value;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::int64_t parked = 0;
  std::int64_t refs = 0;  // subqueues using this key
  bool live = false;
  std::vector<std::uint32_t> blocked;
};

struct WorkloadInfo {
  WorkloadSpec spec;
  bool retired = false;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::uint32_t base_class = kNil;
};

// A slab of records with stable indices and a free list.
template <class T>
struct Slab {
  std::vector<T> items;
  std::vector<std::uint32_t> free;
  std::size_t live = 0;

  std::uint32_t alloc() {
    ++live;
    if (!free.empty()) {
      std::uint32_t i = free.back();
      free.pop_back();
      items[i] = T{};
      items[i].live = true;
      return i;
    }
    items.emplace_back();
    items.back().live = true;
    return static_cast<std::uint32_t>(items.size() - 1);
  }
  void release(std::uint32_t i) {
    items[i] = T{};
    free.push_back(i);
    --live;
  }
  T& operator[](std::uint32_t i) { return items[i]; }
  const T& operator[](std::uint32_t i) const { return items[i]; }
};

}  // namespace

struct Scheduler::State {
  struct AccountLess {
    const State* s;
    bool operator()(std::uint32_t a, std::uint32_t b) const {
      const Account& x = s->accounts[a];
      const Account& y = s->accounts[b];
      return x.tag < y.tag || (x.tag == y.tag && x.order < y.order);
    }
  };
  struct AccountPos {
    State* s;
    std::uint32_t& operator()(std::uint32_t a) const { return s->accounts[a].heap_pos; }
  };
  struct ClassLess {
    const State* s;
    bool operator()(std::uint32_t a, std::uint32_t b) const;
  };
  struct ClassPos {
    State* s;
    std::uint32_t& operator()(std::uint32_t c) const;
  };
  struct DeadlineLess {
    const State* s;
    bool operator()(std::uint32_t a, std::uint32_t b) const {
      const Entry& x = s->entries[a];
      const Entry& y = s->entries[b];
      return x.deadline < y.deadline || (x.deadline == y.deadline && x.seq < y.seq);
    }
  };
  struct DeadlinePos {
    State* s;
    std::uint32_t& operator()(std::uint32_t e) const { return s->entries[e].heap_pos; }
  };
  using AccountHeap = IndexedHeap<AccountLess, AccountPos>;
  using ClassHeap = IndexedHeap<ClassLess, ClassPos>;
  using DeadlineHeap = IndexedHeap<DeadlineLess, DeadlinePos>;

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
    std::unique_ptr<AccountHeap> accounts;
    StringMap<std::uint32_t> by_key;
  };

  struct Band {
    int level = 0;
    double vtime = 0;
    std::unique_ptr<ClassHeap> classes;
  };

  explicit State(const SchedulerConfig& config) : deadlines(DeadlineLess{this}, DeadlinePos{this}) {
    key_index.resize(config.per_key.size());
  }

  // --- storage ---------------------------------------------------------------------------
  std::vector<Entry> entries;
  std::uint32_t free_entry = kNil;
  Slab<SubQueue> subqueues;
  Slab<Account> accounts;
  Slab<Class> classes;
  Slab<LimitKey> keys;
  std::vector<Band> bands;  // sorted by level, highest first
  std::vector<WorkloadInfo> workloads;
  std::vector<WorkloadId> current;  // config order; last = default workload
  std::map<std::pair<WorkloadId, double>, std::uint32_t> class_index;
  std::vector<StringMap<std::uint32_t>> key_index;  // per per-key limit: value -> key id
  // The idle list: accounts remembered while idle, longest idle first (intrusive, doubly linked
  // through Account::idle_prev/idle_next), and the reclamation cursor walking it.
  std::uint32_t idle_head = kNil;
  std::uint32_t idle_tail = kNil;
  std::uint32_t idle_cursor = kNil;  // next account to examine; kNil = start again at the head
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

  std::vector<std::uint32_t> key_scratch;  // enqueue's limit key ids, reused

  // --- handles -----------------------------------------------------------------------------
  static std::uint64_t handle(std::uint32_t index, const Entry& e) {
    return (static_cast<std::uint64_t>(e.generation) << 32) | index;
  }
  std::uint32_t resolve(std::uint64_t value, EntryState expected) const {
    std::uint32_t index = static_cast<std::uint32_t>(value & 0xffffffffu);
    std::uint32_t generation = static_cast<std::uint32_t>(value >> 32);
    if (index >= entries.size()) return kNil;
    const Entry& e = entries[index];
    if (e.generation != generation || e.state != expected) return kNil;
    return index;
  }

  std::uint32_t alloc_entry() {
    if (free_entry != kNil) {
      std::uint32_t i = free_entry;
      free_entry = entries[i].next;
      entries[i].next = kNil;
      return i;
    }
    entries.emplace_back();
    return static_cast<std::uint32_t>(entries.size() - 1);
  }
  void free_entry_slot(std::uint32_t i) {
    Entry& e = entries[i];
    std::uint32_t generation = e.generation + 1;
    e = Entry{};
    e.generation = generation == 0 ? 1 : generation;
    e.next = free_entry;
    free_entry = i;
  }

  // --- lookups -----------------------------------------------------------------------------
  Band& band_for(int level) {
    auto it =
        std::find_if(bands.begin(), bands.end(), [&](const Band& b) { return b.level <= level; });
    if (it != bands.end() && it->level == level) return *it;
    Band band;
    band.level = level;
    band.classes = std::make_unique<ClassHeap>(ClassLess{this}, ClassPos{this});
    return *bands.insert(it, std::move(band));
  }
  Band& band_of(const Class& c) { return band_for(c.band); }

  std::uint32_t class_for(WorkloadId w, double priority) {
    const WorkloadSpec& spec = workloads[w].spec;
    double override_priority = (priority > 0 && priority != spec.priority) ? priority : 0;
    auto [it, inserted] = class_index.try_emplace({w, override_priority}, kNil);
    if (!inserted) return it->second;
    std::uint32_t c = classes.alloc();
    Class& cls = classes[c];
    cls.workload = w;
    cls.override_priority = override_priority;
    cls.weight = override_priority > 0 ? override_priority : spec.priority;
    cls.band = spec.band;
    cls.accounts = std::make_unique<AccountHeap>(AccountLess{this}, AccountPos{this});
    band_for(cls.band);
    it->second = c;
    if (override_priority == 0) workloads[w].base_class = c;
    return c;
  }

  std::uint32_t account_for(std::uint32_t c, std::string_view key) {
    Class& cls = classes[c];
    auto it = cls.by_key.find(key);
    if (it != cls.by_key.end()) {
      if (accounts[it->second].idle_listed) idle_unlink(it->second);  // active again
      return it->second;
    }
    std::uint32_t a = accounts.alloc();
    Account& acc = accounts[a];
    acc.cls = c;
    acc.key.assign(key);
    classes[c].by_key.emplace(std::string(key), a);
    return a;
  }

  std::uint32_t limit_key_for(std::uint32_t limit, std::string_view value) {
    if (value.empty()) return kNil;
    auto& index = key_index[limit];
    auto it = index.find(value);
    if (it != index.end()) return it->second;
    std::uint32_t k = keys.alloc();
    keys[k].limit = limit;
    keys[k].value.assign(value);
    index.emplace(std::string(value), k);
    return k;
  }

  std::uint32_t subqueue_for(std::uint32_t a, const std::vector<std::uint32_t>& key_ids) {
    for (std::uint32_t s : accounts[a].subqueues) {
      if (subqueues[s].keys == key_ids) return s;
    }
    std::uint32_t s = subqueues.alloc();
    SubQueue& sq = subqueues[s];
    sq.account = a;
    sq.keys = key_ids;
    for (std::uint32_t k : key_ids) {
      if (k != kNil) ++keys[k].refs;
    }
    Account& acc = accounts[a];
    sq.slot_in_account = static_cast<std::uint32_t>(acc.subqueues.size());
    acc.subqueues.push_back(s);
    return s;
  }

  // --- readiness ---------------------------------------------------------------------------
  void sync_ready(std::uint32_t s) {
    SubQueue& sq = subqueues[s];
    bool want = sq.parked > 0 && sq.blocked_by == kNil;
    if (want == sq.ready) return;
    sq.ready = want;
    Account& acc = accounts[sq.account];
    Class& cls = classes[acc.cls];
    if (want) {
      if (acc.ready++ == 0) {
        cls.accounts->push(sq.account);
        if (cls.heap_pos == kNotInHeap) band_of(cls).classes->push(acc.cls);
      }
    } else {
      if (--acc.ready == 0) {
        cls.accounts->erase(sq.account);
        if (cls.accounts->empty()) band_of(cls).classes->erase(acc.cls);
      }
    }
  }

  void block(std::uint32_t s, std::uint32_t k) {
    SubQueue& sq = subqueues[s];
    LimitKey& key = keys[k];
    sq.blocked_by = k;
    sq.blocked_pos = static_cast<std::uint32_t>(key.blocked.size());
    key.blocked.push_back(s);
    sync_ready(s);
  }

  void unblock(std::uint32_t s) {
    SubQueue& sq = subqueues[s];
    if (sq.blocked_by == kNil) return;
    LimitKey& key = keys[sq.blocked_by];
    std::uint32_t last = key.blocked.back();
    key.blocked[sq.blocked_pos] = last;
    subqueues[last].blocked_pos = sq.blocked_pos;
    key.blocked.pop_back();
    sq.blocked_by = kNil;
    sync_ready(s);
  }

  void unblock_all(std::uint32_t k) {
    while (!keys[k].blocked.empty())
      unblock(keys[k].blocked.back());
  }

  // The limit key that holds back a request of `cost` in subqueue s, or kNil.
  std::uint32_t blocking_key(const SubQueue& sq, std::int64_t cost,
                             const std::vector<KeyLimitSpec>& limits) const {
    for (std::uint32_t k : sq.keys) {
      if (k == kNil) continue;
      const LimitKey& key = keys[k];
      const KeyLimitSpec& limit = limits[key.limit];
      if (limit.max_concurrency > 0 && key.in_flight >= limit.max_concurrency) return k;
      if (limit.max_tokens > 0 && key.in_flight > 0 &&
          key.in_flight_tokens + cost > limit.max_tokens) {
        return k;
      }
    }
    return kNil;
  }

  // --- garbage collection -------------------------------------------------------------------
  void drop_subqueue_ref(std::uint32_t s) {
    SubQueue& sq = subqueues[s];
    if (--sq.refs > 0) return;
    assert(sq.parked == 0 && sq.blocked_by == kNil && !sq.ready);
    std::uint32_t a = sq.account;
    Account& acc = accounts[a];
    std::uint32_t moved = acc.subqueues.back();
    acc.subqueues[sq.slot_in_account] = moved;
    subqueues[moved].slot_in_account = sq.slot_in_account;
    acc.subqueues.pop_back();
    for (std::uint32_t k : sq.keys) {
      if (k == kNil) continue;
      if (--keys[k].refs == 0) {
        key_index[keys[k].limit].erase(keys[k].value);
        keys.release(k);
      }
    }
    subqueues.release(s);
    maybe_retire_account(a);
  }

  // Account a has no subqueue left (nothing parked, nothing in flight): forget it if it owes
  // nothing, else remember it on the idle list, making room and reclaiming as described above.
  void maybe_retire_account(std::uint32_t a) {
    Account& acc = accounts[a];
    if (!acc.subqueues.empty()) return;
    assert(!acc.idle_listed);
    if (acc.tag <= classes[acc.cls].vtime) {
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
      if (idle_cursor == kNil) {
        idle_cursor = idle_head;
        lap_moves = vtime_moves;
      }
      const std::uint32_t a = idle_cursor;
      idle_cursor = accounts[a].idle_next;
      ++idle_visits;
      if (accounts[a].tag <= classes[accounts[a].cls].vtime) forget_idle(a);
      // A whole lap without a move: every account it passed, and every one that joined since
      // (each joins owing), still owes.
      if (idle_cursor == kNil && lap_moves == vtime_moves) settled_moves = vtime_moves;
    }
  }

  void idle_push(std::uint32_t a) {
    Account& acc = accounts[a];
    acc.idle_listed = true;
    acc.idle_prev = idle_tail;
    acc.idle_next = kNil;
    if (idle_tail != kNil) {
      accounts[idle_tail].idle_next = a;
    } else {
      idle_head = a;
    }
    idle_tail = a;
    ++idle_count;
  }

  void idle_unlink(std::uint32_t a) {
    Account& acc = accounts[a];
    assert(acc.idle_listed);
    if (idle_cursor == a) idle_cursor = acc.idle_next;
    if (acc.idle_prev != kNil) {
      accounts[acc.idle_prev].idle_next = acc.idle_next;
    } else {
      idle_head = acc.idle_next;
    }
    if (acc.idle_next != kNil) {
      accounts[acc.idle_next].idle_prev = acc.idle_prev;
    } else {
      idle_tail = acc.idle_prev;
    }
    acc.idle_prev = acc.idle_next = kNil;
    acc.idle_listed = false;
    --idle_count;
  }

  void forget_idle(std::uint32_t a) {
    idle_unlink(a);
    erase_account(a);
  }

  void erase_account(std::uint32_t a) {
    assert(!accounts[a].idle_listed && accounts[a].subqueues.empty());
    std::uint32_t c = accounts[a].cls;
    classes[c].by_key.erase(accounts[a].key);
    accounts.release(a);
    maybe_erase_class(c);
  }

  // Classes of a priority override, and base classes of retired workloads, go away when empty.
  void maybe_erase_class(std::uint32_t c) {
    Class& cls = classes[c];
    if (!cls.by_key.empty() || cls.parked > 0 || cls.in_flight > 0) return;
    WorkloadInfo& w = workloads[cls.workload];
    if (cls.override_priority == 0 && !w.retired) return;
    assert(cls.heap_pos == kNotInHeap);
    class_index.erase({cls.workload, cls.override_priority});
    if (w.base_class == c) w.base_class = kNil;
    classes.release(c);
  }

  // --- the queue ---------------------------------------------------------------------------
  void link_tail(std::uint32_t s, std::uint32_t e) {
    SubQueue& sq = subqueues[s];
    entries[e].prev = sq.tail;
    entries[e].next = kNil;
    if (sq.tail != kNil) {
      entries[sq.tail].next = e;
    } else {
      sq.head = e;
    }
    sq.tail = e;
  }

  void unlink(std::uint32_t e) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    if (entry.prev != kNil) {
      entries[entry.prev].next = entry.next;
    } else {
      sq.head = entry.next;
    }
    if (entry.next != kNil) {
      entries[entry.next].prev = entry.prev;
    } else {
      sq.tail = entry.prev;
    }
    entry.prev = entry.next = kNil;
  }

  void count_parked(std::uint32_t e, int delta) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    Account& acc = accounts[sq.account];
    Class& cls = classes[acc.cls];
    sq.parked += delta;
    acc.parked += delta;
    cls.parked += delta;
    workloads[cls.workload].parked += delta;
    for (std::uint32_t k : sq.keys) {
      if (k != kNil) keys[k].parked += delta;
    }
    parked += delta;
  }

  void count_in_flight(std::uint32_t e, int delta) {
    Entry& entry = entries[e];
    SubQueue& sq = subqueues[entry.subqueue];
    Account& acc = accounts[sq.account];
    Class& cls = classes[acc.cls];
    std::int64_t tokens = delta * entry.cost;
    acc.in_flight += delta;
    cls.in_flight += delta;
    WorkloadInfo& w = workloads[cls.workload];
    w.in_flight += delta;
    w.in_flight_tokens += tokens;
    for (std::uint32_t k : sq.keys) {
      if (k == kNil) continue;
      keys[k].in_flight += delta;
      keys[k].in_flight_tokens += tokens;
    }
    in_flight += delta;
    in_flight_tokens += tokens;
  }

  // Removes a parked entry (cancel, expiry, bound rejection, drain) and frees it.
  void remove_parked(std::uint32_t e) {
    std::uint32_t s = entries[e].subqueue;
    bool was_head = subqueues[s].head == e;
    unlink(e);
    count_parked(e, -1);
    deadlines.erase(e);
    SubQueue& sq = subqueues[s];
    if (sq.blocked_by != kNil && (sq.parked == 0 || was_head)) {
      // The held-back head is gone: the new head (if any) is judged afresh at selection.
      unblock(s);
    } else {
      sync_ready(s);
    }
    free_entry_slot(e);
    drop_subqueue_ref(s);
  }

  // The best admissible head of account a's subqueues (earliest arrival), blocking the
  // subqueues whose head does not fit its keys. kNil when none is admissible.
  std::uint32_t best_head(std::uint32_t a, const std::vector<KeyLimitSpec>& limits) {
    std::uint32_t best = kNil;
    // Blocking never changes acc.subqueues, so iterating by index is safe.
    const std::size_t n = accounts[a].subqueues.size();
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t s = accounts[a].subqueues[i];
      SubQueue& sq = subqueues[s];
      if (!sq.ready) continue;
      std::uint32_t head = sq.head;
      std::uint32_t blocker = blocking_key(sq, entries[head].cost, limits);
      if (blocker != kNil) {
        block(s, blocker);
        continue;
      }
      if (best == kNil || entries[head].seq < entries[best].seq) best = head;
    }
    return best;
  }

  // The next request in fair order that its per-key limits allow, or kNil.
  std::uint32_t select(const std::vector<KeyLimitSpec>& limits) {
    for (Band& band : bands) {
      while (!band.classes->empty()) {
        Class& cls = classes[band.classes->top()];
        while (!cls.accounts->empty()) {
          std::uint32_t e = best_head(cls.accounts->top(), limits);
          if (e != kNil) return e;
        }
        // sync_ready removed the class from the band once its last account went unready.
      }
    }
    return kNil;
  }

  void admit(std::uint32_t e) {
    std::uint32_t s = entries[e].subqueue;
    unlink(e);
    count_parked(e, -1);
    deadlines.erase(e);
    entries[e].state = EntryState::in_flight;
    count_in_flight(e, +1);

    SubQueue& sq = subqueues[s];
    std::uint32_t a = sq.account;
    Account& acc = accounts[a];
    std::uint32_t c = acc.cls;
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
    cls.accounts->update(a);
    band.classes->update(c);
  }

  void dispatch(const SchedulerConfig& config, std::vector<Admission>& out) {
    while (in_flight < config.max_concurrency) {
      std::uint32_t e = select(config.per_key);
      if (e == kNil) break;
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
  void charge(std::uint32_t s, double delta) {
    if (delta == 0) return;
    std::uint32_t a = subqueues[s].account;
    Account& acc = accounts[a];
    std::uint32_t c = acc.cls;
    Class& cls = classes[c];
    acc.tag += delta;
    cls.tag += delta / cls.weight;
    cls.accounts->update(a);
    band_of(cls).classes->update(c);
  }

  WorkloadId valid_workload(WorkloadId w) const {
    if (w >= workloads.size() || workloads[w].retired) return current.back();
    return w;
  }
};

bool Scheduler::State::ClassLess::operator()(std::uint32_t a, std::uint32_t b) const {
  const Class& x = s->classes[a];
  const Class& y = s->classes[b];
  return x.tag < y.tag || (x.tag == y.tag && x.order < y.order);
}

std::uint32_t& Scheduler::State::ClassPos::operator()(std::uint32_t c) const {
  return s->classes[c].heap_pos;
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
  // The bounds are sluice/core/limits.hpp's, the same the config loader reads against.
  auto above = [](std::string_view field, std::int64_t bound) {
    return std::string(field) + " must be <= " + std::to_string(bound);
  };
  if (config.max_concurrency < 1) return "max_concurrency must be >= 1";
  if (config.max_concurrency > kMaxConcurrency) return above("max_concurrency", kMaxConcurrency);
  if (config.max_inflight_tokens < 0) return "max_inflight_tokens must be >= 0";
  if (config.max_inflight_tokens > kMaxTokenBudget) {
    return above("max_inflight_tokens", kMaxTokenBudget);
  }
  if (config.max_queue < 0) return "max_queue must be >= 0";
  if (config.max_queue > kMaxQueue) return above("max_queue", kMaxQueue);
  if (config.queue_timeout_cap.count() < 0) return "queue_timeout_cap must not be negative";
  for (std::size_t i = 0; i < config.per_key.size(); ++i) {
    const KeyLimitSpec& limit = config.per_key[i];
    std::string where = "per_key[" + std::to_string(i) + "].";
    if (limit.label.empty()) return where + "label must not be empty";
    if (limit.max_concurrency < 0) return where + "max_concurrency must be >= 0";
    if (limit.max_concurrency > kMaxConcurrency) {
      return where + above("max_concurrency", kMaxConcurrency);
    }
    if (limit.max_tokens < 0) return where + "max_tokens must be >= 0";
    if (limit.max_tokens > kMaxTokenBudget) return where + above("max_tokens", kMaxTokenBudget);
    if (limit.max_queue < 0) return where + "max_queue must be >= 0";
    if (limit.max_queue > kMaxQueue) return where + above("max_queue", kMaxQueue);
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
  State& s = *state_;
  for (std::size_t i = 0; i <= config_.workloads.size(); ++i) {
    const WorkloadSpec& spec =
        i < config_.workloads.size() ? config_.workloads[i] : config_.default_workload;
    s.workloads.push_back(WorkloadInfo{.spec = spec});
    s.current.push_back(static_cast<WorkloadId>(i));
  }
  s.concurrency_ceiling = config_.max_concurrency;
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
  State& s = *state_;
  EnqueueResult result;
  if (draining_) {
    result.reason = RejectReason::shutting_down;
    return result;
  }
  const WorkloadId w = s.valid_workload(request.workload);
  const WorkloadSpec& spec = s.workloads[w].spec;

  // Resolve (and create on first use) class, account, limit keys and subqueue.
  const std::uint32_t c = s.class_for(w, request.priority);
  const std::uint32_t a = s.account_for(c, request.fairness_key);
  std::vector<std::uint32_t>& key_ids = s.key_scratch;
  key_ids.assign(config_.per_key.size(), kNil);
  for (std::size_t i = 0; i < key_ids.size() && i < request.limit_keys.size(); ++i) {
    key_ids[i] = s.limit_key_for(static_cast<std::uint32_t>(i), request.limit_keys[i]);
  }
  const std::uint32_t sq = s.subqueue_for(a, key_ids);

  Duration timeout = std::min(spec.queue_timeout, config_.queue_timeout_cap);
  if (request.queue_timeout)
    timeout = std::min(timeout, std::max(*request.queue_timeout, Duration{}));

  const std::uint32_t e = s.alloc_entry();
  {
    Entry& entry = s.entries[e];
    entry.state = EntryState::parked;
    entry.subqueue = sq;
    entry.cost = std::max<std::int64_t>(request.cost, 1);
    entry.enqueued = now;
    entry.deadline = (now.time_since_epoch() > Duration::max() - timeout) ? never() : now + timeout;
    entry.seq = ++s.seq;
  }
  ++s.subqueues[sq].refs;
  s.link_tail(sq, e);
  s.count_parked(e, +1);

  // A node that becomes backlogged starts no earlier than the virtual time (no banked credit).
  State::Class& cls = s.classes[c];
  Account& acc = s.accounts[a];
  if (acc.parked == 1) {
    acc.tag = std::max(acc.tag, cls.vtime);
    acc.order = s.entries[e].seq;
  }
  if (cls.parked == 1) {
    cls.tag = std::max(cls.tag, s.band_of(cls).vtime);
    cls.order = s.entries[e].seq;
  }
  s.sync_ready(sq);
  s.deadlines.push(e);

  const std::size_t before = admitted.size();
  s.dispatch(config_, admitted);
  if (s.entries[e].state == EntryState::in_flight) {
    const std::uint64_t h = State::handle(e, s.entries[e]);
    auto own = std::find_if(admitted.begin() + static_cast<std::ptrdiff_t>(before), admitted.end(),
                            [&](const Admission& a) { return a.permit.value == h; });
    admitted.erase(own);
    result.kind = EnqueueResult::Kind::admitted;
    result.permit = Permit{h};
    return result;
  }

  // Parked: enforce the queue bounds, most specific first.
  std::optional<RejectReason> reject;
  for (std::size_t i = 0; i < key_ids.size(); ++i) {
    if (key_ids[i] == kNil) continue;
    std::int64_t bound = config_.per_key[i].max_queue;
    if (bound > 0 && s.keys[key_ids[i]].parked > bound) reject = RejectReason::key_queue_full;
  }
  if (!reject && spec.max_queue > 0 && s.workloads[w].parked > spec.max_queue) {
    reject = RejectReason::workload_queue_full;
  }
  if (!reject && s.parked > config_.max_queue) reject = RejectReason::queue_full;
  if (reject) {
    s.remove_parked(e);
    result.reason = *reject;
    return result;
  }
  result.kind = EnqueueResult::Kind::parked;
  result.ticket = Ticket{State::handle(e, s.entries[e])};
  result.deadline = s.entries[e].deadline;
  return result;
}

bool Scheduler::cancel(Ticket ticket, Time /*now*/, std::vector<Admission>& admitted) {
  State& s = *state_;
  std::uint32_t e = s.resolve(ticket.value, EntryState::parked);
  if (e == kNil) return false;
  s.remove_parked(e);
  s.dispatch(config_, admitted);
  return true;
}

bool Scheduler::release(Permit permit, std::int64_t actual_cost, Time now,
                        std::vector<Admission>& admitted) {
  State& s = *state_;
  std::uint32_t e = s.resolve(permit.value, EntryState::in_flight);
  if (e == kNil) return false;
  const std::uint32_t sq = s.entries[e].subqueue;
  s.count_in_flight(e, -1);
  if (actual_cost >= 0) {
    s.charge(sq, static_cast<double>(std::max<std::int64_t>(actual_cost, 1) - s.entries[e].cost));
  }
  // Capacity returned to the request's keys: let the subqueues they held back be judged again.
  for (std::uint32_t k : s.subqueues[sq].keys) {
    if (k != kNil) s.unblock_all(k);
  }
  s.completions[s.completion_count % State::kRateWindow] = now;
  ++s.completion_count;
  s.free_entry_slot(e);
  s.drop_subqueue_ref(sq);
  s.dispatch(config_, admitted);
  return true;
}

void Scheduler::expire(Time now, std::vector<Ticket>& expired, std::vector<Admission>& admitted) {
  State& s = *state_;
  bool any = false;
  while (!s.deadlines.empty()) {
    std::uint32_t e = s.deadlines.top();
    if (s.entries[e].deadline > now) break;
    expired.push_back(Ticket{State::handle(e, s.entries[e])});
    s.remove_parked(e);
    any = true;
  }
  if (any) s.dispatch(config_, admitted);
}

std::optional<Time> Scheduler::next_deadline() const {
  if (state_->deadlines.empty()) return std::nullopt;
  return state_->entries[state_->deadlines.top()].deadline;
}

void Scheduler::drain(std::vector<Ticket>& rejected) {
  State& s = *state_;
  draining_ = true;
  while (!s.deadlines.empty()) {
    std::uint32_t e = s.deadlines.top();
    rejected.push_back(Ticket{State::handle(e, s.entries[e])});
    s.remove_parked(e);
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
  State& s = *state_;
  for (std::size_t i = 0; i < config.per_key.size(); ++i) {
    const KeyLimitSpec& now_limit = config.per_key[i];
    const KeyLimitSpec& old_limit = config_.per_key[i];
    auto lowered = [](std::int64_t next, std::int64_t prev) {
      return next > 0 && (prev == 0 || next < prev);
    };
    if (lowered(now_limit.max_concurrency, old_limit.max_concurrency) ||
        lowered(now_limit.max_tokens, old_limit.max_tokens)) {
      s.key_limits_lowered = true;
    }
  }

  // Workloads are matched by name; ids stay stable.
  std::vector<WorkloadId> next_current;
  for (std::size_t i = 0; i <= config.workloads.size(); ++i) {
    const WorkloadSpec& spec =
        i < config.workloads.size() ? config.workloads[i] : config.default_workload;
    std::optional<WorkloadId> id;
    for (WorkloadId w = 0; w < s.workloads.size(); ++w) {
      if (s.workloads[w].spec.name == spec.name) id = w;
    }
    if (!id) {
      s.workloads.push_back(WorkloadInfo{.spec = spec});
      id = static_cast<WorkloadId>(s.workloads.size() - 1);
    } else {
      s.workloads[*id].spec = spec;
      s.workloads[*id].retired = false;
    }
    next_current.push_back(*id);
  }
  for (WorkloadId w = 0; w < s.workloads.size(); ++w) {
    if (std::find(next_current.begin(), next_current.end(), w) == next_current.end()) {
      s.workloads[w].retired = true;
    }
  }
  s.current = std::move(next_current);

  // Classes take their workload's new weight and band.
  for (std::uint32_t c = 0; c < s.classes.items.size(); ++c) {
    State::Class& cls = s.classes[c];
    if (!cls.live) continue;
    const WorkloadSpec& spec = s.workloads[cls.workload].spec;
    if (cls.override_priority == 0) cls.weight = spec.priority;
    if (cls.band != spec.band) {
      bool queued = cls.heap_pos != kNotInHeap;
      if (queued) s.band_of(cls).classes->erase(c);
      cls.band = spec.band;
      State::Band& band = s.band_for(cls.band);
      cls.tag = std::max(cls.tag, band.vtime);
      if (queued) band.classes->push(c);
    }
  }
  config_ = std::move(config);
  // Limits may have grown: every held-back subqueue is judged again.
  for (std::uint32_t k = 0; k < s.keys.items.size(); ++k) {
    if (s.keys[k].live) s.unblock_all(k);
  }
  s.concurrency_ceiling = std::max(config_.max_concurrency, s.in_flight);
  s.dispatch(config_, admitted);
  // Retired workloads whose classes are already empty disappear now.
  for (std::uint32_t c = 0; c < s.classes.items.size(); ++c) {
    if (s.classes[c].live) s.maybe_erase_class(c);
  }
  return "";
}

std::int64_t Scheduler::retry_after_seconds(Time now) const {
  const State& s = *state_;
  const std::int64_t cap = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(config_.queue_timeout_cap).count());
  std::size_t n = std::min(s.completion_count, State::kRateWindow);
  if (n < 2) return 1;
  Time newest = s.completions[(s.completion_count - 1) % State::kRateWindow];
  Time oldest = s.completions[(s.completion_count - n) % State::kRateWindow];
  // A window that ended long ago says little about now: stretch it to the present.
  Duration span = std::max(newest, now) - oldest;
  double seconds = std::chrono::duration<double>(span).count();
  if (seconds <= 0) return 1;
  double rate = static_cast<double>(n - 1) / seconds;  // completions per second
  double wait = static_cast<double>(s.parked + 1) / rate;
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(wait)), 1, cap);
}

std::optional<WorkloadId> Scheduler::permit_workload(Permit permit) const {
  const State& s = *state_;
  std::uint32_t e = s.resolve(permit.value, EntryState::in_flight);
  if (e == kNil) return std::nullopt;
  const SubQueue& sq = s.subqueues[s.entries[e].subqueue];
  return s.classes[s.accounts[sq.account].cls].workload;
}

std::optional<std::int64_t> Scheduler::permit_cost(Permit permit) const {
  const State& s = *state_;
  std::uint32_t e = s.resolve(permit.value, EntryState::in_flight);
  if (e == kNil) return std::nullopt;
  return s.entries[e].cost;
}

Snapshot Scheduler::snapshot(Time now) const {
  const State& s = *state_;
  Snapshot snap;
  snap.max_concurrency = config_.max_concurrency;
  snap.parked = s.parked;
  snap.in_flight = s.in_flight;
  snap.in_flight_tokens = s.in_flight_tokens;
  std::vector<std::optional<Time>> oldest(s.workloads.size());
  for (const SubQueue& sq : s.subqueues.items) {
    if (!sq.live || sq.head == kNil) continue;
    WorkloadId w = s.classes[s.accounts[sq.account].cls].workload;
    Time t = s.entries[sq.head].enqueued;
    if (!oldest[w] || t < *oldest[w]) oldest[w] = t;
  }
  for (WorkloadId w = 0; w < s.workloads.size(); ++w) {
    const WorkloadInfo& info = s.workloads[w];
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
  for (const Account& acc : s.accounts.items) {
    if (!acc.live || (acc.parked == 0 && acc.in_flight == 0)) continue;
    const std::string& label = s.workloads[s.classes[acc.cls].workload].spec.fairness_label;
    KeyStats& k = merged[{label, acc.key}];
    k.label = label;
    k.value = acc.key;
    k.parked += acc.parked;
    k.in_flight += acc.in_flight;
  }
  for (auto& [_, k] : merged)
    snap.keys.push_back(std::move(k));
  for (const LimitKey& key : s.keys.items) {
    if (!key.live || (key.parked == 0 && key.in_flight == 0)) continue;
    const std::string& label = config_.per_key[key.limit].label;
    bool same_as_fairness = false;
    for (const KeyStats& k : snap.keys) {
      if (k.label == label && k.value == key.value) same_as_fairness = true;
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
  const State& s = *state_;
  auto fail = [](const std::string& what) { return what; };
  std::int64_t parked = 0, in_flight = 0, tokens = 0;
  std::vector<std::int64_t> w_parked(s.workloads.size()), w_flight(s.workloads.size()),
      w_tokens(s.workloads.size());
  std::vector<std::int64_t> sq_parked(s.subqueues.items.size()), sq_refs(s.subqueues.items.size());
  std::vector<std::int64_t> a_parked(s.accounts.items.size()), a_flight(s.accounts.items.size());
  std::vector<std::int64_t> k_parked(s.keys.items.size()), k_flight(s.keys.items.size()),
      k_tokens(s.keys.items.size());
  std::size_t deadline_entries = 0;
  for (std::uint32_t e = 0; e < s.entries.size(); ++e) {
    const Entry& entry = s.entries[e];
    if (entry.state == EntryState::free) continue;
    if (entry.subqueue >= s.subqueues.items.size() || !s.subqueues[entry.subqueue].live) {
      return fail("entry " + std::to_string(e) + " points to a dead subqueue");
    }
    const SubQueue& sq = s.subqueues[entry.subqueue];
    const Account& acc = s.accounts[sq.account];
    WorkloadId w = s.classes[acc.cls].workload;
    ++sq_refs[entry.subqueue];
    if (entry.state == EntryState::parked) {
      ++parked;
      ++w_parked[w];
      ++sq_parked[entry.subqueue];
      ++a_parked[sq.account];
      for (std::uint32_t k : sq.keys) {
        if (k != kNil) ++k_parked[k];
      }
      if (entry.heap_pos == kNotInHeap) return fail("parked entry missing from deadline heap");
      ++deadline_entries;
    } else {
      ++in_flight;
      tokens += entry.cost;
      ++w_flight[w];
      w_tokens[w] += entry.cost;
      ++a_flight[sq.account];
      for (std::uint32_t k : sq.keys) {
        if (k == kNil) continue;
        ++k_flight[k];
        k_tokens[k] += entry.cost;
      }
      if (entry.heap_pos != kNotInHeap) return fail("in-flight entry in the deadline heap");
    }
  }
  if (deadline_entries != s.deadlines.size()) return fail("deadline heap size mismatch");
  if (parked != s.parked) return fail("global parked count mismatch");
  if (in_flight != s.in_flight) return fail("global in-flight count mismatch");
  if (tokens != s.in_flight_tokens) return fail("global in-flight tokens mismatch");
  if (s.in_flight > s.concurrency_ceiling) return fail("in-flight above max_concurrency");
  for (WorkloadId w = 0; w < s.workloads.size(); ++w) {
    const WorkloadInfo& info = s.workloads[w];
    if (info.parked != w_parked[w] || info.in_flight != w_flight[w] ||
        info.in_flight_tokens != w_tokens[w]) {
      return fail("workload '" + info.spec.name + "' counters mismatch");
    }
  }
  for (std::uint32_t i = 0; i < s.subqueues.items.size(); ++i) {
    const SubQueue& sq = s.subqueues[i];
    if (!sq.live) continue;
    if (sq.parked != sq_parked[i]) return fail("subqueue parked mismatch");
    if (sq.refs != sq_refs[i]) return fail("subqueue refs mismatch");
    if (sq.refs == 0) return fail("live subqueue without entries");
    bool want_ready = sq.parked > 0 && sq.blocked_by == kNil;
    if (sq.ready != want_ready) return fail("subqueue readiness stale");
    std::uint32_t count = 0;
    for (std::uint32_t e = sq.head; e != kNil; e = s.entries[e].next) {
      if (s.entries[e].subqueue != i || s.entries[e].state != EntryState::parked) {
        return fail("subqueue list holds a foreign entry");
      }
      if (s.entries[e].next != kNil && s.entries[s.entries[e].next].seq < s.entries[e].seq) {
        return fail("subqueue not FIFO");
      }
      if (++count > sq.parked) return fail("subqueue list longer than its count");
    }
    if (count != sq.parked) return fail("subqueue list shorter than its count");
    if (sq.blocked_by != kNil) {
      const LimitKey& key = s.keys[sq.blocked_by];
      if (sq.blocked_pos >= key.blocked.size() || key.blocked[sq.blocked_pos] != i) {
        return fail("blocked subqueue not on its key's list");
      }
    }
  }
  for (std::uint32_t a = 0; a < s.accounts.items.size(); ++a) {
    const Account& acc = s.accounts[a];
    if (!acc.live) continue;
    if (acc.parked != a_parked[a] || acc.in_flight != a_flight[a]) {
      return fail("account '" + acc.key + "' counters mismatch");
    }
    if (acc.idle_listed != acc.subqueues.empty()) {
      return fail("account '" + acc.key + "' is idle but not listed, or listed but active");
    }
    std::uint32_t ready = 0;
    for (std::uint32_t sq : acc.subqueues)
      ready += s.subqueues[sq].ready ? 1 : 0;
    if (ready != acc.ready) return fail("account ready count mismatch");
    bool in_heap = acc.heap_pos != kNotInHeap;
    if (in_heap != (acc.ready > 0)) return fail("account heap membership wrong");
  }
  // The idle list: each listed account once, links consistent both ways, cursor on the list.
  std::size_t listed = 0;
  bool cursor_listed = s.idle_cursor == kNil;
  std::uint32_t prev = kNil;
  for (std::uint32_t a = s.idle_head; a != kNil; prev = a, a = s.accounts[a].idle_next) {
    if (a >= s.accounts.items.size() || !s.accounts[a].live || !s.accounts[a].idle_listed) {
      return fail("idle list holds an account that is not listed");
    }
    if (s.accounts[a].idle_prev != prev) return fail("idle list links broken");
    if (++listed > s.idle_count) return fail("idle list longer than its count");
    if (a == s.idle_cursor) cursor_listed = true;
  }
  if (prev != s.idle_tail) return fail("idle list tail wrong");
  if (listed != s.idle_count) return fail("idle list shorter than its count");
  if (s.idle_count > kMaxIdleAccounts) return fail("idle list above kMaxIdleAccounts");
  if (!cursor_listed) return fail("idle cursor off the list");
  if (s.settled_moves == s.vtime_moves) {
    for (std::uint32_t a = s.idle_head; a != kNil; a = s.accounts[a].idle_next) {
      if (s.accounts[a].tag <= s.classes[s.accounts[a].cls].vtime) {
        return fail("idle list settled while an account on it owes nothing");
      }
    }
  }
  for (std::uint32_t c = 0; c < s.classes.items.size(); ++c) {
    const State::Class& cls = s.classes[c];
    if (!cls.live) continue;
    bool in_heap = cls.heap_pos != kNotInHeap;
    if (in_heap != !cls.accounts->empty()) return fail("class heap membership wrong");
  }
  for (std::uint32_t k = 0; k < s.keys.items.size(); ++k) {
    const LimitKey& key = s.keys[k];
    if (!key.live) continue;
    if (key.parked != k_parked[k] || key.in_flight != k_flight[k] ||
        key.in_flight_tokens != k_tokens[k]) {
      return fail("limit key '" + key.value + "' counters mismatch");
    }
    const KeyLimitSpec& limit = config_.per_key[key.limit];
    if (!s.key_limits_lowered && limit.max_concurrency > 0 &&
        key.in_flight > limit.max_concurrency) {
      return fail("limit key '" + key.value + "' above its max_concurrency");
    }
  }
  // Work conservation: with a free slot, no parked head may fit its per-key limits, unless the
  // global token budget is what holds the queue back.
  if (s.in_flight < config_.max_concurrency) {
    bool token_held = config_.max_inflight_tokens > 0 && s.in_flight > 0;
    for (std::uint32_t i = 0; i < s.subqueues.items.size(); ++i) {
      const SubQueue& sq = s.subqueues[i];
      if (!sq.live || sq.parked == 0) continue;
      if (s.blocking_key(sq, s.entries[sq.head].cost, config_.per_key) == kNil && !token_held) {
        return fail("work conservation: a slot is free while an admissible request is parked");
      }
    }
  }
  return "";
}

}  // namespace sluice::core
