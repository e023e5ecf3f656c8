// Behaviour of the scheduling core, one property per test case. Time is fed in; nothing sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "scheduler_harness.hpp"

using namespace sluice::test;
using sluice::core::at;
using sluice::core::KeyLimitSpec;
using sluice::core::Labels;
using sluice::core::RejectReason;

TEST_CASE("scheduler: classify and find workloads by name") {
  Scheduler sched(paid_free_config());
  CHECK(sched.workload(sched.classify(Labels{{"tier", "paid"}})).name == "paid");
  CHECK(sched.workload(sched.classify(Labels{{"tier", "free"}})).name == "free");
  CHECK(sched.workload(sched.classify(Labels{{"tier", "gold"}})).name == "default");
  CHECK(sched.workload(sched.classify(Labels{})).name == "default");
  CHECK(sched.find_workload("free"));
  CHECK(sched.find_workload("default"));
  CHECK_FALSE(sched.find_workload("nope"));
}

TEST_CASE("scheduler: config validation names the field") {
  auto config = paid_free_config();
  CHECK(validate(config) == "");
  config.max_concurrency = 0;
  CHECK(validate(config).find("max_concurrency") == 0);
  config = paid_free_config();
  config.workloads[1].name = "paid";
  CHECK(validate(config).find("workloads[1].name 'paid' is used twice") == 0);
  config = paid_free_config();
  config.workloads[0].priority = 0;
  CHECK(validate(config).find("workloads[0].priority") == 0);
  config = paid_free_config();
  config.per_key = {{.label = "user"}, {.label = "user"}};
  CHECK(validate(config).find("per_key[1].label") == 0);
  config = paid_free_config();
  config.default_workload.name = "free";
  CHECK(validate(config).find("default_workload.name") == 0);
}

TEST_CASE("scheduler: admits at once while slots are free, parks beyond, wakes on release") {
  Harness h(paid_free_config(2));
  int a = h.submit({.user = "a"});
  CHECK(h.last.kind == EnqueueResult::Kind::admitted);
  int b = h.submit({.user = "b"});
  CHECK(h.last.kind == EnqueueResult::Kind::admitted);
  int c = h.submit({.user = "c"});
  CHECK(h.last.kind == EnqueueResult::Kind::parked);
  CHECK(h.sched.parked() == 1);
  CHECK(h.sched.in_flight() == 2);
  h.finish(a);
  CHECK(h.is_running(c));  // woken by the release itself: no idle slot
  CHECK(h.sched.in_flight() == 2);
  h.finish(b);
  h.finish(c);
  CHECK(h.sched.in_flight() == 0);
  CHECK(h.sched.parked() == 0);
}

TEST_CASE("scheduler: same key, same priority is FIFO") {
  Harness h(paid_free_config(1));
  std::vector<int> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(h.submit({.user = "same"}));
  while (!h.running.empty())
    h.finish_oldest();
  CHECK(h.admitted_order == ids);
}

// Keeps paid and free both backlogged and counts the cost each gets over 10 000 admissions.
TEST_CASE("scheduler: priority 8 vs 1 splits admitted cost 8:1 within 5%") {
  Harness h(paid_free_config(2));
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> cost(1, 500);
  std::map<int, std::int64_t> cost_of;
  auto top_up = [&] {
    for (const char* tier : {"paid", "free"}) {
      std::int64_t parked = 0;
      for (auto& [_, id] : h.ticket_to_id)
        parked += h.workload_of[id] == tier ? 1 : 0;
      while (parked < 20) {
        std::int64_t c = cost(rng);
        int id =
            h.submit({.workload = tier, .user = "user" + std::to_string(rng() % 5), .cost = c});
        cost_of[id] = c;
        ++parked;
      }
    }
  };
  top_up();
  std::size_t start = h.admitted_order.size();
  while (h.admitted_order.size() - start < 10'000) {
    h.finish_oldest();
    top_up();
  }
  std::int64_t paid = 0, free = 0;
  for (std::size_t i = start; i < start + 10'000; ++i) {
    int id = h.admitted_order[i];
    (h.workload_of[id] == "paid" ? paid : free) += cost_of[id];
  }
  double ratio = static_cast<double>(paid) / static_cast<double>(free);
  INFO("paid cost " << paid << " free cost " << free << " ratio " << ratio);
  CHECK(ratio == doctest::Approx(8.0).epsilon(0.05));
}

