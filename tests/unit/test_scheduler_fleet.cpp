// The scheduler across a fleet of backends: eligibility, placement holds, fair order per
// backend, waits for a warm slot, failover, reconfigure; then a randomized model check whose
// invariants include work conservation per backend. Time is fed in; nothing sleeps.
#include <doctest/doctest.h>

#include <random>

#include "scheduler_harness.hpp"

using namespace sluice::test;
using sluice::core::at;
using sluice::core::BackendSpec;
using sluice::core::kDefaultLoadTime;
using sluice::core::RejectReason;

namespace {

SchedulerConfig fleet_config(std::vector<BackendSpec> backends, std::int64_t cap = 100) {
  SchedulerConfig config = paid_free_config(cap);
  config.backends = std::move(backends);
  return config;
}

// Two backends, each serving its own model with one slot: a serves m1, b serves m2.
SchedulerConfig split_fleet() {
  return fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                       {.name = "b", .max_concurrency = 1, .models = {"m2"}}});
}

void all_up(Harness& h) {
  for (sluice::core::BackendId b = 0; b < h.sched.fleet().size(); ++b)
    h.set_up(b, true);
}

}  // namespace

TEST_CASE("fleet scheduler: a request runs only where its model is served") {
  Harness h(split_fleet());
  all_up(h);
  int x = h.submit({.user = "x", .model = "m1"});
  CHECK(h.backend_of.at(x) == 0);
  int y = h.submit({.user = "y", .model = "m1"});
  CHECK(h.is_parked(y));  // a is full; b is free but does not serve m1
  int z = h.submit({.user = "z", .model = "m2"});
  CHECK(h.backend_of.at(z) == 1);  // the parked m1 request holds nobody back
  h.finish(z);
  CHECK(h.is_parked(y));
  h.finish(x);
  CHECK(h.backend_of.at(y) == 0);
}

TEST_CASE("fleet scheduler: a model nobody serves is refused; an unknown catalog serves all") {
  Harness h(split_fleet());
  all_up(h);
  h.submit({.model = "m3"});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
  CHECK(h.last.reason == RejectReason::model_not_found);
  CHECK(sluice::core::reason_name(RejectReason::model_not_found) == "model_not_found");

  Harness open(fleet_config({{.name = "a", .max_concurrency = 1}}));  // catalog not known yet
  open.set_up(0, true);
  open.submit({.model = "anything"});
  CHECK(open.last.kind == EnqueueResult::Kind::admitted);
  open.set_catalog(0, {"m1"});
  open.submit({.model = "anything"});
  CHECK(open.last.reason == RejectReason::model_not_found);
}

TEST_CASE("fleet scheduler: a request parked before any catalog was known follows its model") {
  // At start no backend was checked yet: nobody lists "m2" yet but both may serve it. The
  // request waits under its own model, and runs where the catalogs say m2 is, not nowhere.
  Harness h(
      fleet_config({{.name = "a", .max_concurrency = 1}, {.name = "b", .max_concurrency = 1}}));
  int x = h.submit({.user = "x", .timeout = 10s, .model = "m2"});
  CHECK(h.is_parked(x));
  h.set_catalog(0, {"m1"});
  h.set_catalog(1, {"m2"});
  CHECK(h.is_parked(x));
  h.set_up(0, true);
  CHECK(h.is_parked(x));  // a does not serve m2
  h.set_up(1, true);
  REQUIRE(h.is_running(x));
  CHECK(h.backend_of.at(x) == 1);
  // Names nobody lists, once every catalog is known, still share one id.
  CHECK(h.sched.fleet().model("m9") == sluice::core::kUnlistedModel);
}

TEST_CASE("fleet scheduler: no backend up = a waiting room until one comes up or time runs out") {
  Harness h(fleet_config({{.name = "a", .max_concurrency = 2, .models = {"m1"}}}));
  int x = h.submit({.user = "x", .timeout = 10s, .model = "m1"});
  CHECK(h.is_parked(x));  // a was never checked: nothing is sent to it
  h.set_up(0, true);
  CHECK(h.is_running(x));
  h.set_up(0, false);
  int y = h.submit({.user = "y", .timeout = 10s, .model = "m1"});
  CHECK(h.is_parked(y));
  CHECK(h.advance_to(at(10s)) == std::vector<int>{y});
  CHECK(h.sched.fleet().eligible(h.sched.fleet().model("m1")) == 0);
  h.finish(x);  // a request already running on a backend that went down still ends cleanly
}

