// Positions and ETAs of parked requests (Scheduler::queue_order) and the request registry behind
// GET /sluice/requests/{id}. Time is fed in; nothing sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>

#include "scheduler_harness.hpp"
#include "sluice/core/request_registry.hpp"

using namespace sluice::test;
using sluice::core::at;
using sluice::core::QueueOrder;
using sluice::core::QueuePosition;
using sluice::core::RequestRegistry;
using sluice::core::RequestState;

namespace {

// The position of test request `id` (must be parked) in `order`.
QueuePosition position_of(const Harness& h, const QueueOrder& order, int id, bool& exact) {
  for (const auto& [value, tid] : h.ticket_to_id) {
    if (tid == id) return order.find(value, exact);
  }
  FAIL("not parked: " << id);
  return {};
}

std::int64_t position_of(const Harness& h, const QueueOrder& order, int id) {
  bool exact = false;
  const QueuePosition where = position_of(h, order, id, exact);
  CHECK(exact);
  return where.position;
}

// Admits everything parked by releasing the running request admitted first, one at a time,
// and checks that every parked request was admitted after exactly `position` others.
void check_positions_match_admissions(Harness& h, const QueueOrder& order) {
  std::map<int, std::int64_t> expected;
  for (const auto& [value, id] : h.ticket_to_id) {
    bool exact = false;
    const QueuePosition where = order.find(value, exact);
    REQUIRE(exact);
    expected[id] = where.position;
  }
  const std::size_t before = h.admitted_order.size();
  while (!h.ticket_to_id.empty()) {
    REQUIRE_FALSE(h.running.empty());
    h.finish_oldest();
  }
  for (std::size_t i = before; i < h.admitted_order.size(); ++i) {
    const int id = h.admitted_order[i];
    CAPTURE(id);
    REQUIRE(expected.count(id));
    CHECK(expected[id] == static_cast<std::int64_t>(i - before));
  }
}

}  // namespace

TEST_CASE("queue order: a paid request parked after ten free ones has a smaller position") {
  Harness h(paid_free_config(1));
  h.submit({.workload = "free", .user = "busy"});  // runs
  std::vector<int> free;
  for (int i = 0; i < 10; ++i)
    free.push_back(h.submit({.workload = "free", .user = "f" + std::to_string(i), .cost = 10}));
  const int paid = h.submit({.workload = "paid", .user = "p", .cost = 10});
  const QueueOrder order = h.sched.queue_order(h.now, 100);
  CHECK(order.parked == 11);
  CHECK(order.ordered == 11);
  const std::int64_t paid_position = position_of(h, order, paid);
  CHECK(paid_position <= 1);
  int behind = 0;
  for (int id : free)
    behind += position_of(h, order, id) > paid_position ? 1 : 0;
  CHECK(behind >= 9);
  // Free requests of distinct users keep their arrival order among themselves.
  for (std::size_t i = 1; i < free.size(); ++i)
    CHECK(position_of(h, order, free[i - 1]) < position_of(h, order, free[i]));
  check_positions_match_admissions(h, order);
}

TEST_CASE("queue order: changes nothing in the scheduler") {
  Harness h(paid_free_config(2));
  for (int i = 0; i < 20; ++i)
    h.submit(
        {.workload = i % 3 ? "free" : "paid", .user = "u" + std::to_string(i % 4), .cost = 1 + i});
  const auto before = h.sched.snapshot(h.now);
  const QueueOrder first = h.sched.queue_order(h.now, 1000);
  const QueueOrder second = h.sched.queue_order(h.now, 1000);
  h.check();
  const auto after = h.sched.snapshot(h.now);
  CHECK(after.parked == before.parked);
  CHECK(after.in_flight == before.in_flight);
  CHECK(first.ordered == second.ordered);
  for (const auto& [ticket, where] : first.positions)
    CHECK(second.positions.at(ticket).position == where.position);
  check_positions_match_admissions(h, first);
}

