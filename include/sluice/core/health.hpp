// Health of one backend: active checks and passive ejection, as a pure state machine.
//
// Two sources, as in Envoy's health checking and outlier detection:
//  * Active checks (GET /api/version every interval): `unhealthy_after` failures in a row take
//    the backend down; one success brings it back (unless it is serving an ejection).
//  * Passive ejection: `eject_after` requests in a row that could not reach the backend
//    (connect failure, reset or timeout before response headers) eject it for an ejection time
//    that doubles with each ejection (base_ejection, 2x, 4x ... up to max_ejection). When that
//    time has passed, the next successful active check returns it. Each successful check while
//    up undoes one doubling, so a backend that recovered for good is soon treated as new.
// A backend starts unknown (down) until its first check: nothing is sent to a backend nobody
// has heard from.
//
// Time is an argument; the caller runs the checks and reports their outcomes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/core/time.hpp"

namespace sluice::core {

struct HealthPolicy {
  int unhealthy_after = 2;  ///< failed active checks in a row that take a backend down, >= 1
  int eject_after = 3;      ///< failed requests in a row that eject it, >= 1
  Duration base_ejection = std::chrono::seconds(10);
  Duration max_ejection = std::chrono::minutes(5);
};

std::string validate(const HealthPolicy& policy);

struct HealthView;

class Health {
 public:
  enum class State : std::uint8_t { unknown, up, down, ejected };

  explicit Health(HealthPolicy policy = {}) : policy_(policy) {}

  void set_policy(const HealthPolicy& policy) { policy_ = policy; }
  State state() const { return state_; }
  bool up() const { return state_ == State::up; }
  /// Why it is not up, for logs and /admin/state ("" when up).
  const std::string& reason() const { return reason_; }
  /// While ejected: when a successful check may return it.
  Time ejected_until() const { return ejected_until_; }
  int ejections() const { return multiplier_; }
  int failed_checks() const { return failed_checks_; }      ///< active checks failed in a row
  int failed_requests() const { return failed_requests_; }  ///< requests failed in a row
  /// Everything above at `now`, for /admin/state.
  HealthView view(Time now) const;

  // Each returns true when up() changed.
  bool check_passed(Time now);
  bool check_failed(Time now, std::string why);
  bool request_failed(Time now, std::string why);
  bool request_reached(Time now);

 private:
  bool set(State next, std::string why);

  HealthPolicy policy_;
  State state_ = State::unknown;
  std::string reason_ = "not checked yet";
  int failed_checks_ = 0;
  int failed_requests_ = 0;
  int multiplier_ = 0;  ///< ejections not yet forgiven
  Time ejected_until_{};
};

/// "unknown", "up", "down", "ejected".
std::string_view name(Health::State state);

/// A backend's health as an operator sees it (Health::view()).
struct HealthView {
  Health::State state = Health::State::unknown;
  std::string reason;       ///< "" when up
  Duration ejected_for{};   ///< while ejected: time left before a check may return it, else 0
  int ejections = 0;        ///< ejections not yet forgiven (each doubles the next one)
  int failed_checks = 0;    ///< active checks failed in a row
  int failed_requests = 0;  ///< requests that could not reach it, in a row
};

}  // namespace sluice::core