TEST_CASE("fleet scheduler: fair order holds among the requests a backend may take") {
  Harness h(fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                          {.name = "b", .max_concurrency = 1, .models = {"m2"}}}));
  h.set_up(0, true);
  h.set_up(1, true);
  int first = h.submit({.workload = "free", .user = "f0", .model = "m1"});
  std::vector<int> free_ids, paid_ids;
  for (int i = 0; i < 3; ++i)
    free_ids.push_back(h.submit({.workload = "free", .user = "f", .model = "m1"}));
  // Paid requests for b's model do not change a's order...
  for (int i = 0; i < 3; ++i)
    h.submit({.workload = "paid", .user = "q", .model = "m2"});
  // ...paid requests for a's model go ahead of the free ones parked before them.
  for (int i = 0; i < 2; ++i)
    paid_ids.push_back(h.submit({.workload = "paid", .user = "p", .model = "m1"}));
  h.finish(first);
  CHECK(h.is_running(paid_ids[0]));
  h.finish(paid_ids[0]);
  CHECK(h.is_running(paid_ids[1]));
  h.finish(paid_ids[1]);
  CHECK(h.is_running(free_ids[0]));
  for (int id : free_ids)
    CHECK(h.backend_of.count(id) == (id == free_ids[0] ? 1u : 0u));
}

TEST_CASE("fleet scheduler: a request waits for a warm slot at most one load time") {
  const std::vector<std::string> both = {"m1", "m2"};
  Harness h(fleet_config({{.name = "a", .max_concurrency = 1, .models = both},
                          {.name = "b", .max_concurrency = 1, .models = both}}));
  h.set_up(0, true);
  h.set_up(1, true);
  h.set_resident(0, {"m1"});
  h.set_resident(1, {"m2"});
  int x = h.submit({.user = "x", .model = "m1"});
  CHECK(h.backend_of.at(x) == 0);
  h.now = at(1s);
  int y = h.submit({.user = "y", .model = "m1"});
  CHECK(h.is_parked(y));  // b is free but cold for m1; a is warm, and full
  CHECK(h.sched.next_deadline() == at(1s) + kDefaultLoadTime);
  int z = h.submit({.user = "z", .model = "m2"});
  CHECK(h.backend_of.at(z) == 1);  // meanwhile b serves what is warm on it
  h.finish(z);
  CHECK(h.is_parked(y));

  SUBCASE("a warm slot frees first: it goes there") {
    h.now = at(3s);
    h.finish(x);
    CHECK(h.backend_of.at(y) == 0);
  }
  SUBCASE("the load time passes first: it goes cold") {
    h.advance_to(at(1s) + kDefaultLoadTime);
    CHECK(h.backend_of.at(y) == 1);
    // Now m1 is resident on b too: the next m1 request need not wait for a.
    h.finish(y);
    int w = h.submit({.user = "w", .model = "m1"});
    CHECK(h.backend_of.at(w) == 1);
  }
}

