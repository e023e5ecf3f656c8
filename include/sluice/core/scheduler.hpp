// The scheduling core: who runs next when the GPU is the bottleneck.
//
// A pure, single-threaded state machine in the spirit of HAProxy's queue: the caller feeds it
// events (a request arrives, a request is cancelled, a request finishes, time passes) with the
// present time as an argument, and it answers with decisions (admit now, park with a ticket,
// reject with a reason; which parked tickets to wake; which expired). It never reads a clock,
// never blocks and does no I/O; the async layer (src/net) turns its answers into wake-ups.
//
// Semantics (DESIGN.md §2):
//  * Limits. A request runs only when every limit that applies has room: the global
//    max_concurrency (and max_inflight_tokens, if set) and, for each configured per-key limit,
//    the limit of the request's value of that label. A request held back only by a per-key limit
//    never blocks a request with other keys.
//  * Order. Strict bands first (higher band always first). Inside a band, start-time weighted
//    fair queuing between scheduling classes with the priority as the weight; a class is a
//    workload, or (workload, priority) when a request overrides the priority. Inside a class,
//    the same fair queuing with equal weights between fairness keys (exact, no hashing into
//    buckets). Inside a key, FIFO. Idle classes and keys bank no credit.
//  * Cost. Service is measured in tokens. release() with the real cost charges the difference
//    between estimated and actual cost to the key and class, which moves their later turns.
//  * Work conservation. After every event, while a slot is free and some parked request is
//    admissible, one is admitted. A global token budget that cannot fit the next request in fair
//    order holds everyone back (no bypass, so large requests cannot starve).
//  * Deadlines. Each parked request has deadline = now + min(requested, workload queue_timeout,
//    queue_timeout_cap); expire(now) removes those with deadline <= now and reports them.
//  * Bounds. Parked requests are bounded globally, per workload and per key; a request over a
//    bound is rejected, not parked.
//  * Fleet. Requests run on backends (fleet.hpp). A request for model M runs only on a backend
//    that is eligible for M and has a free slot, and the fleet's placement picks which; fair
//    order stays global across the fleet, so when a slot frees on backend B, B takes the first
//    request in fair order that may run there (eligible, and not waiting for a warm slot
//    elsewhere). A request held back only by placement never holds back one that could run.
//  * A faster slot. When the free slot B offers a request is on a slow backend and a busy
//    faster one would finish it sooner, counting the wait for its next slot
//    (Fleet::faster_slot), the request lets ready work of lower priority (a lower band, or a
//    lower weight in its band) have B first; peers keep fair order. A slot is never left idle
//    for it: what nobody of lower priority took is offered again, in fair order, without the
//    wait, before the call returns. So paid traffic stays off a half-speed GPU while free
//    traffic can use it, and a fleet of equal backends or of one priority is unaffected.
//    With no backends configured there is one, of max_concurrency slots, serving every model
//    and always up: a single upstream.
//  * Adaptive limits. A backend with auto_concurrency has a ConcurrencyController
//    (concurrency.hpp); release() feeds it the request's timings (with the backend's in-flight
//    count at the request's admission) before anything is dispatched, and its limit becomes the
//    backend's max_concurrency. Lowering never cancels a running request; raising admits at once.
//    A reconfigure keeps what was learned for a backend of the same name (clamped to new bounds).
//
// Invariants (checked by check_invariants(), exercised after every step by the model test):
//  * in_flight <= max_concurrency unless a reconfigure lowered it (then no admission until
//    below); the same for every per-key limit and token budget.
//  * Every ticket ends exactly once: admitted, cancelled, expired, or rejected by drain().
//    Every permit is released exactly once; a second cancel/release is a harmless no-op.
//  * Counters (per workload, per key, global) equal the number of live entries they count.
//
// Handles: Ticket names a parked request, Permit an admitted one. They carry a generation, so a
// stale handle is recognised and ignored. Both are plain values, cheap to copy.
//
// Complexity: enqueue, cancel, admit and expire-one are O(log n) in the number of parked
// requests plus O(1) hash lookups; memory is ~100 bytes per parked request. Fairness keys that
// go idle owing service are remembered (at most kMaxIdleAccounts, ~250 bytes each) and
// reclaimed at O(1) per request, however many distinct keys were ever seen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/core/fleet.hpp"
#include "sluice/core/labels.hpp"
#include "sluice/core/queue_order.hpp"
#include "sluice/core/time.hpp"
#include "sluice/core/workload.hpp"

