// SplitMix64 (sluice/core/splitmix.hpp): the reference sequence, and the ranges of the
// distributions the simulator and the load planner draw from.
#include <doctest/doctest.h>

#include <cmath>

#include "sluice/core/splitmix.hpp"

using sluice::core::SplitMix64;

TEST_CASE("splitmix64 from seed 0 gives the reference sequence") {
  SplitMix64 rng(0);
  CHECK(rng.next() == 0xe220a8397b1dcdafULL);
  CHECK(rng.next() == 0x6e789e6aa1b965f4ULL);
  CHECK(rng.next() == 0x06c45d188009454fULL);
}

TEST_CASE("splitmix64 distributions stay in range and have the expected means") {
  SplitMix64 rng(42);
  double sum_uniform = 0, sum_exponential = 0, sum_normal = 0;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum_uniform += u;
    REQUIRE(rng.below(7) < 7u);
    const double e = rng.exponential(3.0);
    REQUIRE(std::isfinite(e));
    REQUIRE(e >= 0.0);
    sum_exponential += e;
    const double n = rng.normal();
    REQUIRE(std::isfinite(n));
    sum_normal += n;
  }
  CHECK(sum_uniform / kDraws == doctest::Approx(0.5).epsilon(0.01));
  CHECK(sum_exponential / kDraws == doctest::Approx(3.0).epsilon(0.02));
  CHECK(std::abs(sum_normal / kDraws) < 0.02);
}