TEST_CASE("fleet scheduler: a slow backend's slot goes to lower-priority work first") {
  // fast decodes 100 tokens/s, slow 25; one slot each, both serve m1 and m3 (fast m2 too); m3
  // is resident on fast only.
  Harness h(fleet_config({{.name = "fast", .max_concurrency = 1, .models = {"m1", "m2", "m3"}},
                          {.name = "slow", .max_concurrency = 1, .models = {"m1", "m3"}}}));
  all_up(h);
  h.set_resident(0, {"m1", "m3"});
  h.set_resident(1, {"m1"});
  const int teach_fast = h.submit({.user = "t", .cost = 100, .model = "m1"});
  const int teach_slow = h.submit({.user = "t", .cost = 100, .model = "m1"});
  REQUIRE(h.backend_of.at(teach_fast) == 0);
  REQUIRE(h.backend_of.at(teach_slow) == 1);
  h.now = at(1s);
  h.finish(teach_fast, -1, {.eval_count = 100, .eval_duration = 1s});
  h.now = at(4s);
  h.finish(teach_slow, -1, {.eval_count = 100, .eval_duration = 4s});

  h.now = at(10s);
  const int short_one = h.submit({.workload = "free", .user = "a", .cost = 50, .model = "m1"});
  const int long_one = h.submit({.workload = "free", .user = "b", .cost = 400, .model = "m1"});
  REQUIRE(h.backend_of.at(short_one) == 0);  // fast ends it at 10.5 s
  REQUIRE(h.backend_of.at(long_one) == 1);

  SUBCASE("paid waits for the fast slot while free work takes the slow one") {
    const int f = h.submit({.workload = "free", .user = "f", .cost = 100, .model = "m1"});
    const int p = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    h.now = at(10s) + 100ms;
    h.finish(long_one);
    // p: 4 s on slow, or 0.4 s of waiting and 1 s on fast. f takes slow meanwhile.
    CHECK(h.backend_of.at(f) == 1);
    CHECK(h.is_parked(p));
    h.now = at(10s) + 500ms;
    h.finish(short_one);
    CHECK(h.backend_of.at(p) == 0);
    // Counted once, on the backend it waited for (sluice_backend_faster_slot_waits_total).
    const auto backends = h.sched.snapshot(h.now).backends;
    CHECK(backends.at(0).faster_slot_waits == 1);
    CHECK(backends.at(1).faster_slot_waits == 0);
  }
  SUBCASE("nothing of lower priority waits: the slow slot is paid's (work conservation)") {
    const int p = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    h.now = at(10s) + 100ms;
    h.finish(long_one);
    CHECK(h.backend_of.at(p) == 1);
  }
  SUBCASE("lower-priority work that cannot use the slow slot does not keep it idle") {
    const int f = h.submit({.workload = "free", .user = "f", .cost = 100, .model = "m2"});
    const int p = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    h.now = at(10s) + 100ms;
    h.finish(long_one);
    CHECK(h.backend_of.at(p) == 1);  // f may run only on fast
    CHECK(h.is_parked(f));
  }
  SUBCASE("lower-priority work that waits for a warm slot does not keep the slow slot idle") {
    const int f = h.submit({.workload = "free", .user = "f", .cost = 100, .model = "m3"});
    const int p = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    h.now = at(10s) + 100ms;
    h.finish(long_one);
    // p lets f go first; f would rather wait for fast (warm) than load m3 on slow; so p takes
    // slow in the same instant, and did not wait for a faster slot.
    CHECK(h.backend_of.at(p) == 1);
    CHECK(h.is_parked(f));
    for (const auto& b : h.sched.snapshot(h.now).backends)
      CHECK(b.faster_slot_waits == 0);
  }
  SUBCASE("peers keep fair order: the first of two paid requests takes the slow slot") {
    const int p1 = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    const int p2 = h.submit({.workload = "paid", .user = "q", .cost = 100, .model = "m1"});
    h.now = at(10s) + 100ms;
    h.finish(long_one);
    CHECK(h.backend_of.at(p1) == 1);
    CHECK(h.is_parked(p2));
  }
  SUBCASE("a request that has waited as long as the slow slot takes stops waiting") {
    const int f = h.submit({.workload = "free", .user = "f", .cost = 100, .model = "m1"});
    const int p = h.submit({.workload = "paid", .user = "p", .cost = 100, .model = "m1"});
    h.now = at(14s);  // fast is overdue, but p has waited the 4 s slow needs
    h.finish(long_one);
    CHECK(h.backend_of.at(p) == 1);
    CHECK(h.is_parked(f));
  }
}

TEST_CASE("fleet scheduler: least-loaded placement ignores residency (for comparison)") {
  const std::vector<std::string> both = {"m1", "m2"};
  SchedulerConfig config = fleet_config({{.name = "a", .max_concurrency = 1, .models = both},
                                         {.name = "b", .max_concurrency = 1, .models = both}});
  config.model_aware = false;
  Harness h(config);
  h.set_up(0, true);
  h.set_up(1, true);
  h.set_resident(0, {"m1"});
  h.set_resident(1, {"m2"});
  int x = h.submit({.user = "x", .model = "m1"});
  int y = h.submit({.user = "y", .model = "m1"});
  CHECK(h.backend_of.at(x) == 0);
  CHECK(h.backend_of.at(y) == 1);  // no wait for the warm one
}