TEST_CASE("scheduler: an idle workload's share goes to the others, and it banks no credit") {
  Harness h(paid_free_config(1));
  // Only free is backlogged: it gets every slot.
  for (int i = 0; i < 10; ++i)
    h.submit({.workload = "free", .user = "f"});
  for (int i = 0; i < 5; ++i)
    h.finish_oldest();
  CHECK(h.running.size() == 1);
  CHECK(h.workload_of[h.running.begin()->first] == "free");
  // Paid arrives after being idle: it gets its 8:1 share from now on, not a burst of catch-up.
  int first_paid = -1;
  for (int i = 0; i < 40; ++i) {
    int id = h.submit({.workload = "paid", .user = "p"});
    if (first_paid < 0) first_paid = id;
  }
  std::map<std::string, int> count;
  for (int i = 0; i < 27; ++i)
    count[h.workload_of[h.finish_oldest()]]++;
  // 27 releases: the running free one, then about 8 paid per free.
  CHECK(count["paid"] >= 22);
  CHECK(count["free"] >= 3);
}

TEST_CASE("scheduler: strict bands always go first") {
  auto config = paid_free_config(1);
  config.workloads[0].band = 1;  // paid above free, whatever the weights
  config.workloads[0].priority = 1;
  config.workloads[1].priority = 100;
  Harness h(config);
  h.submit({.workload = "free", .user = "f0"});  // runs
  for (int i = 0; i < 30; ++i)
    h.submit({.workload = "free", .user = std::string(1, 'f') += std::to_string(i % 3)});
  for (int i = 0; i < 30; ++i)
    h.submit({.workload = "paid", .user = std::string(1, 'p') += std::to_string(i % 3)});
  h.finish_oldest();
  for (int i = 0; i < 30; ++i) {
    CHECK(h.workload_of[h.running.begin()->first] == "paid");
    h.finish_oldest();
  }
  CHECK(h.workload_of[h.running.begin()->first] == "free");
}

TEST_CASE("scheduler: a flooding user delays a newcomer by at most about one request") {
  Harness h(paid_free_config(1));
  for (int i = 0; i < 501; ++i)
    h.submit({.workload = "free", .user = "flood"});
  h.finish_oldest();
  h.finish_oldest();
  int alice = h.submit({.workload = "free", .user = "alice"});
  CHECK(h.is_parked(alice));
  h.finish_oldest();  // the flood request running when alice arrived
  CHECK(h.is_running(alice));
}

TEST_CASE("scheduler: exact round-robin between keys of equal cost") {
  Harness h(paid_free_config(1));
  h.submit({.user = "x"});  // occupies the slot
  for (int i = 0; i < 4; ++i) {
    for (const char* u : {"a", "b", "c"})
      h.submit({.user = u});
  }
  h.finish_oldest();
  std::string seen;
  for (int i = 0; i < 12; ++i)
    seen += h.user_of[h.finish_oldest()];
  CHECK(seen == "abcabcabcabc");
}

TEST_CASE("scheduler: per-key limit holds back only its own key") {
  auto config = paid_free_config(3);
  config.per_key = {{.label = "user", .max_concurrency = 1}};
  Harness h(config);
  std::vector<int> a;
  for (int i = 0; i < 10; ++i)
    a.push_back(h.submit({.user = "a", .keys = {"a"}}));
  CHECK(h.running.size() == 1);  // a is capped at one; two slots stay free for others
  int b = h.submit({.user = "b", .keys = {"b"}});
  CHECK(h.is_running(b));  // not stuck behind a's nine parked requests
  int c = h.submit({.user = "c", .keys = {"c"}});
  CHECK(h.is_running(c));
  h.finish(a[0]);
  CHECK(h.is_running(a[1]));
  CHECK(h.running.size() == 3);
}

TEST_CASE("scheduler: per-model limit, no head-of-line blocking even within one user") {
  auto config = paid_free_config(4);
  config.per_key = {{.label = "model", .max_concurrency = 1}};
  Harness h(config);
  int x1 = h.submit({.user = "a", .keys = {"mistral"}});
  int x2 = h.submit({.user = "a", .keys = {"mistral"}});
  int y1 = h.submit({.user = "a", .keys = {"llama"}});
  int other = h.submit({.user = "b", .keys = {"mistral"}});
  CHECK(h.is_running(x1));
  CHECK(h.is_parked(x2));
  CHECK(h.is_running(y1));  // a's llama request is not stuck behind its own mistral one
  CHECK(h.is_parked(other));
  h.finish(x1);
  // Next mistral turn: fair order between a and b. a was just served, so b goes.
  CHECK(h.is_running(other));
  CHECK(h.is_parked(x2));
}

