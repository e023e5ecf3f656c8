// The scheduler's adaptive limits (issue 13): a backend with auto_concurrency takes its limit
// from its controller, fed by release(); lowering never cancels, raising admits at once; a
// reconfigure keeps what was learned. Time is fed in; nothing sleeps.
#include <doctest/doctest.h>

#include "scheduler_harness.hpp"

using namespace std::chrono_literals;
using sluice::core::AutoConcurrency;
using sluice::core::BackendSpec;
using sluice::core::Timings;
using sluice::test::Harness;
using sluice::test::Req;

namespace {

// A complete answer: 240 tokens in 4 s after a 50 ms prompt, having waited `wait` inside the
// backend before it.
Timings answer(std::chrono::milliseconds wait = 0ms) {
  return {.load_duration = 0ms,
          .eval_count = 240,
          .eval_duration = 4s,
          .prompt_eval_duration = 50ms,
          .time_to_first_byte = wait + 50ms + 4000ms / 240,
          .response_time = wait + 4050ms};
}

sluice::core::SchedulerConfig single_auto(AutoConcurrency bounds = {.min = 1, .max = 4}) {
  sluice::core::SchedulerConfig config;
  config.max_concurrency = bounds.max;
  config.auto_concurrency = bounds;
  return config;
}

std::int64_t limit_of(const Harness& h, std::size_t backend = 0) {
  return h.sched.snapshot(h.now).backends.at(backend).max_concurrency;
}

}  // namespace

TEST_CASE(
    "adaptive: a single upstream starts at min and raises its limit on answers that waited "
    "for nothing, admitting at once") {
  Harness h(single_auto());
  for (int i = 0; i < 10; ++i)
    h.submit(Req{});
  CHECK(limit_of(h) == 1);
  CHECK(h.running.size() == 1);
  // Three answers at 1 in flight that did not wait: probe 2, and a parked request runs now.
  for (int i = 0; i < 2; ++i) {
    h.now += 5s;
    h.finish(h.running.begin()->first, -1, answer());
  }
  CHECK(h.running.size() == 1);
  h.now += 5s;
  h.finish(h.running.begin()->first, -1, answer());
  CHECK(limit_of(h) == 2);
  CHECK(h.running.size() == 2);
  const auto changes = h.sched.take_limit_changes();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].backend_name == "default");
  CHECK(changes[0].change.from == 1);
  CHECK(changes[0].change.to == 2);
  CHECK(changes[0].change.reason.find("probing") == 0);
  CHECK(h.sched.take_limit_changes().empty());  // taken
  const auto view = h.sched.snapshot(h.now).backends[0].auto_concurrency;
  REQUIRE(view);
  CHECK(view->limit == 2);
  CHECK(view->probing);
  // Each sample carries the queue it left behind (0 for the first, admitted at once, then 8 and
  // 7 of the 10) and ran alone all its life (so its speed counts at level 1).
  REQUIRE(!view->levels.empty());
  CHECK(view->levels[0].in_flight == 1);
  CHECK(view->levels[0].median_backlog == doctest::Approx(7));
  CHECK(view->levels[0].tokens_per_second == doctest::Approx(60));
}

