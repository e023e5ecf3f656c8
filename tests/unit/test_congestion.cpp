// The congestion of a residency: the largest demand per slot that a set of models forces onto
// the backends holding them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "sluice/core/congestion.hpp"

using sluice::core::congestion;
using sluice::core::ModelDemand;

TEST_CASE("congestion: one model over the slots of its holders") {
  const std::vector<std::int64_t> slots = {2, 2, 4};
  CHECK(congestion({}, slots) == 0);
  const std::vector<ModelDemand> one = {{.demand = 6, .holders = 0b001}};
  CHECK(congestion(one, slots) == doctest::Approx(3));
  const std::vector<ModelDemand> spread = {{.demand = 6, .holders = 0b111}};
  CHECK(congestion(spread, slots) == doctest::Approx(0.75));
}

TEST_CASE("congestion: the set that binds, not the busiest model alone") {
  // m1 on a and b, m2 on b only. Alone m1 carries 8 / 4 = 2 per slot and m2 3 / 2 = 1.5;
  // together they share a and b: 11 / 4 = 2.75, which is what some slot must carry.
  const std::vector<std::int64_t> slots = {2, 2, 2};
  const std::vector<ModelDemand> shared = {{.demand = 8, .holders = 0b011},
                                           {.demand = 3, .holders = 0b010}};
  CHECK(congestion(shared, slots) == doctest::Approx(2.75));
  // Moving m2 to c separates them: m1 2, m2 1.5.
  const std::vector<ModelDemand> apart = {{.demand = 8, .holders = 0b011},
                                          {.demand = 3, .holders = 0b100}};
  CHECK(congestion(apart, slots) == doctest::Approx(2));
}

TEST_CASE("congestion: a demanded model that nobody holds is infinitely congested") {
  const std::vector<std::int64_t> slots = {2};
  const std::vector<ModelDemand> orphan = {{.demand = 1, .holders = 0b001},
                                           {.demand = 1, .holders = 0}};
  CHECK(std::isinf(congestion(orphan, slots)));
  // A holder past the end of `slots` (or with no slots: down) holds nothing.
  const std::vector<ModelDemand> gone = {{.demand = 1, .holders = 0b10}};
  CHECK(std::isinf(congestion(gone, slots)));
}

TEST_CASE("congestion: agrees with a brute force over every set") {
  // Small random instances: the DP over subsets equals the direct maximum.
  std::uint64_t seed = 12345;
  auto next = [&] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 33;
  };
  for (int round = 0; round < 500; ++round) {
    const std::size_t backends = 1 + next() % 5, models = 1 + next() % 6;
    std::vector<std::int64_t> slots(backends);
    for (auto& s : slots)
      s = static_cast<std::int64_t>(next() % 4);
    std::vector<ModelDemand> demand(models);
    for (auto& d : demand) {
      d.demand = static_cast<double>(1 + next() % 9);
      d.holders = next() % (1u << backends);
    }
    double expected = 0;
    for (std::size_t set = 1; set < (std::size_t{1} << models); ++set) {
      double sum = 0;
      sluice::core::BackendSet holders = 0;
      for (std::size_t i = 0; i < models; ++i) {
        if ((set >> i) & 1) {
          sum += demand[i].demand;
          holders |= demand[i].holders;
        }
      }
      std::int64_t capacity = 0;
      for (std::size_t b = 0; b < backends; ++b) {
        if ((holders >> b) & 1) capacity += slots[b];
      }
      expected = capacity == 0 ? INFINITY : std::max(expected, sum / static_cast<double>(capacity));
      if (std::isinf(expected)) break;
    }
    const double got = congestion(demand, slots);
    if (std::isinf(expected)) {
      CHECK(std::isinf(got));
    } else {
      CHECK(got == doctest::Approx(expected));
    }
  }
}