TEST_CASE("scheduler: per-key token budget counts the new request's own cost") {
  auto config = paid_free_config(10);
  config.per_key = {{.label = "user", .max_tokens = 1000}};
  Harness h(config);
  int a = h.submit({.user = "u", .keys = {"u"}, .cost = 600});
  CHECK(h.is_running(a));
  int b = h.submit({.user = "u", .keys = {"u"}, .cost = 500});  // 600 + 500 > 1000
  CHECK(h.is_parked(b));
  int c = h.submit({.user = "v", .keys = {"v"}, .cost = 900});
  CHECK(h.is_running(c));
  h.finish(a);
  CHECK(h.is_running(b));
  // One request larger than the whole budget still runs alone (never starves).
  int d = h.submit({.user = "w", .keys = {"w"}, .cost = 5000});
  CHECK(h.is_running(d));
}

TEST_CASE("scheduler: global token budget holds the queue in fair order (no bypass)") {
  auto config = paid_free_config(10);
  config.max_inflight_tokens = 1000;
  Harness h(config);
  int a = h.submit({.user = "a", .cost = 800});
  int big = h.submit({.user = "b", .cost = 500});
  CHECK(h.is_running(a));
  CHECK(h.is_parked(big));
  int small = h.submit({.user = "c", .cost = 100});
  CHECK(h.is_parked(small));  // would fit, but must not jump the big one
  h.finish(a);
  CHECK(h.is_running(big));
  CHECK(h.is_running(small));  // 500 + 100 fits
  // Cancelling a held-back head lets the next one go at once.
  int huge = h.submit({.user = "d", .cost = 900});
  int tiny = h.submit({.user = "e", .cost = 1});
  CHECK(h.is_parked(huge));
  CHECK(h.is_parked(tiny));
  CHECK(h.cancel(huge));
  CHECK(h.is_running(tiny));
}

TEST_CASE("scheduler: a newcomer can move fair order so a held request becomes next") {
  // Global token budget 1000. X (paid, 990 tokens) is first in fair order but does not fit, so
  // it holds everyone. Newcomer e is ahead of X inside paid and fits; serving it moves paid's
  // virtual time past free's, so Y (free, 50 tokens) is now next, fits, and must be admitted by
  // that same enqueue call.
  auto config = paid_free_config(10);
  config.max_inflight_tokens = 1000;
  Harness h(config);
  h.finish(h.submit({.workload = "paid", .user = "x", .cost = 80}));
  int r = h.submit({.workload = "free", .user = "r", .cost = 20});
  CHECK(h.is_running(r));
  int x = h.submit({.workload = "paid", .user = "x", .cost = 990});
  int y = h.submit({.workload = "free", .user = "y", .cost = 50});
  CHECK(h.is_parked(x));
  CHECK(h.is_parked(y));
  int e = h.submit({.workload = "paid", .user = "e", .cost = 100});
  CHECK(h.is_running(e));
  CHECK(h.is_running(y));
  CHECK(h.is_parked(x));
}

TEST_CASE("scheduler: queue bounds reject instead of parking") {
  auto config = paid_free_config(1);
  config.max_queue = 3;
  config.workloads[1].max_queue = 2;
  config.per_key = {{.label = "user", .max_queue = 1}};
  Harness h(config);
  h.submit({.user = "r", .keys = {"r"}});  // runs
  h.submit({.workload = "free", .user = "f1", .keys = {"f1"}});
  CHECK(h.last.kind == EnqueueResult::Kind::parked);
  h.submit({.workload = "free", .user = "f1", .keys = {"f1"}});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
  CHECK(h.last.reason == RejectReason::key_queue_full);
  CHECK(reason_name(h.last.reason) == "user_queue_full");
  h.submit({.workload = "free", .user = "f2", .keys = {"f2"}});
  CHECK(h.last.kind == EnqueueResult::Kind::parked);
  h.submit({.workload = "free", .user = "f3", .keys = {"f3"}});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
  CHECK(h.last.reason == RejectReason::workload_queue_full);
  CHECK(reason_name(h.last.reason) == "queue_full");
  h.submit({.workload = "paid", .user = "p1", .keys = {"p1"}});
  CHECK(h.last.kind == EnqueueResult::Kind::parked);
  h.submit({.workload = "paid", .user = "p2", .keys = {"p2"}});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
  CHECK(h.last.reason == RejectReason::queue_full);
  CHECK(h.sched.parked() == 3);
  // A request that can run at once is never rejected by a full queue.
  h.finish_oldest();
  CHECK(h.sched.parked() == 2);
}