namespace sluice::core {

/// A limit that applies separately to each value of one label, e.g. {label: "user",
/// max_concurrency: 1} or {label: "model", max_concurrency: 2}. Zero means "no limit".
struct KeyLimitSpec {
  std::string label;
  std::int64_t max_concurrency = 0;
  std::int64_t max_tokens = 0;  ///< in-flight token budget per key value
  std::int64_t max_queue = 0;   ///< parked requests per key value
};

struct SchedulerConfig {
  std::int64_t max_concurrency = 2;      ///< >= 1
  std::int64_t max_inflight_tokens = 0;  ///< 0 = no global token budget
  std::int64_t max_queue = 10'000;       ///< parked requests in total, >= 0
  Duration queue_timeout_cap = std::chrono::seconds(240);
  /// The cap instead of queue_timeout_cap for requests whose client gets progress while parked
  /// (Request::progress): their wait is not bounded by clients giving up on silent headers.
  Duration progress_queue_timeout_cap = std::chrono::seconds(900);
  std::vector<KeyLimitSpec> per_key;
  std::vector<WorkloadSpec> workloads;
  WorkloadSpec default_workload{.name = "default"};
  /// The fleet; empty = one backend named kSingleBackend of max_concurrency slots, serving every
  /// model, always up. max_concurrency then caps the fleet as a whole.
  std::vector<BackendSpec> backends;
  /// false: placement ignores which models are resident (least loaded backend first), for
  /// comparison.
  bool model_aware = true;
  /// A model's load time on a backend until one was seen there (Fleet::set_load_policy).
  Duration assumed_load_time = kDefaultLoadTime;
  /// The least load_duration that counts as a model load.
  Duration load_threshold = kLoadSeen;
  /// Without backends: `"max_concurrency": "auto"` on the single upstream. Its limit is then
  /// learned within these bounds (concurrency.hpp), and max_concurrency only caps it.
  std::optional<AutoConcurrency> auto_concurrency;
};

/// A change of a backend's adaptive limit (Scheduler::take_limit_changes).
struct BackendLimitChange {
  BackendId backend = 0;
  std::string backend_name;  ///< the core's name (kSingleBackend for a single upstream)
  LimitChange change;
};

/// A note of a backend's adaptive controller that changed no limit (Scheduler::take_limit_notes,
/// ConcurrencyController::take_notes).
struct BackendLimitNote {
  BackendId backend = 0;
  std::string backend_name;  ///< as in BackendLimitChange
  std::string text;
};

/// The name of the implicit backend of a config without backends.
inline constexpr std::string_view kSingleBackend = "default";

/// Returns "" when the config is valid, else a message naming the offending field.
std::string validate(const SchedulerConfig& config);

/// Stable identifier of a workload inside one Scheduler (survives reconfigure()).
using WorkloadId = std::uint32_t;

struct Ticket {
  std::uint64_t value = 0;
  explicit operator bool() const { return value != 0; }
  friend bool operator==(Ticket, Ticket) = default;
};

struct Permit {
  std::uint64_t value = 0;
  explicit operator bool() const { return value != 0; }
  friend bool operator==(Permit, Permit) = default;
};

enum class RejectReason : std::uint8_t {
  queue_full,           ///< global max_queue reached
  workload_queue_full,  ///< the workload's max_queue reached
  key_queue_full,       ///< a per-key max_queue reached (e.g. one user's parked requests)
  shutting_down,        ///< drain() was called
  model_not_found,      ///< no backend of the fleet serves the request's model
};

/// The wire name of a reason (X-Sluice-Reason): queue_full, user_queue_full, shutting_down,
/// model_not_found.
std::string_view reason_name(RejectReason reason);

/// What the caller knows about a request when it asks for a slot.
struct Request {
  WorkloadId workload = 0;
  /// > 0 overrides the workload's priority (X-Priority); 0 keeps the workload's.
  double priority = 0;
  /// The value of the workload's fairness label (usually the user id).
  std::string_view fairness_key;
  /// One value per SchedulerConfig::per_key entry, in the same order: the request's value of
  /// that label, or "" when the request has none (the limit then does not apply to it).
  /// Shorter spans are padded with "".
  std::span<const std::string_view> limit_keys;
  /// Expected cost in tokens (>= 1; smaller values are clamped to 1).
  std::int64_t cost = 1;
  /// Longest the client is willing to wait (X-Queue-Timeout); nullopt = no own bound.
  std::optional<Duration> queue_timeout;
  /// The model asked for (placement on the fleet); "" for none.
  std::string_view model;
  /// Its client gets progress while parked: progress_queue_timeout_cap bounds its wait.
  bool progress = false;
};

struct Admission {
  Ticket ticket;          ///< the parked request that may now run
  Permit permit;          ///< release it exactly once when the request ends
  BackendId backend = 0;  ///< where it runs
};

struct EnqueueResult {
  enum class Kind : std::uint8_t { admitted, parked, rejected };
  Kind kind = Kind::rejected;
  Permit permit;                                   ///< when admitted
  BackendId backend = 0;                           ///< when admitted: where it runs
  Ticket ticket;                                   ///< when parked
  Time deadline{};                                 ///< when parked
  RejectReason reason = RejectReason::queue_full;  ///< when rejected
};

/// What became of a request put back into the queue (Scheduler::requeue).
struct RequeueResult {
  enum class Kind : std::uint8_t {
    admitted,       ///< runs again at once, on `backend`, under the new `permit`
    parked,         ///< waits under `ticket` until `deadline` (its original queue deadline)
    timed_out,      ///< its queue deadline had passed: it ended (answer as a queue timeout)
    shutting_down,  ///< drain() was called: it ended
  };
  Kind kind = Kind::timed_out;
  Permit permit;          ///< when admitted
  BackendId backend = 0;  ///< when admitted
  Ticket ticket;          ///< when parked
  Time deadline{};        ///< when parked
};

struct WorkloadStats {
  std::string name;
  WorkloadId id = 0;
  double priority = 0;
  int band = 0;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::optional<Duration> oldest_wait;  ///< of its parked requests
  bool retired = false;                 ///< removed by a reconfigure, draining
};

struct KeyStats {
  std::string label;  ///< the fairness label or the per-key limit's label
  std::string value;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
};

/// Most fairness accounts remembered while idle (see Scheduler::idle_account_stats()). Beyond it
/// the account idle the longest is forgotten, and with it what it owed.
inline constexpr std::size_t kMaxIdleAccounts = 100'000;

/// Bookkeeping of the fairness accounts kept while idle, for tests and metrics.
struct IdleAccountStats {
  std::size_t remembered = 0;  ///< idle accounts kept because they are ahead of their class
  std::uint64_t visits = 0;    ///< idle accounts examined so far to reclaim or evict them
};

struct Snapshot {
  std::int64_t max_concurrency = 0;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_tokens = 0;
  std::vector<WorkloadStats> workloads;
  std::vector<KeyStats> keys;  ///< only keys with parked or in-flight requests
  std::vector<BackendView> backends;
  /// Parked requests with their place in the queue, the first ones of each workload (filled by
  /// the network layer, which knows request ids: net::Proxy::snapshot()).
  std::vector<WaitingView> waiting;
};

class Scheduler {
 public:
  /// Precondition: validate(config) == "".
  explicit Scheduler(SchedulerConfig config);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerConfig& config() const { return config_; }

