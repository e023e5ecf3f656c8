// Congestion of a residency; see congestion.hpp.
#include "sluice/core/congestion.hpp"

#include <array>
#include <bit>
#include <cassert>
#include <limits>

namespace sluice::core {

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

}  // namespace sluice::core