TEST_CASE("scheduler: max_queue 0 never parks") {
  auto config = paid_free_config(1);
  config.max_queue = 0;
  Harness h(config);
  h.submit({.user = "a"});
  CHECK(h.last.kind == EnqueueResult::Kind::admitted);
  h.submit({.user = "b"});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
}

TEST_CASE("scheduler: deadlines expire exactly at their time") {
  auto config = paid_free_config(1);
  config.workloads[1].queue_timeout = 2s;
  config.queue_timeout_cap = 10s;
  Harness h(config);
  h.now = at(1s);
  h.submit({.user = "busy"});
  int header = h.submit({.workload = "free", .user = "a", .timeout = 500ms});
  CHECK(h.last.deadline == at(1500ms));
  int workload = h.submit({.workload = "free", .user = "b"});
  CHECK(h.last.deadline == at(3s));
  int cap = h.submit({.workload = "paid", .user = "c", .timeout = 1h});
  CHECK(h.last.deadline == at(11s));  // paid's 24 h is capped at 10 s
  CHECK(h.sched.next_deadline() == at(1500ms));
  CHECK(h.advance_to(at(1500ms) - 1ns).empty());
  CHECK(h.advance_to(at(1500ms)) == std::vector<int>{header});
  CHECK(h.sched.next_deadline() == at(3s));
  CHECK(h.advance_to(at(3s)) == std::vector<int>{workload});
  CHECK(h.advance_to(at(11s)) == std::vector<int>{cap});
  CHECK_FALSE(h.sched.next_deadline());
  CHECK(h.sched.parked() == 0);
}

TEST_CASE("scheduler: expiry order follows deadlines, ties by arrival") {
  Harness h(paid_free_config(1));
  h.submit({.user = "busy"});
  int a = h.submit({.user = "a", .timeout = 3s});
  int b = h.submit({.user = "b", .timeout = 1s});
  int c = h.submit({.user = "c", .timeout = 1s});
  CHECK(h.advance_to(at(5s)) == std::vector<int>{b, c, a});
}

TEST_CASE("scheduler: zero timeout expires at once if it cannot run") {
  Harness h(paid_free_config(1));
  h.submit({.user = "busy"});
  int a = h.submit({.user = "a", .timeout = 0ms});
  CHECK(h.is_parked(a));
  CHECK(h.advance_to(h.now) == std::vector<int>{a});
}

TEST_CASE("scheduler: cancel and release are idempotent, stale handles are ignored") {
  Harness h(paid_free_config(1));
  int a = h.submit({.user = "a"});
  h.submit({.user = "b"});
  Ticket b_ticket = h.last.ticket;
  std::vector<Admission> out;
  CHECK(h.sched.cancel(b_ticket, h.now, out));
  CHECK_FALSE(h.sched.cancel(b_ticket, h.now, out));
  CHECK_FALSE(h.sched.cancel(Ticket{}, h.now, out));
  CHECK_FALSE(h.sched.cancel(Ticket{0xdeadbeefULL << 32 | 77}, h.now, out));
  Permit pa = h.running[a];
  CHECK_FALSE(h.sched.cancel(Ticket{pa.value}, h.now, out));  // admitted: not cancellable
  CHECK(h.sched.release(pa, -1, h.now, out));
  CHECK_FALSE(h.sched.release(pa, -1, h.now, out));
  h.running.erase(a);
  // The freed slot is reused by the next request; the old handles still mean nothing.
  h.submit({.user = "c"});
  CHECK(h.last.kind == EnqueueResult::Kind::admitted);
  CHECK_FALSE(h.sched.release(pa, -1, h.now, out));
  CHECK_FALSE(h.sched.cancel(b_ticket, h.now, out));
  CHECK(out.empty());
  h.check();
}

TEST_CASE("scheduler: a cancelled parked request gives its place to nobody and takes no slot") {
  Harness h(paid_free_config(1));
  h.submit({.user = "busy"});
  int a = h.submit({.user = "a"});
  int b = h.submit({.user = "b"});
  CHECK(h.cancel(a));
  CHECK(h.sched.in_flight() == 1);
  h.finish_oldest();
  CHECK(h.is_running(b));
}