TEST_CASE("fleet scheduler: a failed backend's request moves elsewhere, keeping its permit") {
  Harness h(fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                          {.name = "b", .max_concurrency = 1, .models = {"m1"}}}));
  h.set_up(0, true);
  h.set_up(1, true);
  h.set_resident(0, {"m1"});
  h.set_resident(1, {"m1"});  // warm on both: nobody waits for the other
  int x = h.submit({.user = "x", .model = "m1"});
  int y = h.submit({.user = "y", .model = "m1"});
  int z = h.submit({.user = "z", .model = "m1"});
  CHECK(h.is_running(y));
  CHECK(h.is_parked(z));
  CHECK_FALSE(h.reroute(x));  // the other backend is full: nothing changes
  CHECK(h.backend_of.at(x) == h.sched.permit_backend(h.running.at(x)));
  h.finish(y);  // frees y's backend, which z takes
  CHECK(h.is_running(z));
  const auto from = h.backend_of.at(x);
  h.finish(z);
  auto moved = h.reroute(x);
  REQUIRE(moved);
  CHECK(*moved != from);
  CHECK(h.sched.permit_backend(h.running.at(x)) == *moved);
  h.finish(x);
  CHECK(h.sched.in_flight() == 0);
}

namespace {

// Two backends serving m1 with one slot each.
SchedulerConfig pair_config() {
  return fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                       {.name = "b", .max_concurrency = 1, .models = {"m1"}}});
}

// Both up, m1 warm on both (nobody waits for a warm slot).
void warm_pair(Harness& h) {
  h.set_up(0, true);
  h.set_up(1, true);
  h.set_resident(0, {"m1"});
  h.set_resident(1, {"m1"});
}

using Requeued = sluice::core::RequeueResult::Kind;

}  // namespace

TEST_CASE("fleet scheduler: a requeued request keeps its place in fair order") {
  Harness h(pair_config());
  warm_pair(h);
  int x1 = h.submit({.user = "x", .model = "m1"});
  int y1 = h.submit({.user = "y", .model = "m1"});
  int x2 = h.submit({.user = "x", .model = "m1"});  // behind x1 in x's own FIFO
  int z1 = h.submit({.user = "z", .model = "m1"});
  const auto failed = h.backend_of.at(x1);
  const Permit old_permit = h.running.at(x1);
  CHECK_FALSE(h.reroute(x1));  // the other backend is busy
  auto requeued = h.requeue(x1);
  REQUIRE(requeued);
  CHECK(requeued->kind == Requeued::parked);
  // The failed backend's slot is free and what it lets run runs; x1 avoids that backend, and
  // x2 waits behind x1.
  CHECK(h.is_running(z1));
  CHECK(h.backend_of.at(z1) == failed);
  CHECK(h.is_parked(x2));
  int w1 = h.submit({.user = "w", .model = "m1"});  // arrives after x1
  h.finish(y1);
  CHECK(h.is_running(x1));  // first when a slot frees: before w1 and before its own x2
  CHECK(h.backend_of.at(x1) != failed);
  CHECK(h.is_parked(x2));
  CHECK(h.is_parked(w1));
  // The old permit is stale: it neither releases nor moves the request.
  std::vector<Admission> none;
  CHECK_FALSE(h.sched.release(old_permit, -1, h.now, none));
  CHECK_FALSE(h.sched.reroute(old_permit, h.now, none));
  CHECK_FALSE(h.sched.requeue(old_permit, h.now, none));
  CHECK(none.empty());
  h.check();
}

TEST_CASE("fleet scheduler: a requeued request is refunded, so it is charged once") {
  // x1 costs 200, everything else 100. Charged twice, x would stand at 400 against y's 200 and
  // y3 would run before x2; charged once, both stand at 200 and x2, which arrived first, runs.
  Harness h(pair_config());
  warm_pair(h);
  int x1 = h.submit({.user = "x", .cost = 200, .model = "m1"});
  int y1 = h.submit({.user = "y", .cost = 100, .model = "m1"});
  int y2 = h.submit({.user = "y", .cost = 100, .model = "m1"});
  int x2 = h.submit({.user = "x", .cost = 100, .model = "m1"});
  REQUIRE(h.requeue(x1)->kind == Requeued::parked);
  CHECK(h.is_running(y2));  // on x1's failed backend
  int y3 = h.submit({.user = "y", .cost = 100, .model = "m1"});
  h.finish(y1);
  CHECK(h.is_running(x1));
  h.finish(y2);
  CHECK(h.is_running(x2));
  CHECK(h.is_parked(y3));
}