TEST_CASE("queue order: positions beyond the limit are a lower bound") {
  Harness h(paid_free_config(1));
  h.submit({.user = "runner"});
  std::vector<int> parked;
  for (int i = 0; i < 10; ++i)
    parked.push_back(h.submit({.user = "u" + std::to_string(i)}));
  const QueueOrder order = h.sched.queue_order(h.now, 3);
  CHECK(order.ordered == 3);
  CHECK(order.positions.size() == 3);
  int exact_count = 0;
  for (int id : parked) {
    bool exact = false;
    const QueuePosition where = position_of(h, order, id, exact);
    if (exact) {
      ++exact_count;
      CHECK(where.position < 3);
    } else {
      CHECK(where.position == 3);
    }
  }
  CHECK(exact_count == 3);
  CHECK(h.sched.queue_order(h.now, 0).ordered == 0);
}

TEST_CASE("queue order: per-key limits — a user's second request waits for its first") {
  SchedulerConfig config = paid_free_config(2);
  config.per_key.push_back({.label = "user", .max_concurrency = 1});
  Harness h(config);
  h.submit({.user = "a", .keys = {"a"}});  // runs
  h.submit({.user = "b", .keys = {"b"}});  // runs
  const int a2 = h.submit({.user = "a", .keys = {"a"}});
  const int a3 = h.submit({.user = "a", .keys = {"a"}});
  const int c1 = h.submit({.user = "c", .keys = {"c"}});
  const QueueOrder order = h.sched.queue_order(h.now, 100);
  // The oldest running (a's) ends first: c (no service yet, so ahead of a in fair order) runs;
  // then b's ends: a2 (a has room again); a3 only after a2 ends, with c1 still running.
  CHECK(position_of(h, order, c1) == 0);
  CHECK(position_of(h, order, a2) == 1);
  CHECK(position_of(h, order, a3) == 2);
  check_positions_match_admissions(h, order);
}

TEST_CASE("queue order: ETA from service times, and from the completion rate") {
  Harness h(paid_free_config(1));
  // Three completions, each 10 s at cost 10, in separate busy periods (so no work throughput):
  // positions, but no ETA before the fourth.
  for (int i = 0; i < 3; ++i) {
    h.now = at(std::chrono::seconds(100 * i - 300));
    h.submit({.user = "w", .cost = 10});
    h.now += 10s;
    h.finish_oldest();
  }
  h.now = at(0s);
  h.submit({.user = "a", .cost = 10});
  const int b = h.submit({.user = "b", .cost = 5});
  {
    const QueueOrder order = h.sched.queue_order(h.now, 10);
    bool exact = false;
    const QueuePosition where = position_of(h, order, b, exact);
    CHECK(exact);
    CHECK_FALSE(where.eta());
  }
  // a ran 10 s at cost 10: 1 s per token, the fourth sample. b (cost 5) is admitted at 10 s.
  h.now = at(10s);
  h.finish_oldest();
  const int c = h.submit({.user = "c", .cost = 3});
  const int d = h.submit({.user = "d", .cost = 4});
  h.now = at(12s);
  const QueueOrder order = h.sched.queue_order(h.now, 10);
  bool exact = false;
  const QueuePosition at_c = position_of(h, order, c, exact);
  REQUIRE(at_c.eta_service);
  CHECK(*at_c.eta_service == 3s);  // b ends at 15 s
  CHECK(at_c.completions_ahead == 1);
  const QueuePosition at_d = position_of(h, order, d, exact);
  REQUIRE(at_d.eta_service);
  CHECK(*at_d.eta_service == 6s);  // c runs 15..18 s
  CHECK(at_d.completions_ahead == 2);
  CHECK_FALSE(at_d.eta_work);  // one completion of this busy period is no work throughput yet
  CHECK(at_d.eta() == at_d.eta_service);
  // The rate: the last 4 completions from -290 s to 10 s (3 per 300 s), as of now (12 s).
  REQUIRE(at_d.eta_rate);
  CHECK(at_d.eta_rate->count() == doctest::Approx(2 * 302e9 / 3));
}