  /// The workload the labels select (first match, else the default).
  WorkloadId classify(const Labels& labels) const;
  /// A workload by name (X-Workload), including "default"; nullopt when unknown or retired.
  std::optional<WorkloadId> find_workload(std::string_view name) const;
  const WorkloadSpec& workload(WorkloadId id) const;
  std::size_t workload_count() const;

  /// Admits the request now, parks it, or rejects it. Never admits ahead of a parked request
  /// that fair order puts first and that could run. With a global token budget, admitting the
  /// newcomer can move fair order so that parked requests become next and fit: those are
  /// appended to `admitted` (always empty without a token budget).
  EnqueueResult enqueue(const Request& request, Time now, std::vector<Admission>& admitted);

  /// Removes a parked request. Returns true if it was parked; false if it was already admitted,
  /// cancelled, expired or never existed (safe to call twice). Removing a request may let
  /// others run (their admissions are appended to `admitted`).
  bool cancel(Ticket ticket, Time now, std::vector<Admission>& admitted);

  /// Ends an admitted request, freeing its slot. `actual_cost` (tokens really used; < 0 means
  /// unknown, keep the estimate) charges the difference to the request's key and class;
  /// `timings` (its final object's durations) teach the fleet load times and speeds. Appends
  /// the parked requests this lets run. Returns false for an unknown or already released permit.
  bool release(Permit permit, std::int64_t actual_cost, Time now, std::vector<Admission>& admitted,
               const Timings& timings = {});

  /// The request's backend failed before answering (connect failure, reset or timeout before
  /// the response head): moves the request to another backend that may take it now, keeping
  /// its permit. Returns that backend, or nullopt (nothing changed) when none has room. The
  /// failed backend's slot is freed (appending what that lets run to `admitted`).
  std::optional<BackendId> reroute(Permit permit, Time now, std::vector<Admission>& admitted);

