// Congestion of a residency (see congestion.hpp), and the fleet's use of it: whether a load is
// worth it (Fleet::worth_loading, see fleet.hpp "Staying warm").
#include "sluice/core/congestion.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <limits>
#include <vector>

namespace sluice::core {
namespace {

// A load that the demand does not ask for is not worth it: loading M on a busy backend must lower
// the fleet's congestion by at least this fraction (hysteresis against moving models back and
// forth as the queue's mix wobbles).
constexpr double kLoadGain = 0.2;

}  // namespace

double congestion(std::span<const ModelDemand> models, std::span<const std::int64_t> slots) {
  assert(models.size() <= kMaxCongestionModels);
  const std::size_t n = models.size();
  std::array<double, std::size_t{1} << kMaxCongestionModels> demand{};
  std::array<BackendSet, std::size_t{1} << kMaxCongestionModels> holders{};
  double worst = 0;
  for (std::size_t set = 1; set < (std::size_t{1} << n); ++set) {
    // Built from the set without its lowest model.
    const auto low = static_cast<std::size_t>(std::countr_zero(set));
    const std::size_t rest = set & (set - 1);
    demand[set] = demand[rest] + models[low].demand;
    holders[set] = holders[rest] | models[low].holders;
    std::int64_t capacity = 0;
    for (BackendSet h = holders[set]; h != 0; h &= h - 1) {
      const auto b = static_cast<std::size_t>(std::countr_zero(h));
      if (b < slots.size()) capacity += slots[b];
    }
    if (capacity <= 0) {
      if (demand[set] > 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    const double ratio = demand[set] / static_cast<double>(capacity);
    if (ratio > worst) worst = ratio;
  }
  return worst;
}

bool Fleet::worth_loading(BackendId b, ModelId m) const {
  const Backend& backend = backends_[b];
  // Nothing parked is warm on b: it would stay idle.
  std::int64_t warm_parked = 0;
  for (const Resident& r : backend.resident)
    warm_parked += parked_[r.model];
  if (warm_parked == 0) return true;
  const bool full = backend.resident.size() >= backend.resident_capacity;
  const Resident* victim = full ? eviction_victim(backend) : nullptr;
  if (full && !victim) return false;  // the load would wait for a busy model to go idle

  // The demand on the fleet: per model, requests parked or running, and who holds it.
  std::vector<ModelId> ids;
  std::vector<ModelDemand> demand;
  auto entry = [&](ModelId x) -> ModelDemand& {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == x) return demand[i];
    }
    ids.push_back(x);
    demand.push_back({});
    return demand.back();
  };
  std::vector<std::int64_t> slots(backends_.size(), 0);
  for (BackendId other = 0; other < backends_.size(); ++other) {
    if (!usable(other)) continue;
    slots[other] = backends_[other].spec.max_concurrency;
    for (const Resident& r : backends_[other].resident) {
      ModelDemand& d = entry(r.model);
      d.demand += static_cast<double>(r.in_flight);
      d.holders |= backend_bit(other);
    }
  }
  for (ModelId x = 1; x < parked_.size(); ++x) {
    if (parked_[x] > 0) entry(x).demand += static_cast<double>(parked_[x]);
  }
  entry(m);
  if (victim) entry(victim->model);
  // The most demanded models, with m and the victim always among them.
  std::vector<std::size_t> order(ids.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  auto must = [&](std::size_t i) { return ids[i] == m || (victim && ids[i] == victim->model); };
  std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    if (must(x) != must(y)) return must(x);
    return demand[x].demand > demand[y].demand;
  });
  std::vector<ModelDemand> before;
  std::vector<ModelDemand> after;
  for (std::size_t i : order) {
    if (before.size() == kMaxCongestionModels) break;
    if (demand[i].demand <= 0) continue;
    before.push_back(demand[i]);
    after.push_back(demand[i]);
    if (ids[i] == m) after.back().holders |= backend_bit(b);
    if (victim && ids[i] == victim->model) after.back().holders &= ~backend_bit(b);
  }
  return congestion(after, slots) < (1 - kLoadGain) * congestion(before, slots);
}

}  // namespace sluice::core
