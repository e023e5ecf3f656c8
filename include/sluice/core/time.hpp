// Time as the scheduling core sees it: a number of nanoseconds since an arbitrary epoch chosen by
// the caller. The core never reads a clock (the build poisons the std clocks inside src/core);
// every function that needs the present takes `now` as a parameter. The I/O layer converts its
// steady clock with to_core_time(); tests simply count.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::core {

using Duration = std::chrono::nanoseconds;

/// Tag type for core time points. Deliberately has no now().
struct Epoch {
  using duration = Duration;
  using rep = Duration::rep;
  using period = Duration::period;
  using time_point = std::chrono::time_point<Epoch, Duration>;
  static constexpr bool is_steady = true;
};

using Time = Epoch::time_point;

/// A time point `d` after the epoch; handy in tests: at(5ms).
constexpr Time at(Duration d) {
  return Time{d};
}

/// A time that never comes (used for "no deadline").
constexpr Time never() {
  return Time{Duration::max()};
}

}  // namespace sluice::core
