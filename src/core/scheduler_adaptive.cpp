// The scheduler's adaptive limits: one ConcurrencyController per backend configured with
// `"max_concurrency": "auto"`, fed by release() and applied to the fleet's per-backend limit.
// See scheduler.hpp ("Adaptive limits") and concurrency.hpp for the controller itself.
#include "scheduler_state.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::core {

void Scheduler::State::sync_adaptive(const SchedulerConfig& config) {
  std::vector<std::optional<ConcurrencyController>> next(fleet.size());
  for (const BackendSpec& spec : effective_backends(config)) {
    const std::optional<BackendId> id = fleet.find(spec.name);
    if (!id || !spec.auto_concurrency) continue;
    if (*id < adaptive.size() && adaptive[*id]) {
      next[*id] = std::move(adaptive[*id]);  // same backend: keep what it learned
      next[*id]->set_spec(*spec.auto_concurrency);
    } else {
      next[*id].emplace(*spec.auto_concurrency);
    }
    // The fleet took the spec's number; the limit in force is the controller's.
    fleet.set_max_concurrency(*id, next[*id]->limit());
  }
  adaptive = std::move(next);
}

double Scheduler::State::adaptive_backlog(BackendId b) const {
  return b < adaptive.size() && adaptive[b] ? fleet.backlog(b) : 0;
}

void Scheduler::State::learn_limit(BackendId b, const Entry& entry, const Timings& timings,
                                   Time now) {
  if (b >= adaptive.size() || !adaptive[b] || !timings.time_to_first_byte) return;
  // The mean number in flight on b over the request's life, itself included (it was released
  // from the fleet just before: the integral up to now still counts it).
  const double life = std::chrono::duration<double>(now - entry.admitted).count();
  const double mean_in_flight =
      life > 0 ? (fleet.in_flight_seconds(b, now) - entry.backend_load_mark) / life
               : static_cast<double>(entry.backend_in_flight);
  ConcurrencySample sample{.in_flight = entry.backend_in_flight,
                           .backlog = entry.backend_backlog,
                           .mean_in_flight = mean_in_flight,
                           .time_to_first_byte = *timings.time_to_first_byte,
                           .total = timings.response_time.value_or(*timings.time_to_first_byte),
                           .load_duration = timings.load_duration,
                           .prompt_eval_duration = timings.prompt_eval_duration,
                           .eval_duration = timings.eval_duration,
                           .eval_count = timings.eval_count,
                           .streamed = timings.streamed};
  std::optional<LimitChange> change = adaptive[b]->observe(sample, now);
  for (std::string& text : adaptive[b]->take_notes()) {
    limit_notes.push_back(BackendLimitNote{
        .backend = b, .backend_name = fleet.view(b).name, .text = std::move(text)});
    if (limit_notes.size() > 1024) limit_notes.erase(limit_notes.begin());  // nobody takes
  }
  if (!change) return;
  fleet.set_max_concurrency(b, change->to);
  // More room on b: what it may serve is judged again (dispatch follows in release()).
  if (change->to > change->from) release_holds_for(b);
  limit_changes.push_back(
      BackendLimitChange{.backend = b, .backend_name = fleet.view(b).name, .change = *change});
  if (limit_changes.size() > 1024) limit_changes.erase(limit_changes.begin());  // nobody takes
}

std::vector<BackendLimitChange> Scheduler::take_limit_changes() {
  return std::exchange(state_->limit_changes, {});
}

std::vector<BackendLimitNote> Scheduler::take_limit_notes() {
  return std::exchange(state_->limit_notes, {});
}

}  // namespace sluice::core
