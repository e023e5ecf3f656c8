// SplitMix64: a small, fast, deterministic generator and the few distributions the simulator,
// the load planner and request ids draw from. One definition, so a seed means the same sequence
// everywhere. Never used for anything secret.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>

namespace sluice::core {

/// Advances `state` by one SplitMix64 step and returns the mixed output.
constexpr std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() { return splitmix64(state_); }
  /// In [0, 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  /// In [0, n); n > 0.
  std::size_t below(std::size_t n) { return std::size_t(uniform() * double(n)) % n; }
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }
  /// Standard normal (Box-Muller; u1 in (0, 1] so the log is finite).
  double normal() {
    const double u1 = 1.0 - uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::uint64_t state_;
};

}  // namespace sluice::core
