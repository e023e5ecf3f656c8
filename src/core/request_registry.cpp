// The requests sluice can tell a client about (see request_registry.hpp).
#include "sluice/core/request_registry.hpp"

#include <algorithm>

namespace sluice::core {

std::string_view state_name(RequestState state) {
  switch (state) {
    case RequestState::parked:
      return "parked";
    case RequestState::running:
      return "running";
    case RequestState::finished:
      return "finished";
  }
  return "parked";
}

Duration RequestRecord::queued(Time now) const {
  const Time until = ran ? admitted : state == RequestState::finished ? finished : now;
  return std::max(Duration{}, until - arrived);
}

RequestRegistry::Handle RequestRegistry::start(std::string_view id, std::string_view owner,
                                               std::string_view workload, Time now) {
  prune(now);
  if (live_ >= kMaxLive) return {};
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[slot];
  s.used = true;
  s.record = RequestRecord{.id = std::string(id),
                           .owner = std::string(owner),
                           .workload = std::string(workload),
                           .arrived = now};
  ++live_;
  std::vector<std::uint32_t>& same = by_id_[s.record.id];
  if (same.size() >= kMaxPerId) {
    // The oldest record of this id leaves the index (its handle still works until it ends).
    same.erase(same.begin());
  }
  same.push_back(slot);
  return Handle{slot, s.generation};
}

RequestRecord* RequestRegistry::resolve(Handle handle) {
  if (!handle || handle.slot >= slots_.size()) return nullptr;
  Slot& s = slots_[handle.slot];
  if (!s.used || s.generation != handle.generation) return nullptr;
  return &s.record;
}

void RequestRegistry::parked(Handle handle, Ticket ticket, std::uint64_t epoch) {
  RequestRecord* record = resolve(handle);
  if (!record || record->state == RequestState::finished) return;
  record->state = RequestState::parked;
  record->ticket = ticket;
  record->epoch = epoch;
}

void RequestRegistry::running(Handle handle, Time now) {
  RequestRecord* record = resolve(handle);
  if (!record || record->state == RequestState::finished) return;
  record->state = RequestState::running;
  record->ticket = Ticket{};
  if (!record->ran) record->admitted = now;
  record->ran = true;
}

void RequestRegistry::finish(Handle handle, Time now) {
  RequestRecord* record = resolve(handle);
  if (!record || record->state == RequestState::finished) return;
  record->state = RequestState::finished;
  record->ticket = Ticket{};
  record->finished = now;
  --live_;
  finished_.push_back(handle.slot);
  prune(now);
}

void RequestRegistry::forget(std::uint32_t slot) {
  Slot& s = slots_[slot];
  auto it = by_id_.find(s.record.id);
  if (it != by_id_.end()) {
    std::erase(it->second, slot);
    if (it->second.empty()) by_id_.erase(it);
  }
  s.record = RequestRecord{};
  s.used = false;
  if (++s.generation == 0) s.generation = 1;
  free_.push_back(slot);
}

void RequestRegistry::prune(Time now) {
  while (!finished_.empty() && (finished_.size() > kMaxFinished ||
                                now - slots_[finished_.front()].record.finished > kFinishedFor)) {
    forget(finished_.front());
    finished_.pop_front();
  }
}

RequestRegistry::Lookup RequestRegistry::find(std::string_view id,
                                              std::optional<std::string_view> owner,
                                              Time now) const {
  Lookup lookup;
  auto it = by_id_.find(std::string(id));
  if (it == by_id_.end()) return lookup;
  for (auto slot = it->second.rbegin(); slot != it->second.rend(); ++slot) {
    const RequestRecord& record = slots_[*slot].record;
    if (record.state == RequestState::finished && now - record.finished > kFinishedFor) continue;
    if (owner && record.owner != *owner) {
      lookup.forbidden = true;
      continue;
    }
    lookup.record = &record;
    lookup.forbidden = false;
    return lookup;
  }
  return lookup;
}

std::vector<const RequestRecord*> RequestRegistry::parked_records() const {
  std::vector<const RequestRecord*> parked;
  for (const Slot& s : slots_) {
    if (s.used && s.record.state == RequestState::parked && s.record.ticket)
      parked.push_back(&s.record);
  }
  return parked;
}

}  // namespace sluice::core

namespace sluice::core {

std::vector<WaitingView> waiting_views(const RequestRegistry& registry, const QueueOrder& order,
                                       Time now, std::size_t per_workload) {
  std::vector<WaitingView> all;
  for (const RequestRecord* record : registry.parked_records()) {
    bool exact = false;
    const QueuePosition where = order.find(record->ticket.value, exact);
    all.push_back(WaitingView{.id = record->id,
                              .workload = record->workload,
                              .position = where.position,
                              .exact = exact,
                              .eta = where.eta(),
                              .queued = record->queued(now)});
  }
  std::sort(all.begin(), all.end(), [](const WaitingView& a, const WaitingView& b) {
    if (a.workload != b.workload) return a.workload < b.workload;
    if (a.position != b.position) return a.position < b.position;
    return a.queued > b.queued;  // among lower bounds: the longest waiting first
  });
  std::vector<WaitingView> kept;
  std::size_t same = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    same = i > 0 && all[i].workload == all[i - 1].workload ? same + 1 : 0;
    if (same < per_workload) kept.push_back(std::move(all[i]));
  }
  return kept;
}

}  // namespace sluice::core