TEST_CASE("fleet scheduler: a requeued request keeps its original queue deadline") {
  Harness h(pair_config());
  warm_pair(h);
  int x1 = h.submit({.user = "x", .timeout = 10s, .model = "m1"});
  int y1 = h.submit({.user = "y", .model = "m1"});
  h.now = at(4s);
  auto requeued = h.requeue(x1);
  REQUIRE(requeued);
  REQUIRE(requeued->kind == Requeued::parked);
  CHECK(requeued->deadline == at(10s));
  CHECK(h.sched.next_deadline() == at(10s));
  CHECK(h.advance_to(at(9s)).empty());
  CHECK(h.advance_to(at(10s)) == std::vector<int>{x1});
  CHECK(h.sched.parked() == 0);
  h.finish(y1);
  CHECK(h.sched.in_flight() == 0);

  // Requeued after its deadline has passed: it ends at once, its slot freed.
  int x2 = h.submit({.user = "x", .timeout = 1s, .model = "m1"});
  h.now = at(12s);
  auto late = h.requeue(x2);
  REQUIRE(late);
  CHECK(late->kind == Requeued::timed_out);
  CHECK(h.sched.in_flight() == 0);
  CHECK(h.sched.parked() == 0);
}

TEST_CASE("fleet scheduler: a requeued request whose client leaves is cancelled once") {
  Harness h(pair_config());
  warm_pair(h);
  int x1 = h.submit({.user = "x", .model = "m1"});
  int y1 = h.submit({.user = "y", .model = "m1"});
  auto requeued = h.requeue(x1);
  REQUIRE(requeued);
  REQUIRE(requeued->kind == Requeued::parked);
  std::vector<Admission> none;
  CHECK(h.sched.cancel(requeued->ticket, h.now, none));
  CHECK_FALSE(h.sched.cancel(requeued->ticket, h.now, none));  // idempotent
  h.ticket_to_id.erase(requeued->ticket.value);
  h.check();
  CHECK(h.sched.parked() == 0);
  h.finish(y1);
  CHECK(h.sched.in_flight() == 0);
  CHECK(none.empty());
}

TEST_CASE("fleet scheduler: requeued with no other backend up, a request waits or goes back") {
  Harness h(fleet_config({{.name = "a", .max_concurrency = 2, .models = {"m1"}}}));
  h.set_up(0, true);
  int x1 = h.submit({.user = "x", .timeout = 10s, .model = "m1"});
  // Its backend is still up and has room: avoiding it would strand the request, so it goes back
  // there at once (the caller's move budget bounds such bounces).
  auto again = h.requeue(x1);
  REQUIRE(again);
  CHECK(again->kind == Requeued::admitted);
  CHECK(h.backend_of.at(x1) == 0);
  // Its backend was ejected: it waits in the waiting room, then times out...
  h.set_up(0, false);
  auto parked = h.requeue(x1);
  REQUIRE(parked);
  CHECK(parked->kind == Requeued::parked);
  CHECK(h.advance_to(at(9s)).empty());
  CHECK(h.advance_to(at(10s)) == std::vector<int>{x1});
  // ...or runs there again when the backend comes back in time.
  int x2 = h.submit({.user = "x", .timeout = 10s, .model = "m1"});
  REQUIRE(h.is_parked(x2));
  h.set_up(0, true);
  REQUIRE(h.is_running(x2));
  h.set_up(0, false);
  REQUIRE(h.requeue(x2)->kind == Requeued::parked);
  h.now = at(15s);
  h.set_up(0, true);
  CHECK(h.is_running(x2));
  CHECK(h.backend_of.at(x2) == 0);
}

TEST_CASE("fleet scheduler: the global cap still bounds the fleet as a whole") {
  Harness h(
      fleet_config({{.name = "a", .max_concurrency = 2}, {.name = "b", .max_concurrency = 2}}, 3));
  h.set_up(0, true);
  h.set_up(1, true);
  for (const char* user : {"u0", "u1", "u2"})
    CHECK(h.is_running(h.submit({.user = user})));
  CHECK(h.is_parked(h.submit({.user = "late"})));
}

