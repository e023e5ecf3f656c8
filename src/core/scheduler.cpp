// The scheduling core's public API: each Scheduler call as a short sequence of State steps.
// See scheduler.hpp for the semantics, and scheduler_state.hpp for the records and for where
// each part of the implementation lives (lookups, the idle list, readiness, fair order).
//
// Every call that can free capacity (cancel, release, expire, reconfigure) ends in dispatch(),
// which admits parked requests while a slot is free and fair order allows: freeing a slot is
// what drives admission, so no slot is idle while an admissible request waits.
#include "sluice/core/scheduler.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <map>
#include <optional>

#include "scheduler_state.hpp"
#include "sluice/core/limits.hpp"

namespace sluice::core {

std::string_view reason_name(RejectReason reason) {
  switch (reason) {
    case RejectReason::queue_full:
    case RejectReason::workload_queue_full:
      return "queue_full";
    case RejectReason::key_queue_full:
      return "user_queue_full";
    case RejectReason::shutting_down:
      return "shutting_down";
    case RejectReason::model_not_found:
      return "model_not_found";
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
  if (config.progress_queue_timeout_cap.count() < 0)
    return "progress_queue_timeout_cap must not be negative";
  if (config.progress_queue_timeout_cap > kMaxProgressQueueTimeout)
    return "progress_queue_timeout_cap must be <= 1h";
  if (config.assumed_load_time.count() <= 0) return "assumed_load_time must be positive";
  if (config.load_threshold.count() <= 0) return "load_threshold must be positive";
  if (!config.backends.empty()) {
    if (std::string error = validate(std::span<const BackendSpec>(config.backends)); !error.empty())
      return error;
  } else if (config.auto_concurrency) {
    if (std::string error = validate(*config.auto_concurrency); !error.empty())
      return "auto_concurrency." + error;
  }
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
  State& state = *state_;
  for (std::size_t i = 0; i <= config_.workloads.size(); ++i) {
    const WorkloadSpec& spec =
        i < config_.workloads.size() ? config_.workloads[i] : config_.default_workload;
    state.workloads.push_back(WorkloadInfo{.spec = spec});
    state.current.push_back(static_cast<WorkloadId>(i));
  }
  state.concurrency_ceiling = config_.max_concurrency;
  state.fleet.set_model_aware(config_.model_aware);
  state.fleet.set_load_policy(config_.assumed_load_time, config_.load_threshold);
  if (config_.backends.empty()) state.fleet.set_up(0, true);  // a single upstream: always up
  state.sync_adaptive(config_);
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
  // (The implicit backend of a single upstream never learns a catalog: one subqueue per
  // account, whatever the model, as before fleets.)
  const ModelId model = config_.backends.empty() ? state.fleet.model(request.model)
                                                 : state.fleet.request_model(request.model);
  if (state.fleet.choose(model, 1, now, now).kind == Placement::Kind::unserved) {
    result.reason = RejectReason::model_not_found;
    return result;
  }

  // Resolve (and create on first use) class, account, limit keys and subqueue.
  const ClassId c = state.class_for(w, request.priority);
  const AccountId a = state.account_for(c, request.fairness_key);
  std::vector<LimitKeyId>& key_ids = state.key_scratch;
  key_ids.assign(config_.per_key.size(), LimitKeyId::nil());
  for (std::size_t i = 0; i < key_ids.size() && i < request.limit_keys.size(); ++i) {
    key_ids[i] = state.limit_key_for(static_cast<std::uint32_t>(i), request.limit_keys[i]);
  }
  const SubQueueId s = state.subqueue_for(a, key_ids, model);

  const Duration cap =
      request.progress ? config_.progress_queue_timeout_cap : config_.queue_timeout_cap;
  Duration timeout = std::min(spec.queue_timeout, cap);
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
  state.dispatch(config_, admitted, now);
  if (state.entries[e].state == EntryState::in_flight) {
    const std::uint64_t h = State::handle(e, state.entries[e]);
    auto own =
        std::find_if(admitted.begin() + static_cast<std::ptrdiff_t>(before), admitted.end(),
                     [&](const Admission& admission) { return admission.permit.value == h; });
    result.backend = own->backend;
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

bool Scheduler::cancel(Ticket ticket, Time now, std::vector<Admission>& admitted) {
  State& state = *state_;
  EntryId e = state.resolve(ticket.value, EntryState::parked);
  if (e.is_nil()) return false;
  state.remove_parked(e);
  state.dispatch(config_, admitted, now);
  return true;
}

bool Scheduler::release(Permit permit, std::int64_t actual_cost, Time now,
                        std::vector<Admission>& admitted, const Timings& timings) {
  State& state = *state_;
  EntryId e = state.resolve(permit.value, EntryState::in_flight);
  if (e.is_nil()) return false;
  const SubQueueId s = state.entries[e].subqueue;
  const BackendId b = state.entries[e].backend;
  state.count_in_flight(e, -1);
  state.learn_service(state.entries[e], actual_cost, now);
  state.fleet.release(b, state.subqueues[s].model, timings, now, state.entries[e].expected_end);
  state.learn_limit(b, state.entries[e], timings, now);
  state.release_holds_for(b);  // a slot freed on b: the models it may serve are judged again
  if (actual_cost >= 0) {
    state.charge(
        s, static_cast<double>(std::max<std::int64_t>(actual_cost, 1) - state.entries[e].cost));
  }
  state.unblock_keys_of(s);  // capacity returned to its keys: judge their subqueues again
  state.record_completion(state.entries[e], actual_cost, timings.load_duration.value_or(Duration{}),
                          now);
  state.entries.release(e);
  state.drop_subqueue_ref(s);
  state.dispatch(config_, admitted, now);
  return true;
}

void Scheduler::expire(Time now, std::vector<Ticket>& expired, std::vector<Admission>& admitted) {
  State& state = *state_;
  bool any = false;
  if (const auto wake = state.next_wake(); wake && *wake <= now) {
    state.release_holds_due(now);
    any = true;
  }
  while (!state.deadlines.empty()) {
    EntryId e = state.deadlines.top();
    if (state.entries[e].deadline > now) break;
    expired.push_back(Ticket{State::handle(e, state.entries[e])});
    state.remove_parked(e);
    any = true;
  }
  if (any) state.dispatch(config_, admitted, now);
}

std::optional<Time> Scheduler::next_deadline() const {
  std::optional<Time> next = state_->next_wake();
  if (!state_->deadlines.empty()) {
    const Time deadline = state_->entries[state_->deadlines.top()].deadline;
    if (!next || deadline < *next) next = deadline;
  }
  return next;
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

std::string Scheduler::reconfigure(SchedulerConfig config, Time now,
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
  if (std::string error = state.fleet.reconfigure(State::effective_backends(config));
      !error.empty())
    return error;
  if (config.backends.empty()) {
    if (auto single = state.fleet.find(kSingleBackend)) state.fleet.set_up(*single, true);
  }
  state.fleet.set_model_aware(config.model_aware);
  state.fleet.set_load_policy(config.assumed_load_time, config.load_threshold);
  state.sync_adaptive(config);
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
  state.unblock_every_key();   // limits may have grown
  state.release_every_hold();  // and backends may have been added or resized
  state.concurrency_ceiling = std::max(config_.max_concurrency, state.in_flight);
  state.dispatch(config_, admitted, now);
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
  for (BackendId b = 0; b < state.fleet.size(); ++b) {
    if (!state.fleet.live(b)) continue;
    snap.backends.push_back(state.fleet.view(b));
    if (b < state.adaptive.size() && state.adaptive[b])
      snap.backends.back().auto_concurrency = state.adaptive[b]->view();
  }
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

}  // namespace sluice::core