TEST_CASE("queue order: ETA from the work throughput — costs ahead over tokens per busy second") {
  // Two slots on a backend that runs one request at a time: each request's own run time says
  // little about the drain; the work done per second of busy time does. The model load of the
  // first request is left out of the throughput, and four completions are needed.
  Harness h(paid_free_config(2));
  h.now = at(100s);  // busy from 100 s (the earlier idle time does not count)
  const int w1 = h.submit({.user = "w1", .cost = 10});
  const int w2 = h.submit({.user = "w2", .cost = 10});
  const int w3 = h.submit({.user = "w3", .cost = 10});
  const int w4 = h.submit({.user = "w4", .cost = 10});
  const int x = h.submit({.user = "x", .cost = 10});
  const int y = h.submit({.user = "y", .cost = 20});
  const int z = h.submit({.user = "z", .cost = 10});
  bool exact = false;
  h.now = at(115s);
  h.finish(w1, 10, {.load_duration = 5s});  // 5 s of its 15 loading the model
  CHECK_FALSE(position_of(h, h.sched.queue_order(h.now, 10), z, exact).eta_work);
  for (int id : {w2, w3, w4}) {
    h.now += 5s;
    h.finish(id, 10);
  }
  // 40 tokens in 130 - 100 - 5 = 25 s of work: 1.6 tokens/s. In flight: x (admitted at 125 s,
  // 10 - 5 x 1.6 / 2 = 6 left) and y (at 130 s, 20 left); x ends first, then z is admitted.
  REQUIRE(h.running.count(x));
  REQUIRE(h.running.count(y));
  const QueuePosition at_z = position_of(h, h.sched.queue_order(h.now, 10), z, exact);
  REQUIRE(at_z.eta_work);
  CHECK(at_z.eta_work->count() == doctest::Approx(3.75e9));
  CHECK(at_z.eta() == at_z.eta_work);
  // Idle, then busy again: until the new period has four completions, the last one's stands.
  for (int id : {x, y, z})
    h.finish(id, 10);
  REQUIRE(h.running.empty());
  h.now = at(1000s);
  h.submit({.user = "f", .cost = 40});
  h.submit({.user = "g", .cost = 40});
  const int i = h.submit({.user = "i", .cost = 40});
  const QueuePosition at_i = position_of(h, h.sched.queue_order(h.now, 10), i, exact);
  REQUIRE(at_i.eta_work);
  CHECK(at_i.eta_work->count() > 0);
}

TEST_CASE("queue order: requests that waited for one model load all report it: counted once") {
  // Ollama's load_duration runs from arrival until the model is ready: two requests admitted
  // together on a cold model both say 6 s. The GPU loaded once.
  Harness h(paid_free_config(2));
  h.now = at(100s);
  const int w1 = h.submit({.user = "w1", .cost = 10});
  const int w2 = h.submit({.user = "w2", .cost = 10});
  const int w3 = h.submit({.user = "w3", .cost = 10});
  const int w4 = h.submit({.user = "w4", .cost = 10});
  const int x = h.submit({.user = "x", .cost = 40});
  const int y = h.submit({.user = "y", .cost = 40});
  const int z = h.submit({.user = "z", .cost = 10});
  h.now = at(110s);
  h.finish(w1, 10, {.load_duration = 6s});
  h.now = at(114s);
  h.finish(w2, 10, {.load_duration = 6s});
  h.now = at(118s);
  h.finish(w3, 10);
  h.now = at(122s);
  h.finish(w4, 10);
  REQUIRE(h.running.count(x));
  REQUIRE(h.running.count(y));
  // 40 tokens in 22 s, 6 of them loading: 2.5 tokens/s. x (admitted at 118 s) has 40 - 4 x
  // 2.5 / 2 = 35 left and ends first; then z is admitted: 35 / 2.5 = 14 s. (Counting the load
  // twice: 4 tokens/s, 32 left, 8 s.)
  bool exact = false;
  const QueuePosition at_z = position_of(h, h.sched.queue_order(h.now, 10), z, exact);
  REQUIRE(at_z.eta_work);
  CHECK(at_z.eta_work->count() == doctest::Approx(14e9));
}

