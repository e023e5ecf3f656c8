// How long a request takes where (see fleet.hpp, "Choice by expected finish"), and waiting for
// a faster slot: whether a busy backend's next slot finishes a request sooner than the free
// slot placement found for it.
#include <algorithm>
#include <bit>
#include <optional>
#include <vector>

#include "sluice/core/fleet.hpp"

namespace sluice::core {
namespace {

// The busy backend must finish the request at least this fraction sooner than the free one: the
// estimates (decode speed, the expected ends of requests in flight) are rough, and a request
// that waits for a near tie gains nothing and may lose the slot it had.
constexpr double kFasterBy = 0.2;
// And its streams must decode at least this many times as fast: a backend's learned speed mixes
// streams that ran alone and beside others, so equal backends differ by up to ~1.4x (60 vs 42
// tokens/s in the simulator) without being faster; a GPU at half speed is 2x.
constexpr double kFasterStreams = 1.5;

}  // namespace

Duration Fleet::service_time(const Backend& backend, std::int64_t cost, std::int64_t beside) const {
  const double seconds = static_cast<double>(std::max<std::int64_t>(cost, 1)) /
                         std::max(backend.tokens_per_second, 1e-3);
  const double load = 1.0 + static_cast<double>(std::max<std::int64_t>(beside, 0)) /
                                static_cast<double>(backend.spec.max_concurrency);
  return Duration(static_cast<Duration::rep>(std::min(seconds * load, 1e6) * 1e9));
}

Duration Fleet::expected_finish(BackendId b, ModelId m, std::int64_t cost,
                                std::optional<std::int64_t> beside) const {
  const Backend& backend = backends_[b];
  const Duration service = service_time(backend, cost, beside.value_or(backend.in_flight));
  Duration finish = service;
  if (m == kUnlistedModel || resident_on(b, m)) return finish;
  finish += load_time(b, m);
  if (backend.resident.size() < backend.resident_capacity) return finish;
  const Resident* victim = eviction_victim(backend);
  if (!victim) return finish + service;  // every resident model busy: the load waits for one
  const ModelId v = victim->model;
  if (parked_[v] > 0) {
    bool elsewhere = false;
    for (BackendId other = 0; other < backends_.size() && !elsewhere; ++other)
      elsewhere = other != b && usable(other) && resident_on(other, v);
    if (!elsewhere) finish += load_time(b, v);
  }
  return finish;
}

std::optional<BackendId> Fleet::faster_slot(ModelId m, std::int64_t cost, BackendId here,
                                            Duration waited, Time now) const {
  if (!model_aware_) return std::nullopt;  // least-loaded placement waits for nothing
  // Only speed: whether to wait for a warm slot or load is choose()'s rule (staying warm).
  if (m != kUnlistedModel && !resident_on(here, m)) return std::nullopt;
  const Duration served_here = expected_finish(here, m, cost);
  // Rent-or-buy: it waits at most as long as the free slot would take to serve it.
  if (waited >= served_here) return std::nullopt;
  const auto bar = std::chrono::duration_cast<Duration>(served_here * (1 - kFasterBy));
  const BackendSet busy = eligible(m) & ~free_slots() & ~backend_bit(here);
  std::optional<BackendId> best;
  Duration best_finish = bar;
  std::vector<Time> ends;
  for (BackendSet rest = busy; rest != 0; rest &= rest - 1) {
    const auto b = static_cast<BackendId>(std::countr_zero(rest));
    const Backend& backend = backends_[b];
    if (backend.ends.empty() || (m != kUnlistedModel && !resident_on(b, m)) ||
        backend.tokens_per_second < kFasterStreams * backends_[here].tokens_per_second)
      continue;
    // Its next slot frees when the (in_flight - max_concurrency + 1)-th request ends: the
    // first, unless its limit was lowered below what runs there.
    const auto k = static_cast<std::size_t>(
        std::clamp<std::int64_t>(backend.in_flight - backend.spec.max_concurrency, 0,
                                 static_cast<std::int64_t>(backend.ends.size()) - 1));
    Time next = *std::min_element(backend.ends.begin(), backend.ends.end());
    if (k > 0) {
      ends = backend.ends;
      std::nth_element(ends.begin(), ends.begin() + static_cast<std::ptrdiff_t>(k), ends.end());
      next = ends[k];
    }
    const Duration wait = std::max(next - now, Duration{});
    // Once that slot frees it runs beside the others still there.
    const Duration finish = wait + expected_finish(b, m, cost, backend.spec.max_concurrency - 1);
    if (finish < best_finish) {
      best = b;
      best_finish = finish;
    }
  }
  return best;
}

}  // namespace sluice::core