TEST_CASE("adaptive: lowering the limit cancels nothing; admissions wait until in-flight drops") {
  std::vector<BackendSpec> backends{
      {.name = "gpu-a", .max_concurrency = 1, .auto_concurrency = AutoConcurrency{.max = 8}}};
  sluice::core::SchedulerConfig config;
  config.backends = backends;
  config.max_concurrency = 8;
  Harness h(config);
  h.set_up(0, true);
  for (int i = 0; i < 20; ++i)
    h.submit(Req{});
  // Climb: three answers at each level that waited for nothing (throughput grows with them).
  for (int step = 0; step < 40 && limit_of(h) < 4; ++step) {
    h.now += 5s;
    h.finish(h.running.begin()->first, -1, answer());
  }
  REQUIRE(limit_of(h) == 4);
  REQUIRE(h.running.size() == 4);
  h.sched.take_limit_changes();
  // Answers now say they waited 2 s inside the backend (the oldest two ran at 3 in flight): two
  // of them are a pattern. The limit drops, by Little's law to 3 x 4.05 / 6.05 = 2. Nobody
  // running is cancelled; new admissions wait until in-flight is below the new limit.
  h.now += 1s;
  h.finish(h.running.begin()->first, -1, answer(2000ms));  // in flight: 4 -> 3, refilled to 4
  CHECK(h.running.size() == 4);
  h.now += 1s;
  h.finish(h.running.begin()->first, -1, answer(2000ms));
  CHECK(limit_of(h) == 2);
  CHECK(h.running.size() == 3);  // the one that ended is not replaced; the other three run on
  h.now += 1s;
  h.finish(h.running.begin()->first, -1, answer());
  CHECK(h.running.size() == 2);  // at the limit: nothing admitted
  h.now += 1s;
  h.finish(h.running.begin()->first, -1, answer());
  CHECK(h.running.size() == 2);  // below it: the next one runs
  auto changes = h.sched.take_limit_changes();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].backend_name == "gpu-a");
  CAPTURE(changes[0].change.reason);
  const std::string& reason = changes[0].change.reason;  // "... waited 1999 ms" (ns rounding)
  CHECK(reason.find("requests admitted at 3 in flight waited ") == 0);
  CHECK(reason.find(" ms inside the backend (p50 of 2 of 4 samples; 49% of their service time)") !=
        std::string::npos);
  CHECK(h.sched.check_invariants() == "");
}

TEST_CASE("adaptive: answers without a measured time to first byte teach nothing") {
  Harness h(single_auto());
  for (int i = 0; i < 5; ++i)
    h.submit(Req{});
  for (int i = 0; i < 4; ++i) {
    h.now += 5s;
    Timings untimed = answer();
    untimed.time_to_first_byte.reset();  // a failed or cut answer
    h.finish(h.running.begin()->first, -1, untimed);
  }
  CHECK(limit_of(h) == 1);
  CHECK(h.sched.take_limit_changes().empty());
}

TEST_CASE(
    "adaptive: a reconfigure keeps the learned limit, clamps it to new bounds, and a "
    "number replaces it") {
  Harness h(single_auto({.min = 1, .max = 8}));
  for (int i = 0; i < 30; ++i)
    h.submit(Req{});
  for (int step = 0; step < 40 && limit_of(h) < 3; ++step) {
    h.now += 5s;
    h.finish(h.running.begin()->first, -1, answer());
  }
  REQUIRE(limit_of(h) == 3);
  std::vector<sluice::core::Admission> admitted;
  // Same bounds (another setting changed): still 3, not back to min.
  auto same = single_auto({.min = 1, .max = 8});
  same.max_queue = 500;
  CHECK(h.sched.reconfigure(same, h.now, admitted) == "");
  CHECK(limit_of(h) == 3);
  // Narrower bounds clamp it.
  CHECK(h.sched.reconfigure(single_auto({.min = 1, .max = 2}), h.now, admitted) == "");
  CHECK(limit_of(h) == 2);
  CHECK(h.running.size() == 3);  // nothing cancelled
  // A fixed number: the limit is that number, and no controller is left.
  sluice::core::SchedulerConfig fixed;
  fixed.max_concurrency = 5;
  CHECK(h.sched.reconfigure(fixed, h.now, admitted) == "");
  h.absorb(admitted);
  CHECK(limit_of(h) == 5);
  CHECK_FALSE(h.sched.snapshot(h.now).backends[0].auto_concurrency);
  CHECK(h.running.size() == 5);
}

TEST_CASE("adaptive: invalid bounds are refused, naming the field") {
  auto config = single_auto({.min = 3, .max = 2});
  CHECK(validate(config) == "auto_concurrency.max must be >= min (3)");
  sluice::core::SchedulerConfig fleet;
  fleet.backends = {{.name = "a", .auto_concurrency = AutoConcurrency{.min = 0}}};
  CHECK(validate(fleet) == "backends[0].auto_concurrency.min must be >= 1");
}