TEST_CASE("queue order: randomized — positions equal the real admission order") {
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) { return static_cast<std::int64_t>(rng() % n); };
    SchedulerConfig config = paid_free_config(1 + pick(4));
    config.workloads[0].band = static_cast<int>(pick(2));
    const bool limits = pick(2);
    if (limits && pick(2)) config.max_inflight_tokens = 200 + pick(800);
    const bool user_limit = limits && pick(2);
    const bool model_limit = limits && pick(2);
    if (user_limit) {
      config.per_key.push_back({.label = "user",
                                .max_concurrency = 1 + pick(2),
                                .max_tokens = pick(2) ? 0 : 300 + pick(500)});
    }
    if (model_limit) config.per_key.push_back({.label = "model", .max_concurrency = 1 + pick(2)});
    Harness h(config);
    const char* workloads[] = {"paid", "free", "default"};
    const char* models[] = {"m1", "m2"};
    // History: arrivals, cancellations, completions with real costs. Without limits time moves
    // (the order then does not depend on which running request ends first); with limits it stays
    // put, so that running requests end, in the model, in the order they were admitted.
    for (int step = 0; step < 60 + pick(60); ++step) {
      const int op = static_cast<int>(pick(100));
      if (op < 60) {
        const std::string user = "u" + std::to_string(pick(6));
        Req r{.workload = workloads[pick(3)],
              .user = user,
              .cost = 1 + pick(300),
              .priority = pick(6) == 0 ? static_cast<double>(1 + pick(10)) : 0};
        if (user_limit) r.keys.push_back(user);
        if (model_limit) r.keys.push_back(models[pick(2)]);
        h.submit(r);
      } else if (op < 85 && !h.running.empty()) {
        auto it = h.running.begin();
        std::advance(it, pick(h.running.size()));
        h.finish(it->first, pick(3) == 0 ? -1 : pick(600));
      } else if (!h.ticket_to_id.empty()) {
        auto it = h.ticket_to_id.begin();
        std::advance(it, pick(h.ticket_to_id.size()));
        h.cancel(it->second);
      }
      if (!limits) h.now += std::chrono::milliseconds(pick(50));
    }
    const QueueOrder order = h.sched.queue_order(h.now, 100'000);
    CHECK(order.ordered == h.sched.parked());
    if (limits) {
      check_positions_match_admissions(h, order);
      continue;
    }
    // Without limits any running request may end first: release in random order, with time (at
    // the estimated cost: a charge-back of the real cost moves the order, by design).
    std::map<int, std::int64_t> expected;
    for (const auto& [value, id] : h.ticket_to_id) {
      bool exact = false;
      expected[id] = order.find(value, exact).position;
      REQUIRE(exact);
    }
    const std::size_t before = h.admitted_order.size();
    while (!h.ticket_to_id.empty()) {
      auto it = h.running.begin();
      std::advance(it, pick(h.running.size()));
      h.now += std::chrono::milliseconds(pick(50));
      h.finish(it->first, -1);
    }
    for (std::size_t i = before; i < h.admitted_order.size(); ++i)
      CHECK(expected.at(h.admitted_order[i]) == static_cast<std::int64_t>(i - before));
  }
}

TEST_CASE("queue order: progress requests wait under progress_queue_timeout_cap") {
  SchedulerConfig config = paid_free_config(1);
  config.queue_timeout_cap = 240s;
  config.progress_queue_timeout_cap = 3600s;
  config.default_workload.queue_timeout = 2h;
  Harness h(config);
  h.submit({.user = "runner"});
  std::vector<sluice::core::Admission> out;
  const std::vector<std::string_view> keys;
  sluice::core::Request plain{.workload = *h.sched.find_workload("default"), .fairness_key = "x"};
  sluice::core::Request progress = plain;
  progress.progress = true;
  const auto a = h.sched.enqueue(plain, h.now, out);
  const auto b = h.sched.enqueue(progress, h.now, out);
  REQUIRE(a.kind == EnqueueResult::Kind::parked);
  REQUIRE(b.kind == EnqueueResult::Kind::parked);
  CHECK(a.deadline == h.now + 240s);
  CHECK(b.deadline == h.now + 3600s);
  config.progress_queue_timeout_cap = 3601s;
  CHECK(sluice::core::validate(config) == "progress_queue_timeout_cap must be <= 1h");
}

