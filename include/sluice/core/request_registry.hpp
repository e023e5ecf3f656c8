// The requests sluice can tell a client about, by request id (GET /sluice/requests/{id}): parked,
// running, and recently finished ones. Pure: no clock (time is an argument), no I/O.
//
// A request is registered when it asks for admission (state parked until the gate parks or
// admits it), becomes running when admitted and finished when it ends. Finished requests are
// kept in a ring, at most kMaxFinished and for at most kFinishedFor; older ones are forgotten.
// Live requests are at most kMaxLive (one per client connection in practice; beyond it a request
// is simply not registered, and its lookups answer 404).
//
// Ids are the clients' X-Request-Id when they sent one, so they need not be unique: each id
// indexes at most kMaxPerId records, newest first, and a lookup returns the newest one the
// caller may read (its owner: the API key's name; "" when keys are off).
//
// Handles carry a generation: a stale handle (its record forgotten) is ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/core/scheduler.hpp"
#include "sluice/core/time.hpp"

namespace sluice::core {

enum class RequestState : std::uint8_t { parked, running, finished };

/// "parked", "running", "finished".
std::string_view state_name(RequestState state);

struct RequestRecord {
  std::string id;
  std::string owner;     ///< the API key's name; "" when keys are off
  std::string workload;  ///< its workload's name
  RequestState state = RequestState::parked;
  Time arrived{};   ///< when it asked for admission
  Time admitted{};  ///< running / finished: when it was admitted
  Time finished{};  ///< finished: when it ended
  Ticket ticket;    ///< parked: its ticket in the scheduler (none before the gate parked it)
  /// parked: the caller's count of queue events when it parked (which cached queue order is
  /// recent enough to know it; net::WaitingBoard).
  std::uint64_t epoch = 0;
  bool ran = false;  ///< it was admitted (a finished request may never have run)

  /// Time spent waiting for admission: until now while parked, else until admitted.
  Duration queued(Time now) const;
};

class RequestRegistry {
 public:
  static constexpr std::size_t kMaxLive = 200'000;
  static constexpr std::size_t kMaxFinished = 4096;
  static constexpr Duration kFinishedFor = std::chrono::minutes(5);
  static constexpr std::size_t kMaxPerId = 8;

  struct Handle {
    std::uint32_t slot = UINT32_MAX;
    std::uint32_t generation = 0;
    explicit operator bool() const { return slot != UINT32_MAX; }
  };

  /// Registers a request asking for admission; an empty handle when kMaxLive are live.
  Handle start(std::string_view id, std::string_view owner, std::string_view workload, Time now);
  /// The gate parked it under `ticket` (again, after a requeue: state parked again).
  void parked(Handle handle, Ticket ticket, std::uint64_t epoch = 0);
  /// It was admitted.
  void running(Handle handle, Time now);
  /// It ended (answered, rejected, timed out or its client left); kept for kFinishedFor.
  void finish(Handle handle, Time now);

  struct Lookup {
    const RequestRecord* record = nullptr;  ///< the newest readable record of the id
    bool forbidden = false;                 ///< records exist, none readable by the caller
  };
  /// The newest record of `id` that `owner` may read (nullopt: the caller may read any, e.g.
  /// the admin token, or keys are off). Finished records older than kFinishedFor are absent.
  Lookup find(std::string_view id, std::optional<std::string_view> owner, Time now) const;

  /// Every parked record (for /admin/state; O(live)).
  std::vector<const RequestRecord*> parked_records() const;

  std::size_t live() const { return live_; }
  std::size_t finished() const { return finished_.size(); }

 private:
  struct Slot {
    RequestRecord record;
    std::uint32_t generation = 1;
    bool used = false;
  };
  RequestRecord* resolve(Handle handle);
  void forget(std::uint32_t slot);
  void prune(Time now);

  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::unordered_map<std::string, std::vector<std::uint32_t>> by_id_;  // newest last
  std::deque<std::uint32_t> finished_;                                 // oldest first
  std::size_t live_ = 0;
};

/// The parked requests of `registry` with their place in `order`, sorted by workload then
/// position, at most `per_workload` of each workload (the first in order).
std::vector<WaitingView> waiting_views(const RequestRegistry& registry, const QueueOrder& order,
                                       Time now, std::size_t per_workload);

}  // namespace sluice::core