TEST_CASE("scheduler: charge-back of real cost changes later order") {
  // a and b alternate at equal estimates. Then a's requests turn out 10x longer than estimated:
  // a must get about a tenth of b's turns afterwards.
  Harness h(paid_free_config(1));
  for (int i = 0; i < 200; ++i) {
    h.submit({.user = "a", .cost = 100});
    h.submit({.user = "b", .cost = 100});
  }
  std::map<std::string, int> turns;
  for (int i = 0; i < 110; ++i) {
    int running = h.running.begin()->first;
    turns[h.user_of[running]]++;
    h.finish(running, h.user_of[running] == "a" ? 1000 : 100);
  }
  INFO("a " << turns["a"] << " b " << turns["b"]);
  CHECK(turns["a"] <= 12);
  CHECK(turns["b"] >= 98);

  // Without charge-back (actual unknown), the split stays even.
  Harness even(paid_free_config(1));
  for (int i = 0; i < 200; ++i) {
    even.submit({.user = "a", .cost = 100});
    even.submit({.user = "b", .cost = 100});
  }
  std::map<std::string, int> even_turns;
  for (int i = 0; i < 110; ++i) {
    int running = even.running.begin()->first;
    even_turns[even.user_of[running]]++;
    even.finish(running);
  }
  CHECK(std::abs(even_turns["a"] - even_turns["b"]) <= 1);
}

TEST_CASE("scheduler: X-Priority overrides the workload's weight") {
  Harness h(paid_free_config(1));
  h.submit({.user = "busy"});
  std::map<int, bool> boosted;
  for (int i = 0; i < 90; ++i) {
    boosted[h.submit({.user = "hi", .priority = 8})] = true;
    h.submit({.user = "lo"});
  }
  h.finish_oldest();
  int hi = 0;
  for (int i = 0; i < 90; ++i)
    hi += boosted.count(h.finish_oldest()) ? 1 : 0;
  CHECK(hi == doctest::Approx(80).epsilon(0.05));
}

TEST_CASE("scheduler: reconfigure raises and lowers concurrency, keeps parked places") {
  Harness h(paid_free_config(1));
  std::vector<int> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(h.submit({.user = "u"}));
  CHECK(h.running.size() == 1);
  auto config = paid_free_config(3);
  std::vector<Admission> out;
  CHECK(h.sched.reconfigure(config, h.now, out) == "");
  h.absorb(out);
  CHECK(h.running.size() == 3);
  CHECK(h.admitted_order == std::vector<int>{ids[0], ids[1], ids[2]});  // FIFO kept
  out.clear();
  CHECK(h.sched.reconfigure(paid_free_config(1), h.now, out) == "");
  CHECK(out.empty());
  h.check();  // 3 in flight above the new limit of 1 is allowed until they finish
  h.finish(ids[0]);
  h.finish(ids[1]);
  CHECK(h.running.size() == 1);  // no admission until below the new limit
  h.finish(ids[2]);
  CHECK(h.is_running(ids[3]));
  CHECK(h.running.size() == 1);
}

TEST_CASE("scheduler: reconfigure rejects invalid configs and per-key label changes") {
  auto config = paid_free_config(1);
  config.per_key = {{.label = "user", .max_concurrency = 1}};
  Harness h(config);
  h.submit({.user = "u", .keys = {"u"}});
  std::vector<Admission> out;
  auto bad = config;
  bad.max_concurrency = 0;
  CHECK(h.sched.reconfigure(bad, h.now, out).find("max_concurrency") == 0);
  auto relabel = config;
  relabel.per_key[0].label = "model";
  CHECK(h.sched.reconfigure(relabel, h.now, out).find("per_key[0].label") == 0);
  CHECK(h.sched.config().max_concurrency == 1);
  CHECK(h.sched.config().per_key[0].label == "user");
}

TEST_CASE("scheduler: reconfigure adds, changes and retires workloads by name") {
  Harness h(paid_free_config(1));
  h.submit({.workload = "paid", .user = "p"});
  int parked_free = h.submit({.workload = "free", .user = "f"});
  auto config = paid_free_config(1);
  config.workloads.erase(config.workloads.begin() + 1);  // drop "free"
  config.workloads.push_back({.name = "batch", .match = {{"tier", {"batch"}}}, .priority = 2});
  std::vector<Admission> out;
  CHECK(h.sched.reconfigure(config, h.now, out) == "");
  CHECK_FALSE(h.sched.find_workload("free"));
  CHECK(h.sched.find_workload("batch"));
  CHECK(h.sched.workload(h.sched.classify(Labels{{"tier", "free"}})).name == "default");
  // The parked free request keeps its place and is served.
  h.finish_oldest();
  CHECK(h.is_running(parked_free));
  auto snap = h.sched.snapshot(h.now);
  bool saw_retired = false;
  for (auto& w : snap.workloads)
    saw_retired |= (w.name == "free" && w.retired);
  CHECK(saw_retired);
  h.finish(parked_free);
  snap = h.sched.snapshot(h.now);
  for (auto& w : snap.workloads)
    CHECK(w.name != "free");
}

