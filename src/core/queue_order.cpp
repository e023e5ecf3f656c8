// Scheduler::queue_order(): positions and ETAs of the parked requests, by running the scheduler on
// a copy of its state (see queue_order.hpp for what "current order" means), and the service
// model behind the ETA. The copy is the only way positions stay faithful to every rule that
// shapes the order (bands, weights, fairness, per-key limits, token budgets, placement) without
// a second implementation of them to keep in step.
#include <algorithm>
#include <array>
#include <cstddef>
#include <queue>
#include <utility>
#include <vector>

#include "scheduler_state.hpp"

namespace sluice::core {

namespace {

/// Weight of a new sample in the service-time averages.
constexpr double kServiceAlpha = 0.1;
/// Completions of a busy period before its work throughput counts (until then the last period's
/// stands, or none), and completions in all before any estimator gives an ETA: one request's
/// cost says little about time (prompt tokens run far faster than output tokens), and its run
/// time says little about the drain (the first of a burst waited behind nothing inside the
/// backend: the service model from it alone promised half the wait with two slots on a backend
/// that runs one). The first ETA of a cold burst is given from these.
constexpr std::size_t kMinWorkSamples = 4;

struct Running {
  Time finish;
  std::uint64_t admit_seq;
  Permit permit;
  double work;  // cost tokens left to run
  bool operator>(const Running& other) const {
    return finish > other.finish || (finish == other.finish && admit_seq > other.admit_seq);
  }
};

}  // namespace

std::unique_ptr<Scheduler::State> Scheduler::State::clone() const {
  auto copy = std::make_unique<State>(*this);
  copy->rebind();
  return copy;
}

void Scheduler::State::rebind() {
  deadlines.rebind(DeadlineLess{this}, DeadlinePos{this});
  for (Band& band : bands) {
    if (band.ready_classes) band.ready_classes->rebind(ClassLess{this}, ClassPos{this});
  }
  for (Class& cls : classes.items) {
    if (cls.ready_accounts) cls.ready_accounts->rebind(AccountLess{this}, AccountPos{this});
  }
}

void Scheduler::State::learn_service(const Entry& entry, std::int64_t actual_cost, Time now) {
  const double ran = static_cast<double>(std::max(Duration{}, now - entry.admitted).count());
  const double cost =
      static_cast<double>(actual_cost >= 0 ? std::max<std::int64_t>(actual_cost, 1) : entry.cost);
  if (service_samples++ == 0) {
    service_ns_avg = ran;
    service_cost_avg = cost;
    return;
  }
  service_ns_avg += kServiceAlpha * (ran - service_ns_avg);
  service_cost_avg += kServiceAlpha * (cost - service_cost_avg);
}

void Scheduler::State::record_completion(const Entry& entry, std::int64_t actual_cost,
                                         Duration load, Time now) {
  const std::size_t slot = completion_count % kRateWindow;
  completions[slot] = now;
  completion_costs[slot] =
      static_cast<double>(actual_cost >= 0 ? std::max<std::int64_t>(actual_cost, 1) : entry.cost);
  completion_loads[slot] = {entry.admitted, entry.admitted + std::max(Duration{}, load)};
  ++completion_count;
  // Throughput over the window's completions since the busy period began. When the ring has
  // dropped older completions of this period, the oldest kept one opens the window instead (its
  // own work was done before it).
  const std::size_t n = std::min(completion_count, kRateWindow);
  const std::size_t first = completion_count - n;
  Time start = busy_since;
  std::size_t from = first;
  if (completion_count > n && completions[first % kRateWindow] > busy_since) {
    start = completions[first % kRateWindow];
    from = first + 1;
  }
  double tokens = 0;
  std::array<std::pair<Time, Time>, kRateWindow> loading{};
  std::size_t loads = 0;
  std::size_t samples = 0;
  for (std::size_t i = from; i < completion_count; ++i) {
    if (completions[i % kRateWindow] < start) continue;  // an earlier busy period
    tokens += completion_costs[i % kRateWindow];
    const auto [from_time, to_time] = completion_loads[i % kRateWindow];
    if (to_time > from_time)
      loading[loads++] = {std::max(from_time, start), std::min(to_time, now)};
    ++samples;
  }
  // Time spent loading: the union of the load intervals within [start, now].
  std::sort(loading.begin(), loading.begin() + static_cast<std::ptrdiff_t>(loads));
  Duration loaded{};
  Time covered = start;
  for (std::size_t i = 0; i < loads; ++i) {
    const Time begin = std::max(loading[i].first, covered);
    if (loading[i].second > begin) {
      loaded += loading[i].second - begin;
      covered = loading[i].second;
    }
  }
  const double seconds = std::chrono::duration<double>(now - start - loaded).count();
  if (samples >= kMinWorkSamples && tokens > 0 && seconds > 0) work_throughput = tokens / seconds;
}

Scheduler::Scheduler(SchedulerConfig config, bool draining, std::unique_ptr<State> state)
    : config_(std::move(config)), draining_(draining), state_(std::move(state)) {}

QueueOrder Scheduler::queue_order(Time now, std::size_t limit) const {
  const State& state = *state_;
  QueueOrder order;
  order.computed_at = now;
  order.parked = state.parked;
  if (state.parked == 0 || limit == 0 || state.parked > kMaxOrderedParked) return order;

  // Time per token of cost (0 while unknown: running requests then end in admission order).
  const bool timed = state.service_samples >= kMinWorkSamples && state.service_cost_avg > 0;
  const double ns_per_token = timed ? state.service_ns_avg / state.service_cost_avg : 0;
  auto service_of = [&](std::int64_t cost) {
    return Duration{static_cast<Duration::rep>(ns_per_token * static_cast<double>(cost))};
  };
  // Completions per second over the Retry-After window (retry_after_seconds()'s estimate).
  double rate = 0;
  if (const std::size_t n = std::min(state.completion_count, State::kRateWindow);
      n >= kMinWorkSamples) {
    const Time newest = state.completions[(state.completion_count - 1) % State::kRateWindow];
    const Time oldest = state.completions[(state.completion_count - n) % State::kRateWindow];
    const double seconds = std::chrono::duration<double>(std::max(newest, now) - oldest).count();
    if (seconds > 0) rate = static_cast<double>(n - 1) / seconds;
  }

  // Cost tokens run per second while busy (the work estimate).
  const double throughput = state.work_throughput;

  Scheduler sim(config_, draining_, state.clone());
  State& copy = *sim.state_;
  std::priority_queue<Running, std::vector<Running>, std::greater<>> running;
  for (EntryId e : copy.entries.ids()) {
    const Entry& entry = copy.entries[e];
    if (entry.state != EntryState::in_flight) continue;
    const Time finish = std::max(now, entry.admitted + service_of(entry.cost));
    // Work left: what its share of the throughput has not yet done since it was admitted.
    double work = static_cast<double>(entry.cost);
    if (throughput > 0 && state.in_flight > 0) {
      const double ran = std::chrono::duration<double>(now - entry.admitted).count();
      work = std::max(0.0, work - ran * throughput / static_cast<double>(state.in_flight));
    }
    running.push({finish, entry.admit_seq, Permit{State::handle(e, entry)}, work});
  }

  std::int64_t releases = 0;
  double released_work = 0;
  Time clock = now;
  std::vector<Admission> admitted;
  auto record = [&] {
    for (const Admission& a : admitted) {
      if (order.ordered >= static_cast<std::int64_t>(limit)) break;
      QueuePosition where{.position = order.ordered++, .completions_ahead = releases};
      if (timed) where.eta_service = clock - now;
      if (rate > 0) {
        where.eta_rate = std::chrono::duration_cast<Duration>(
            std::chrono::duration<double>(static_cast<double>(releases) / rate));
      }
      if (throughput > 0) {
        where.eta_work = std::chrono::duration_cast<Duration>(
            std::chrono::duration<double>(released_work / throughput));
      }
      order.positions.emplace(a.ticket.value, where);
      const EntryId e{static_cast<std::uint32_t>(a.permit.value & 0xffffffffu)};
      const Entry& entry = copy.entries[e];
      running.push({clock + service_of(entry.cost), entry.admit_seq, a.permit,
                    static_cast<double>(entry.cost)});
    }
    admitted.clear();
  };
  copy.dispatch(sim.config_, admitted, now);  // (normally nothing: the scheduler conserves work)
  record();
  while (order.ordered < static_cast<std::int64_t>(limit) && copy.parked > 0 && !running.empty()) {
    const Running next = running.top();
    running.pop();
    clock = std::max(clock, next.finish);
    sim.release(next.permit, -1, clock, admitted);
    ++releases;
    released_work += next.work;
    record();
  }
  if (timed && order.ordered < order.parked) order.horizon = clock - now;
  return order;
}

}  // namespace sluice::core