TEST_CASE("fleet scheduler: reconfigure adds a backend; parked requests keep their place") {
  Harness h(fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}}}));
  h.set_up(0, true);
  int x = h.submit({.user = "x", .model = "m1"});
  int y = h.submit({.user = "y", .model = "m1"});
  int z = h.submit({.user = "z", .model = "m1"});
  std::vector<Admission> admissions;
  SchedulerConfig next = fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                                       {.name = "b", .max_concurrency = 1, .models = {"m1"}}});
  CHECK(h.sched.reconfigure(next, h.now, admissions) == "");
  CHECK(admissions.empty());  // b is down until checked
  const auto b = *h.sched.fleet().find("b");
  h.set_up(b, true);
  CHECK(h.is_parked(y));  // b must load m1, which is warm on a: y waits one load time for a
  h.advance_to(at(0s) + kDefaultLoadTime);
  CHECK(h.backend_of.at(y) == b);  // the first parked, on the new backend
  CHECK(h.is_parked(z));
  h.finish(x);
  CHECK(h.backend_of.at(z) == 0);
  // Removing a backend lets its running request finish.
  CHECK(h.sched.reconfigure(fleet_config({{.name = "a", .max_concurrency = 1, .models = {"m1"}}}),
                            h.now, admissions) == "");
  CHECK(h.sched.fleet().view(b).retired);
  h.finish(y);
  CHECK_FALSE(h.sched.fleet().live(b));
}

// Random events on a random fleet; the harness checks every invariant after each, including work
// conservation per backend (no parked head that some backend could take now).
TEST_CASE("fleet scheduler: model check") {
  std::mt19937_64 rng(424242);
  for (int round = 0; round < 60; ++round) {
    const std::size_t n = 1 + rng() % 4;
    std::vector<BackendSpec> specs;
    for (std::size_t b = 0; b < n; ++b) {
      BackendSpec spec{.name = std::string(1, static_cast<char>('a' + b)),
                       .max_concurrency = static_cast<std::int64_t>(1 + rng() % 3)};
      for (int m = 0; m < 3; ++m) {
        if (rng() % 2) {
          std::string name = "m";
          name += std::to_string(m);
          spec.models.push_back(name);
        }
      }
      specs.push_back(spec);
    }
    SchedulerConfig config = fleet_config(specs, 1 + static_cast<std::int64_t>(rng() % 8));
    config.model_aware = rng() % 4 != 0;
    if (rng() % 2) config.per_key = {{.label = "user", .max_concurrency = 1}};
    Harness h(config);
    for (int step = 0; step < 250; ++step) {
      h.now += std::chrono::milliseconds(rng() % 1500);
      const auto b = static_cast<sluice::core::BackendId>(rng() % n);
      switch (rng() % 9) {
        case 0:
          h.set_up(b, rng() % 4 != 0);
          break;
        case 1: {
          std::vector<std::string> ps;
          for (int m = 0; m < 3; ++m) {
            if (rng() % 3 == 0) {
              std::string name = "m";
              name += std::to_string(m);
              ps.push_back(name);
            }
          }
          h.set_resident(b, ps);
          break;
        }
        case 2:
        case 3:
          if (!h.running.empty()) {
            auto it = h.running.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(rng() % h.running.size()));
            // Backends decode at different speeds (a: 50 tokens/s, b: 25, ...), so some
            // requests wait for a faster slot.
            const sluice::core::Timings t{
                .load_duration = std::chrono::milliseconds(rng() % 6000),
                .eval_count = 50,
                .eval_duration = std::chrono::seconds(1 + h.backend_of.at(it->first))};
            h.finish(it->first, -1, t);
          }
          break;
        case 4:
          if (!h.running.empty()) {
            auto it = h.running.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(rng() % h.running.size()));
            const int id = it->first;
            if (!h.reroute(id) && rng() % 2) h.requeue(id);  // no room elsewhere: wait again
          }
          break;
        case 5:
          h.advance_to(h.now);
          break;
        default: {
          std::string user = "u";
          user += std::to_string(rng() % 5);
          std::string model = "m";
          model += std::to_string(rng() % 4);  // m3: served by nobody
          h.submit({.workload = rng() % 2 ? "paid" : "free",
                    .user = user,
                    .cost = static_cast<std::int64_t>(1 + rng() % 200),
                    .timeout = std::chrono::seconds(1 + rng() % 20),
                    .model = model});
        }
      }
    }
    // Everything drains once every backend is up and nothing new arrives.
    for (sluice::core::BackendId b = 0; b < n; ++b)
      h.set_up(b, true);
    for (int guard = 0; guard < 10000 && (!h.running.empty() || h.sched.parked() > 0); ++guard) {
      h.now += 100ms;
      if (!h.running.empty()) {
        h.finish(h.running.begin()->first);
      } else {
        h.advance_to(h.now + 1h);
      }
    }
    CHECK(h.sched.parked() == 0);
    CHECK(h.sched.in_flight() == 0);
  }
}