TEST_CASE("request registry: parked, running, finished, then forgotten") {
  RequestRegistry registry;
  const auto handle = registry.start("r1", "", "free", at(1s));
  REQUIRE(handle);
  auto found = registry.find("r1", std::nullopt, at(1s));
  REQUIRE(found.record);
  CHECK(found.record->state == RequestState::parked);
  registry.parked(handle, Ticket{42});
  CHECK(registry.find("r1", std::nullopt, at(2s)).record->ticket == Ticket{42});
  CHECK(registry.find("r1", std::nullopt, at(3s)).record->queued(at(3s)) == 2s);
  CHECK(registry.parked_records().size() == 1);
  registry.running(handle, at(4s));
  found = registry.find("r1", std::nullopt, at(5s));
  CHECK(found.record->state == RequestState::running);
  CHECK(found.record->queued(at(9s)) == 3s);
  CHECK(registry.parked_records().empty());
  registry.finish(handle, at(6s));
  found = registry.find("r1", std::nullopt, at(7s));
  CHECK(found.record->state == RequestState::finished);
  CHECK(found.record->queued(at(7s)) == 3s);
  CHECK(registry.live() == 0);
  // Forgotten after kFinishedFor.
  CHECK_FALSE(
      registry.find("r1", std::nullopt, at(6s) + RequestRegistry::kFinishedFor + 1ns).record);
  registry.start("other", "", "free", at(6s) + RequestRegistry::kFinishedFor + 1ns);
  CHECK(registry.finished() == 0);
  // A stale handle is ignored.
  registry.running(handle, at(400s));
  registry.finish(handle, at(400s));
  CHECK(registry.live() == 1);
  CHECK_FALSE(registry.find("nope", std::nullopt, at(1s)).record);
}

TEST_CASE("request registry: owners, shared ids, bounds") {
  RequestRegistry registry;
  const auto alice = registry.start("same", "alice", "w", at(1s));
  const auto bob = registry.start("same", "bob", "w", at(2s));
  const std::string_view a = "alice";
  const std::string_view b = "bob";
  const std::string_view eve = "eve";
  CHECK(registry.find("same", a, at(3s)).record->owner == "alice");
  CHECK(registry.find("same", b, at(3s)).record->owner == "bob");
  const auto denied = registry.find("same", eve, at(3s));
  CHECK_FALSE(denied.record);
  CHECK(denied.forbidden);
  CHECK(registry.find("same", std::nullopt, at(3s)).record->owner == "bob");  // newest
  registry.finish(alice, at(3s));
  registry.finish(bob, at(3s));
  // The finished ring is bounded.
  for (std::size_t i = 0; i < RequestRegistry::kMaxFinished + 10; ++i)
    registry.finish(registry.start("r" + std::to_string(i), "", "w", at(4s)), at(4s));
  CHECK(registry.finished() == RequestRegistry::kMaxFinished);
  CHECK_FALSE(registry.find("r0", std::nullopt, at(4s)).record);
  CHECK(registry.find("r" + std::to_string(RequestRegistry::kMaxFinished + 9), std::nullopt, at(4s))
            .record);
  // At most kMaxPerId records per id stay findable.
  std::vector<RequestRegistry::Handle> handles;
  for (std::size_t i = 0; i < RequestRegistry::kMaxPerId + 2; ++i)
    handles.push_back(registry.start("dup", "k" + std::to_string(i), "w", at(5s)));
  const std::string k0 = "k0";
  CHECK_FALSE(registry.find("dup", std::string_view(k0), at(5s)).record);
  for (auto handle : handles)
    registry.finish(handle, at(5s));
  CHECK(registry.live() == 0);
}
