// A backend's health state machine. See health.hpp.
#include "sluice/core/health.hpp"

#include <algorithm>

namespace sluice::core {

std::string validate(const HealthPolicy& policy) {
  if (policy.unhealthy_after < 1) return "unhealthy_after must be >= 1";
  if (policy.eject_after < 1) return "eject_after must be >= 1";
  if (policy.base_ejection <= Duration::zero()) return "base_ejection must be > 0";
  if (policy.max_ejection < policy.base_ejection) return "max_ejection must be >= base_ejection";
  return "";
}

std::string_view name(Health::State state) {
  switch (state) {
    case Health::State::unknown:
      return "unknown";
    case Health::State::up:
      return "up";
    case Health::State::down:
      return "down";
    case Health::State::ejected:
      return "ejected";
  }
  return "unknown";
}

HealthView Health::view(Time now) const {
  HealthView v;
  v.state = state_;
  v.reason = reason_;
  if (state_ == State::ejected && ejected_until_ > now) v.ejected_for = ejected_until_ - now;
  v.ejections = multiplier_;
  v.failed_checks = failed_checks_;
  v.failed_requests = failed_requests_;
  return v;
}

bool Health::set(State next, std::string why) {
  const bool was_up = up();
  state_ = next;
  reason_ = next == State::up ? std::string() : std::move(why);
  return was_up != up();
}

bool Health::check_passed(Time now) {
  failed_checks_ = 0;
  if (state_ == State::ejected && now < ejected_until_) return false;  // serves its time
  if (state_ == State::up) {
    multiplier_ = std::max(0, multiplier_ - 1);  // forgiven, one check at a time
    return false;
  }
  failed_requests_ = 0;
  return set(State::up, "");
}

bool Health::check_failed(Time /*now*/, std::string why) {
  ++failed_checks_;
  if (state_ == State::ejected) {
    reason_ = "ejected; health check: " + why;
    return false;
  }
  if (state_ == State::up && failed_checks_ < policy_.unhealthy_after) return false;
  return set(State::down, "health check: " + why);
}

bool Health::request_failed(Time now, std::string why) {
  if (state_ != State::up) return false;
  if (++failed_requests_ < policy_.eject_after) return false;
  failed_requests_ = 0;
  Duration ejection = policy_.base_ejection;
  for (int i = 0; i < multiplier_ && ejection < policy_.max_ejection; ++i)
    ejection *= 2;
  ejection = std::min(ejection, policy_.max_ejection);
  ++multiplier_;
  ejected_until_ = now + ejection;
  return set(State::ejected,
             std::to_string(policy_.eject_after) + " requests in a row failed (" + why + ")");
}

bool Health::request_reached(Time /*now*/) {
  failed_requests_ = 0;
  return false;
}

}  // namespace sluice::core