TEST_CASE("scheduler: drain rejects parked requests and later arrivals, permits stay valid") {
  Harness h(paid_free_config(1));
  int a = h.submit({.user = "a"});
  h.submit({.user = "b"});
  h.submit({.user = "c"});
  std::vector<Ticket> rejected;
  h.sched.drain(rejected);
  CHECK(rejected.size() == 2);
  CHECK(h.sched.parked() == 0);
  h.submit({.user = "d"});
  CHECK(h.last.kind == EnqueueResult::Kind::rejected);
  CHECK(h.last.reason == RejectReason::shutting_down);
  for (auto t : rejected)
    h.ticket_to_id.erase(t.value);
  h.finish(a);
  CHECK(h.sched.in_flight() == 0);
}

TEST_CASE("scheduler: Retry-After follows the drain rate") {
  auto config = paid_free_config(1);
  config.queue_timeout_cap = 200s;
  Harness h(config);
  CHECK(h.sched.retry_after_seconds(h.now) == 1);  // nothing observed yet
  for (int i = 0; i < 20; ++i)
    h.submit({.user = "u"});
  for (int i = 0; i < 10; ++i) {
    h.now += 2s;  // one completion every 2 s
    h.finish_oldest();
  }
  // 9 parked + the newcomer at 0.5/s: 20 s.
  CHECK(h.sched.parked() == 9);
  CHECK(h.sched.retry_after_seconds(h.now) == 20);
  for (int i = 0; i < 500; ++i)
    h.submit({.user = "v"});
  CHECK(h.sched.retry_after_seconds(h.now) == 200);  // clamped to the cap
}

TEST_CASE("scheduler: snapshot reports parked, in flight, oldest wait per workload and key") {
  auto config = paid_free_config(1);
  config.per_key = {{.label = "model"}};
  Harness h(config);
  h.now = at(10s);
  h.submit({.workload = "paid", .user = "p", .keys = {"mistral"}, .cost = 7});
  h.submit({.workload = "free", .user = "f", .keys = {"mistral"}});
  h.now = at(12s);
  h.submit({.workload = "free", .user = "g", .keys = {"mistral"}});
  h.now = at(15s);
  auto snap = h.sched.snapshot(h.now);
  CHECK(snap.parked == 2);
  CHECK(snap.in_flight == 1);
  CHECK(snap.in_flight_tokens == 7);
  std::map<std::string, sluice::core::WorkloadStats> by_name;
  for (auto& w : snap.workloads)
    by_name[w.name] = w;
  CHECK(by_name["paid"].in_flight == 1);
  CHECK(by_name["free"].parked == 2);
  CHECK(by_name["free"].oldest_wait == 5s);
  CHECK_FALSE(by_name["paid"].oldest_wait);
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> keys;
  for (auto& k : snap.keys)
    keys[k.label + "=" + k.value] = {k.parked, k.in_flight};
  CHECK(keys["user=f"] == std::pair<std::int64_t, std::int64_t>{1, 0});
  CHECK(keys["user=p"] == std::pair<std::int64_t, std::int64_t>{0, 1});
  CHECK(keys["model=mistral"] == std::pair<std::int64_t, std::int64_t>{2, 1});
}

TEST_CASE("scheduler: an idle key keeps its debt until the others catch up, then is forgotten") {
  Harness h(paid_free_config(1));
  h.finish(h.submit({.user = "heavy", .cost = 1000}));
  // heavy's tag is 1000 ahead of the class's virtual time: going idle must not reset it.
  CHECK(h.sched.idle_account_stats().remembered == 1);
  h.submit({.user = "x"});  // holds the slot
  const int heavy = h.submit({.user = "heavy"});
  std::vector<int> light;
  for (int i = 0; i < 3; ++i)
    light.push_back(h.submit({.user = "light"}));
  h.finish_oldest();
  // Forgotten, heavy would start level with light and go first (it arrived first).
  for (int id : light) {
    CHECK(h.is_running(id));
    h.finish(id);
  }
  CHECK(h.is_running(heavy));
  // x and light went idle ahead of the virtual time, which heavy's turn has now moved past them:
  // they owe nothing any more, and the retirements that follow forget them (a couple of visits
  // each), leaving only heavy, whose turn put it ahead again.
  h.finish(heavy);
  h.finish(h.submit({.user = "y"}));
  CHECK(h.sched.idle_account_stats().remembered == 2);  // heavy and y
}