  /// The fallback of reroute() when no other backend has room now: the request leaves its
  /// backend and goes back into the queue at the place it had, to run when an eligible backend
  /// frees a slot, or to expire at its original queue deadline.
  ///  * Place: the front of its subqueue (it was that subqueue's head when admitted), and its
  ///    key and class are refunded what its admission charged them, so it is charged once when
  ///    it finally runs. If its account had nothing else parked, the account re-enters the
  ///    queue at max(refunded tag, the class's virtual time) with the request's original
  ///    arrival as tie-break: ahead of anything that arrived after it, with no banked credit.
  ///  * Avoidance: the request avoids the backends that failed it (a per-request set, which
  ///    placement, decided per subqueue head, passes to Fleet::choose as `exclude`). The set
  ///    only steers: when no backend outside it is up and serves the model, the request is
  ///    placed as if it had none (on a single backend it goes back to that backend when the
  ///    backend has room, or waits while it is down), so a request is never stranded by a
  ///    backend that came back. The caller bounds the moves of one request.
  ///  * The permit ends (a stale handle from then on); the failed backend's slot and the
  ///    request's key capacity are freed, and what that lets run is appended to `admitted`.
  ///    The request itself may run at once (kind admitted, not in `admitted`); else it is
  ///    parked under a new ticket, cancellable and expiring like any parked request.
  /// Returns nullopt (nothing changed) for an unknown or already released permit.
  std::optional<RequeueResult> requeue(Permit permit, Time now, std::vector<Admission>& admitted);

  /// What the network layer learns about a backend. Each may let parked requests run.
  void observe_up(BackendId backend, bool up, Time now, std::vector<Admission>& admitted);
  void observe_catalog(BackendId backend, std::span<const std::string> models, Time now,
                       std::vector<Admission>& admitted);
  void observe_resident(BackendId backend, std::span<const std::string> models, Time now,
                        std::vector<Admission>& admitted);

  /// The changes of adaptive limits since the last call, oldest first (for the log).
  std::vector<BackendLimitChange> take_limit_changes();
  /// The adaptive controllers' notes since the last call (decisions that changed no limit),
  /// oldest first (for the log).
  std::vector<BackendLimitNote> take_limit_notes();

  /// The fleet (placement state: backends, models, residency), for reads.
  const Fleet& fleet() const;
  /// The backend an admitted permit runs on; nullopt when the permit is not live.
  std::optional<BackendId> permit_backend(Permit permit) const;

  /// Removes every parked request whose deadline is <= now, appending their tickets to
  /// `expired` in deadline order, and any admissions that follows to `admitted` (including
  /// requests whose wait for a warm slot ended).
  void expire(Time now, std::vector<Ticket>& expired, std::vector<Admission>& admitted);

  /// The next time expire() has work: the earliest deadline among parked requests, or a time
  /// when a request waiting for a warm slot may go to a cold backend; nullopt for none.
  std::optional<Time> next_deadline() const;

  /// Rejects every parked request (shutdown); appends their tickets. Later enqueues are
  /// rejected with shutting_down. In-flight permits stay valid.
  void drain(std::vector<Ticket>& rejected);
  bool draining() const { return draining_; }

  /// Applies a new config. Parked requests keep their place; a lower max_concurrency takes
  /// effect as slots free up; a higher one admits at once (appended to `admitted`). Workloads
  /// are matched by name: new ones are added, removed ones drain and then disappear.
  /// Returns "" on success, else why nothing was changed (invalid config, or a change of the
  /// per-key labels, which needs a restart).
  std::string reconfigure(SchedulerConfig config, Time now, std::vector<Admission>& admitted);

  /// Seconds a rejected client should wait before retrying: the parked backlog divided by the
  /// recent completion rate, clamped to [1, queue_timeout_cap].
  std::int64_t retry_after_seconds(Time now) const;

  std::int64_t parked() const;
  std::int64_t in_flight() const;
  /// The workload of an admitted permit (for metrics); nullopt when the permit is not live.
  std::optional<WorkloadId> permit_workload(Permit permit) const;
  /// The estimated cost an admitted permit was charged.
  std::optional<std::int64_t> permit_cost(Permit permit) const;

  Snapshot snapshot(Time now) const;

  /// Where every parked request stands (queue_order.hpp): the first `limit` in the order the
  /// scheduler would admit them, found by running it on a copy of its state. Changes nothing.
  /// O(parked + records) for the copy, plus O(log n) per ordered request.
  QueueOrder queue_order(Time now, std::size_t limit) const;

  /// O(1). `visits` grows by a small constant per request, however many keys were ever seen.
  IdleAccountStats idle_account_stats() const;

  /// Recomputes every counter from scratch and compares; returns "" or the first violation.
  /// O(n); for tests.
  std::string check_invariants() const;

  struct State;  // implementation detail, defined in src/core/scheduler_state.hpp

 private:
  // A scheduler over a copy of another's state (queue_order()).
  Scheduler(SchedulerConfig config, bool draining, std::unique_ptr<State> state);

  SchedulerConfig config_;
  bool draining_ = false;
  std::unique_ptr<State> state_;
};

}  // namespace sluice::core
