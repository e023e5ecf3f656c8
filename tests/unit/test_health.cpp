// A backend's health state machine: active checks, passive ejection with backoff.
#include <doctest/doctest.h>

#include "sluice/core/health.hpp"

using namespace std::chrono_literals;
using sluice::core::at;
using sluice::core::Health;
using sluice::core::HealthPolicy;
using State = Health::State;

TEST_CASE("health: unknown until the first check; checks take it down and back") {
  Health h;
  CHECK(h.state() == State::unknown);
  CHECK_FALSE(h.up());
  CHECK(h.reason() == "not checked yet");
  CHECK(h.check_passed(at(0s)));
  CHECK(h.up());
  CHECK(h.reason().empty());
  CHECK_FALSE(h.check_failed(at(1s), "connection refused"));  // one failure is not enough
  CHECK(h.up());
  CHECK(h.check_failed(at(2s), "connection refused"));
  CHECK(h.state() == State::down);
  CHECK(h.reason() == "health check: connection refused");
  CHECK_FALSE(h.check_failed(at(3s), "timeout"));
  CHECK(h.check_passed(at(4s)));
  CHECK(h.up());
  // A passed check resets the count of failures.
  CHECK_FALSE(h.check_failed(at(5s), "x"));
  CHECK_FALSE(h.check_passed(at(6s)));
  CHECK_FALSE(h.check_failed(at(7s), "x"));
  CHECK(h.up());
}

TEST_CASE("health: a first failed check means down at once") {
  Health h;
  CHECK_FALSE(h.check_failed(at(0s), "refused"));  // was not up: no change of up()
  CHECK(h.state() == State::down);
}

TEST_CASE("health: consecutive failed requests eject, for a time that doubles") {
  Health h(HealthPolicy{.eject_after = 3, .base_ejection = 10s, .max_ejection = 35s});
  h.check_passed(at(0s));
  CHECK_FALSE(h.request_failed(at(1s), "connect: refused"));
  CHECK_FALSE(h.request_failed(at(1s), "connect: refused"));
  h.request_reached(at(1s));  // a success in between starts the count again
  CHECK_FALSE(h.request_failed(at(2s), "connect: refused"));
  CHECK_FALSE(h.request_failed(at(2s), "connect: refused"));
  CHECK(h.request_failed(at(2s), "connect: refused"));
  CHECK(h.state() == State::ejected);
  CHECK(h.reason() == "3 requests in a row failed (connect: refused)");
  CHECK(h.ejected_until() == at(12s));
  CHECK_FALSE(h.check_passed(at(11s)));  // serving its ejection
  CHECK_FALSE(h.up());
  CHECK(h.check_passed(at(12s)));
  // Ejected again at once: twice as long.
  for (int i = 0; i < 3; ++i)
    h.request_failed(at(13s), "timeout");
  CHECK(h.ejected_until() == at(33s));
  CHECK(h.check_passed(at(33s)));
  for (int i = 0; i < 3; ++i)
    h.request_failed(at(34s), "timeout");
  CHECK(h.ejected_until() == at(34s) + 35s);  // capped at max_ejection
  CHECK(h.ejections() == 3);
  CHECK(h.check_passed(at(70s)));
  // Successful checks forgive one ejection each.
  h.check_passed(at(75s));
  h.check_passed(at(80s));
  CHECK(h.ejections() == 1);
  for (int i = 0; i < 3; ++i)
    h.request_failed(at(90s), "timeout");
  CHECK(h.ejected_until() == at(110s));
}

TEST_CASE("health: a failed check while ejected keeps it ejected and says why") {
  Health h(HealthPolicy{.eject_after = 1});
  h.check_passed(at(0s));
  CHECK(h.request_failed(at(1s), "reset"));
  CHECK_FALSE(h.check_failed(at(2s), "refused"));
  CHECK(h.state() == State::ejected);
  CHECK(h.reason() == "ejected; health check: refused");
  CHECK_FALSE(h.request_failed(at(3s), "reset"));  // not up: requests do not count
}

TEST_CASE("health: policy validation") {
  using sluice::core::validate;
  CHECK(validate(HealthPolicy{}) == "");
  CHECK(validate(HealthPolicy{.unhealthy_after = 0}) == "unhealthy_after must be >= 1");
  CHECK(validate(HealthPolicy{.eject_after = 0}) == "eject_after must be >= 1");
  CHECK(validate(HealthPolicy{.base_ejection = 0s}) == "base_ejection must be > 0");
  CHECK(validate(HealthPolicy{.base_ejection = 10s, .max_ejection = 5s}) ==
        "max_ejection must be >= base_ejection");
}

TEST_CASE("health: view() shows the state, the ejection left and the failure counts") {
  Health h(HealthPolicy{.unhealthy_after = 2, .eject_after = 2, .base_ejection = 10s});
  sluice::core::HealthView v = h.view(at(0s));
  CHECK(v.state == State::unknown);
  CHECK(sluice::core::name(v.state) == "unknown");
  CHECK(v.reason == "not checked yet");
  h.check_passed(at(0s));
  h.check_failed(at(1s), "timeout");
  v = h.view(at(1s));
  CHECK(sluice::core::name(v.state) == "up");
  CHECK(v.failed_checks == 1);
  h.request_failed(at(2s), "connect: refused");
  CHECK(h.view(at(2s)).failed_requests == 1);
  h.request_failed(at(2s), "connect: refused");
  v = h.view(at(5s));
  CHECK(sluice::core::name(v.state) == "ejected");
  CHECK(v.ejected_for == 7s);
  CHECK(v.ejections == 1);
  CHECK(v.failed_requests == 0);             // the ejection starts the count again
  CHECK(h.view(at(20s)).ejected_for == 0s);  // served; waits for a check
}