// Anyone can send a new X-User-Id with every request. Each new key starts at its class's virtual
// time and its one request moves its tag past it, so every such account goes idle still ahead
// and is remembered. Keeping them must not make later requests dearer: the work spent on idle
// accounts per request stays a small constant (it grew with their number, O(n) per request, when
// a full sweep ran on nearly every retirement), and their number stays capped, oldest forgotten.
TEST_CASE("scheduler: idle accounts cost O(1) per request however many keys were seen") {
  Scheduler sched(paid_free_config(1));
  const auto w = *sched.find_workload("default");
  std::vector<Admission> admitted;
  constexpr std::uint64_t kRequests = 300'000;
  constexpr std::uint64_t kVisitsPerRequest = 4;
  Time now{};
  auto request = [&](const std::string& key) {
    return sluice::core::Request{.workload = w, .fairness_key = key, .cost = 100};
  };
  for (std::uint64_t i = 0; i < kRequests; ++i) {
    now += 1ms;
    const std::string key = "user-" + std::to_string(i);
    EnqueueResult r = sched.enqueue(request(key), now, admitted);
    REQUIRE(r.kind == EnqueueResult::Kind::admitted);
    REQUIRE(sched.release(r.permit, 100, now, admitted));
    if ((i + 1) % 1000 == 0) {
      const auto stats = sched.idle_account_stats();
      INFO("after " << i + 1 << " requests: " << stats.visits << " visits, " << stats.remembered
                    << " remembered");
      REQUIRE(stats.visits <= kVisitsPerRequest * (i + 1));
      REQUIRE(stats.remembered <= sluice::core::kMaxIdleAccounts);
    }
    if ((i + 1) % 100'000 == 0) REQUIRE(sched.check_invariants() == "");
  }
  CHECK(admitted.empty());
  // None could be forgotten for free (new keys never move the virtual time), so the cap is full.
  CHECK(sched.idle_account_stats().remembered == sluice::core::kMaxIdleAccounts);

  // The cap forgot the oldest: user-0 starts afresh, while the newest still owes its request and
  // waits behind it although it arrived first.
  now += 1ms;
  EnqueueResult busy = sched.enqueue(request("busy"), now, admitted);
  REQUIRE(busy.kind == EnqueueResult::Kind::admitted);
  EnqueueResult newest =
      sched.enqueue(request("user-" + std::to_string(kRequests - 1)), now, admitted);
  EnqueueResult oldest = sched.enqueue(request("user-0"), now, admitted);
  REQUIRE(newest.kind == EnqueueResult::Kind::parked);
  REQUIRE(oldest.kind == EnqueueResult::Kind::parked);
  REQUIRE(sched.release(busy.permit, -1, now, admitted));
  REQUIRE(admitted.size() == 1);
  CHECK(admitted[0].ticket == oldest.ticket);
  CHECK(sched.check_invariants() == "");
}

// Thousands of random event sequences; after every step the core's own invariant check runs
// (counters, heaps, FIFO, readiness, limits, work conservation), and this model independently
// checks that every request ends exactly once and that limits hold from the outside.
TEST_CASE("scheduler: randomized model check") {
  for (std::uint64_t seed = 1; seed <= 2000; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) { return static_cast<std::int64_t>(rng() % n); };
    SchedulerConfig config = paid_free_config(1 + pick(4));
    config.max_queue = 5 + pick(40);
    config.queue_timeout_cap = std::chrono::milliseconds(50 + pick(500));
    config.workloads[0].band = static_cast<int>(pick(2));
    config.workloads[1].max_queue = pick(2) ? 0 : 3 + pick(10);
    if (pick(2)) config.max_inflight_tokens = 200 + pick(800);
    const bool user_limit = pick(2);
    const bool model_limit = pick(2);
    if (user_limit) {
      config.per_key.push_back({.label = "user",
                                .max_concurrency = 1 + pick(2),
                                .max_tokens = pick(2) ? 0 : 300 + pick(500),
                                .max_queue = pick(2) ? 0 : 2 + pick(6)});
    }
    if (model_limit) config.per_key.push_back({.label = "model", .max_concurrency = 1 + pick(2)});
    Harness h(config);
    std::set<int> ended;
    std::int64_t max_concurrency = config.max_concurrency;
    bool lowered = false;
    const char* workloads[] = {"paid", "free", "default"};
    const char* models[] = {"m1", "m2"};
    std::map<int, std::pair<std::string, std::string>> keys_of;  // id -> (user, model)

    for (int step = 0; step < 120; ++step) {
      int op = static_cast<int>(pick(100));
      if (op < 45) {
        std::string user = "u" + std::to_string(pick(5));
        std::string model = models[pick(2)];
        Req r{.workload = workloads[pick(3)],
              .user = user,
              .cost = 1 + pick(300),
              .priority = pick(5) == 0 ? static_cast<double>(1 + pick(10)) : 0};
        if (user_limit) r.keys.push_back(user);
        if (model_limit) r.keys.push_back(model);
        if (pick(3) == 0) r.timeout = std::chrono::milliseconds(pick(300));
        int id = h.submit(r);
        keys_of[id] = {user, model};
        if (h.last.kind == EnqueueResult::Kind::rejected) ended.insert(id);
      } else if (op < 70 && !h.running.empty()) {
        auto it = h.running.begin();
        std::advance(it, pick(h.running.size()));
        int id = it->first;
        h.finish(id, pick(3) == 0 ? -1 : pick(600));
        CHECK(ended.insert(id).second);
      } else if (op < 80 && !h.ticket_to_id.empty()) {
        auto it = h.ticket_to_id.begin();
        std::advance(it, pick(h.ticket_to_id.size()));
        int id = it->second;
        std::uint64_t value = it->first;
        CHECK(h.cancel(id));
        CHECK(ended.insert(id).second);
        std::vector<Admission> out;
        CHECK_FALSE(h.sched.cancel(Ticket{value}, h.now, out));  // second cancel: no-op
      } else if (op < 95) {
        for (int id : h.advance_to(h.now + std::chrono::milliseconds(pick(120)))) {
          CHECK(ended.insert(id).second);
        }
      } else {
        auto next = config;
        next.max_concurrency = 1 + pick(4);
        next.workloads[0].priority = static_cast<double>(1 + pick(10));
        next.workloads[0].band = static_cast<int>(pick(2));
        std::vector<Admission> out;
        REQUIRE(h.sched.reconfigure(next, h.now, out) == "");
        h.absorb(out);
        if (next.max_concurrency < max_concurrency) lowered = true;
        max_concurrency = next.max_concurrency;
        config = next;
      }
      // Outside view of the limits (skipped while a lowering is still draining).
      if (lowered && static_cast<std::int64_t>(h.running.size()) <= max_concurrency)
        lowered = false;
      if (!lowered) CHECK(static_cast<std::int64_t>(h.running.size()) <= max_concurrency);
      if (user_limit) {
        std::map<std::string, std::int64_t> per_user;
        for (auto& [id, _] : h.running)
          ++per_user[keys_of[id].first];
        for (auto& [_, n] : per_user)
          CHECK(n <= config.per_key[0].max_concurrency);
      }
      // Every request is in exactly one place.
      for (auto& [id, _] : h.running)
        CHECK_FALSE(ended.count(id));
      for (auto& [_, id] : h.ticket_to_id)
        CHECK_FALSE(ended.count(id));
      CHECK(h.running.size() + h.ticket_to_id.size() + ended.size() ==
            static_cast<std::size_t>(h.next_id));
    }
    // Wind down: everything ends, nothing leaks.
    std::vector<Ticket> rejected;
    h.sched.drain(rejected);
    for (Ticket t : rejected) {
      REQUIRE(h.ticket_to_id.count(t.value));
      CHECK(ended.insert(h.ticket_to_id[t.value]).second);
      h.ticket_to_id.erase(t.value);
    }
    while (!h.running.empty())
      CHECK(ended.insert(h.finish_oldest()).second);
    CHECK(ended.size() == static_cast<std::size_t>(h.next_id));
    CHECK(h.sched.parked() == 0);
    CHECK(h.sched.in_flight() == 0);
    auto snap = h.sched.snapshot(h.now);
    CHECK(snap.keys.empty());
    CHECK(snap.in_flight_tokens == 0);
  }
}
