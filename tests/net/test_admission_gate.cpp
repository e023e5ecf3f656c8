// The admission gate on a manual clock: the io_context is stepped with poll() and time only
// moves when a test moves it, so deadlines are checked to the nanosecond and nothing sleeps.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sluice/net/admission_gate.hpp"
#include "sluice/net/admission_gate_impl.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using sluice::core::RejectReason;
using sluice::core::SchedulerConfig;
using sluice::net::AdmitResult;

struct ManualClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<ManualClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept { return current; }
  static inline time_point current{std::chrono::hours(1)};
};

// Asio sleeps in real time until a timer's expiry (via timerfd). Telling it every manual-clock
// wait is zero makes each reactor pass (each poll()) re-check the timer queue against
// ManualClock::now(), so a test fires timers by advancing the clock and polling.
template <>
struct boost::asio::wait_traits<ManualClock> {
  static ManualClock::duration to_wait_duration(const ManualClock::duration&) { return {}; }
  static ManualClock::duration to_wait_duration(const ManualClock::time_point&) { return {}; }
};

namespace sluice::net {
template class BasicAdmissionGate<ManualClock>;
}
using Gate = sluice::net::BasicAdmissionGate<ManualClock>;
using Kind = AdmitResult::Kind;

namespace {

SchedulerConfig config(std::int64_t max_concurrency, std::chrono::milliseconds timeout = 10s) {
  SchedulerConfig c;
  c.max_concurrency = max_concurrency;
  c.max_queue = 100;
  c.queue_timeout_cap = 60s;
  c.workloads = {
      {.name = "paid", .match = {{"tier", {"paid"}}}, .priority = 8, .queue_timeout = timeout}};
  c.default_workload = {.name = "default", .priority = 1, .queue_timeout = timeout};
  return c;
}

// One request's life, driven from the test: admit, then hold the slot until told to finish.
struct Client {
  std::string user;
  std::optional<AdmitResult> result;
  bool cancelled_by_disconnect = false;
};

asio::awaitable<void> run_client(Gate& gate, Client& client, sluice::core::WorkloadId workload,
                                 std::optional<std::chrono::milliseconds> timeout = {}) {
  sluice::core::Request r{
      .workload = workload, .fairness_key = client.user, .cost = 10, .queue_timeout = timeout};
  client.result = co_await gate.admit(r);
}

// Same, but racing the admission against a "disconnect" timer that the test cancels.
asio::awaitable<void> run_client_until_disconnect(Gate& gate, Client& client,
                                                  Gate::timer_type& disconnect) {
  sluice::core::Request r{.workload = 0, .fairness_key = client.user, .cost = 10};
  auto watch = [&]() -> asio::awaitable<void> {
    co_await disconnect.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  auto outcome = co_await (gate.admit(r) || watch());
  if (outcome.index() == 0) {
    client.result = std::move(std::get<0>(outcome));
  } else {
    client.cancelled_by_disconnect = true;
  }
}

struct Fixture {
  asio::io_context io;
  Gate gate{io.get_executor(), config(1)};
  sluice::core::WorkloadId paid = *gate.scheduler().find_workload("paid");
  sluice::core::WorkloadId def = *gate.scheduler().find_workload("default");

  void spawn(Client& c, sluice::core::WorkloadId w,
             std::optional<std::chrono::milliseconds> timeout = {}) {
    asio::co_spawn(io, run_client(gate, c, w, timeout), asio::detached);
    step();
  }
  void step() {
    io.restart();
    io.poll();
  }
  void advance(std::chrono::nanoseconds d) {
    ManualClock::current += d;
    step();
  }
};

}  // namespace

TEST_CASE("gate: admits at once, parks beyond the limit, a release wakes the next at once") {
  Fixture f;
  Client a{"a"}, b{"b"};
  f.spawn(a, f.def);
  REQUIRE(a.result);
  CHECK(a.result->kind == Kind::admitted);
  CHECK(a.result->waited == 0ns);
  f.spawn(b, f.def);
  CHECK_FALSE(b.result);
  CHECK(f.gate.waiting() == 1);
  f.advance(250ms);
  CHECK_FALSE(b.result);
  a.result->slot.release();
  f.step();  // no time passes: the release itself wakes b
  REQUIRE(b.result);
  CHECK(b.result->kind == Kind::admitted);
  CHECK(b.result->waited == 250ms);
  CHECK(f.gate.scheduler().in_flight() == 1);
  b.result->slot.release();
  CHECK(f.gate.scheduler().in_flight() == 0);
}

TEST_CASE("gate: wakes parked requests in fair order (paid before default)") {
  Fixture f;
  Client holder{"h"}, d1{"d1"}, d2{"d2"}, p1{"p1"};
  f.spawn(holder, f.def);
  f.spawn(d1, f.def);
  f.spawn(d2, f.def);
  f.spawn(p1, f.paid);
  holder.result->slot.release();
  f.step();
  CHECK(p1.result);
  CHECK_FALSE(d1.result);
  CHECK(p1.result->workload == f.paid);
  p1.result->slot.release();
  f.step();
  CHECK(d1.result);
  CHECK_FALSE(d2.result);
  d1.result->slot.release();
  f.step();
  CHECK(d2.result);
}

TEST_CASE("gate: a parked request times out exactly at its deadline") {
  Fixture f;
  Client holder{"h"}, w{"w"};
  f.spawn(holder, f.def);
  f.spawn(w, f.def, 300ms);
  f.advance(300ms - 1ns);
  CHECK_FALSE(w.result);
  f.advance(1ns);
  REQUIRE(w.result);
  CHECK(w.result->kind == Kind::timed_out);
  CHECK(w.result->waited == 300ms);
  CHECK(f.gate.scheduler().parked() == 0);
  CHECK(f.gate.waiting() == 0);
}

TEST_CASE("gate: the deadline timer follows the earliest deadline as requests come and go") {
  Fixture f;
  Client holder{"h"}, late{"late"}, early{"early"};
  f.spawn(holder, f.def);
  f.spawn(late, f.def, 900ms);
  f.spawn(early, f.def, 200ms);  // earlier than the armed deadline: the timer must move
  f.advance(200ms);
  REQUIRE(early.result);
  CHECK(early.result->kind == Kind::timed_out);
  CHECK_FALSE(late.result);
  f.advance(700ms);
  REQUIRE(late.result);
  CHECK(late.result->kind == Kind::timed_out);
}

TEST_CASE("gate: a client that disconnects while parked leaves the queue and takes no slot") {
  Fixture f;
  Client holder{"h"}, gone{"gone"}, next{"next"};
  f.spawn(holder, f.def);
  Gate::timer_type disconnect(f.io, Gate::timer_type::time_point::max());
  asio::co_spawn(f.io, run_client_until_disconnect(f.gate, gone, disconnect), asio::detached);
  f.step();
  f.spawn(next, f.def);
  CHECK(f.gate.scheduler().parked() == 2);
  disconnect.cancel();  // the client went away
  f.step();
  CHECK(gone.cancelled_by_disconnect);
  CHECK_FALSE(gone.result);
  CHECK(f.gate.scheduler().parked() == 1);
  CHECK(f.gate.waiting() == 1);
  holder.result->slot.release();
  f.step();
  REQUIRE(next.result);  // the departed client's place went to nobody
  CHECK(next.result->kind == Kind::admitted);
  CHECK(f.gate.scheduler().in_flight() == 1);
}

TEST_CASE("gate: admitted and disconnected in the same instant releases the slot") {
  Fixture f;
  Client holder{"h"}, racer{"racer"}, next{"next"};
  f.spawn(holder, f.def);
  Gate::timer_type disconnect(f.io, Gate::timer_type::time_point::max());
  asio::co_spawn(f.io, run_client_until_disconnect(f.gate, racer, disconnect), asio::detached);
  f.step();
  f.spawn(next, f.def);
  // Both happen before the io_context runs again: racer is admitted, then its client leaves.
  holder.result->slot.release();
  disconnect.cancel();
  f.step();
  f.step();
  // Whichever branch won, racer's slot must not leak: next gets it.
  if (racer.result) {
    CHECK(racer.result->kind == Kind::admitted);
    racer.result->slot.release();
    f.step();
  }
  REQUIRE(next.result);
  CHECK(next.result->kind == Kind::admitted);
  CHECK(f.gate.scheduler().in_flight() == 1);
  next.result->slot.release();
  CHECK(f.gate.scheduler().in_flight() == 0);
}

TEST_CASE("gate: drain rejects parked and later requests; held slots stay valid") {
  Fixture f;
  Client holder{"h"}, p{"p"}, late{"late"};
  f.spawn(holder, f.def);
  f.spawn(p, f.def);
  f.gate.drain();
  f.step();
  REQUIRE(p.result);
  CHECK(p.result->kind == Kind::rejected);
  CHECK(p.result->reason == RejectReason::shutting_down);
  f.spawn(late, f.def);
  REQUIRE(late.result);
  CHECK(late.result->kind == Kind::rejected);
  CHECK(late.result->reason == RejectReason::shutting_down);
  CHECK(f.gate.scheduler().in_flight() == 1);
  holder.result->slot.release();
  CHECK(f.gate.scheduler().in_flight() == 0);
}

TEST_CASE("gate: reconfigure raising the limit wakes parked requests at once") {
  Fixture f;
  std::vector<Client> clients(5);
  for (int i = 0; i < 5; ++i) {
    clients[i].user = "u" + std::to_string(i);
    f.spawn(clients[i], f.def);
  }
  CHECK(f.gate.scheduler().in_flight() == 1);
  CHECK(f.gate.reconfigure(config(3)) == "");
  f.step();
  int admitted = 0;
  for (auto& c : clients)
    admitted += c.result ? 1 : 0;
  CHECK(admitted == 3);
  auto bad = config(3);
  bad.max_concurrency = 0;
  CHECK(f.gate.reconfigure(bad).find("max_concurrency") == 0);
  CHECK(f.gate.scheduler().config().max_concurrency == 3);
}

TEST_CASE("gate: slots release exactly once, on destruction, and survive moves") {
  Fixture f;
  Client a{"a"}, b{"b"}, c{"c"};
  f.spawn(a, f.def);
  f.spawn(b, f.def);
  f.spawn(c, f.def);
  {
    sluice::net::Slot moved = std::move(a.result->slot);
    CHECK_FALSE(a.result->slot);
    CHECK(moved);
    a.result->slot.release();  // empty: no-op
    f.step();
    CHECK_FALSE(b.result);
  }  // destroyed: released
  f.step();
  REQUIRE(b.result);
  b.result->slot.set_actual_cost(500);
  b.result->slot.release();
  b.result->slot.release();  // second release: no-op, c is not admitted twice over
  f.step();
  REQUIRE(c.result);
  CHECK(f.gate.scheduler().in_flight() == 1);
}

TEST_CASE("gate: queue bounds reject at once with the reason") {
  asio::io_context io;
  auto c = config(1);
  c.max_queue = 1;
  Gate gate(io.get_executor(), c);
  Client a{"a"}, b{"b"}, d{"d"};
  auto w = *gate.scheduler().find_workload("default");
  asio::co_spawn(io, run_client(gate, a, w), asio::detached);
  asio::co_spawn(io, run_client(gate, b, w), asio::detached);
  asio::co_spawn(io, run_client(gate, d, w), asio::detached);
  io.poll();
  REQUIRE(d.result);
  CHECK(d.result->kind == Kind::rejected);
  CHECK(d.result->reason == RejectReason::queue_full);
  CHECK_FALSE(b.result);
}

TEST_CASE("gate: on_change fires on every queue change; a slot outliving the gate is harmless") {
  int changes = 0;
  std::optional<sluice::net::Slot> survivor;
  {
    asio::io_context io;
    Gate gate(io.get_executor(), config(1));
    gate.on_change = [&] { ++changes; };
    Client a{"a"}, b{"b"};
    auto w = *gate.scheduler().find_workload("default");
    asio::co_spawn(io, run_client(gate, a, w), asio::detached);
    asio::co_spawn(io, run_client(gate, b, w), asio::detached);
    io.poll();
    CHECK(changes == 2);  // a admitted, b parked
    a.result->slot.release();
    io.restart();
    io.poll();
    CHECK(changes == 3);
    survivor = std::move(b.result->slot);
  }
  survivor->release();  // the gate is gone: nothing to return it to, and no crash
  CHECK_FALSE(*survivor);
}

namespace {

// A requeued request's wait, racing a "disconnect" timer the test cancels.
asio::awaitable<void> run_requeue(Gate& gate, sluice::net::Slot& slot,
                                  std::optional<AdmitResult>& again, bool& gone,
                                  Gate::timer_type& disconnect) {
  auto watch = [&]() -> asio::awaitable<void> {
    co_await disconnect.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  auto outcome = co_await (gate.requeue(slot) || watch());
  if (outcome.index() == 0) {
    again = std::move(std::get<0>(outcome));
  } else {
    gone = true;
  }
}

SchedulerConfig two_backends() {
  SchedulerConfig c = config(2);
  c.backends = {{.name = "a", .max_concurrency = 1}, {.name = "b", .max_concurrency = 1}};
  return c;
}

}  // namespace

TEST_CASE("gate: a requeued request waits at its place and runs where a slot frees") {
  asio::io_context io;
  Gate gate{io.get_executor(), two_backends()};
  gate.observe_up(0, true);
  gate.observe_up(1, true);
  auto step = [&] {
    io.restart();
    io.poll();
  };
  Client first{"x"}, second{"y"}, later{"z"};
  asio::co_spawn(io, run_client(gate, first, 0), asio::detached);
  asio::co_spawn(io, run_client(gate, second, 0), asio::detached);
  step();
  REQUIRE(first.result->kind == Kind::admitted);
  REQUIRE(second.result->kind == Kind::admitted);
  const auto failed = first.result->slot.backend();
  CHECK_FALSE(first.result->slot.reroute());  // the other backend is busy

  std::optional<AdmitResult> again;
  bool gone = false;
  Gate::timer_type disconnect(io, Gate::timer_type::time_point::max());
  asio::co_spawn(io, run_requeue(gate, first.result->slot, again, gone, disconnect),
                 asio::detached);
  step();
  CHECK_FALSE(again);
  CHECK(gate.waiting() == 1);
  CHECK(gate.scheduler().in_flight() == 1);  // the failed backend's slot is free
  asio::co_spawn(io, run_client(gate, later, 0), asio::detached);  // takes that slot
  step();
  REQUIRE(later.result->kind == Kind::admitted);
  CHECK(later.result->slot.backend() == failed);
  CHECK_FALSE(first.result->slot);  // its permit went back with the request

  second.result->slot.release();
  step();
  REQUIRE(again);
  REQUIRE(again->kind == Kind::admitted);
  CHECK(again->slot.backend() != failed);
  CHECK(gate.scheduler().in_flight() == 2);
  again->slot.release();
  later.result->slot.release();
  CHECK(gate.scheduler().in_flight() == 0);
  CHECK_FALSE(gone);
}

TEST_CASE("gate: a client that leaves while requeued leaves the queue, once") {
  asio::io_context io;
  Gate gate{io.get_executor(), two_backends()};
  gate.observe_up(0, true);
  gate.observe_up(1, true);
  auto step = [&] {
    io.restart();
    io.poll();
  };
  Client first{"x"}, second{"y"};
  asio::co_spawn(io, run_client(gate, first, 0), asio::detached);
  asio::co_spawn(io, run_client(gate, second, 0), asio::detached);
  step();
  REQUIRE(first.result->kind == Kind::admitted);
  std::optional<AdmitResult> again;
  bool gone = false;
  Gate::timer_type disconnect(io, Gate::timer_type::time_point::max());
  asio::co_spawn(io, run_requeue(gate, first.result->slot, again, gone, disconnect),
                 asio::detached);
  step();
  REQUIRE(gate.waiting() == 1);
  disconnect.cancel();
  step();
  CHECK(gone);
  CHECK_FALSE(again);
  CHECK(gate.waiting() == 0);
  CHECK(gate.scheduler().parked() == 0);
  first.result->slot.release();  // empty: a no-op
  CHECK(gate.scheduler().in_flight() == 1);
  second.result->slot.release();
  CHECK(gate.scheduler().in_flight() == 0);
  CHECK(gate.scheduler().check_invariants() == "");
}

TEST_CASE("gate: a requeued request times out at its original deadline") {
  asio::io_context io;
  Gate gate{io.get_executor(), two_backends()};
  gate.observe_up(0, true);
  gate.observe_up(1, true);
  auto step = [&] {
    io.restart();
    io.poll();
  };
  Client first{"x"}, second{"y"};
  asio::co_spawn(io, run_client(gate, first, 0, 5s), asio::detached);
  asio::co_spawn(io, run_client(gate, second, 0), asio::detached);
  step();
  REQUIRE(first.result->kind == Kind::admitted);
  ManualClock::current += 3s;
  std::optional<AdmitResult> again;
  bool gone = false;
  Gate::timer_type disconnect(io, Gate::timer_type::time_point::max());
  asio::co_spawn(io, run_requeue(gate, first.result->slot, again, gone, disconnect),
                 asio::detached);
  step();
  ManualClock::current += 2s - 1ns;
  step();
  CHECK_FALSE(again);
  ManualClock::current += 1ns;
  step();
  REQUIRE(again);
  CHECK(again->kind == Kind::timed_out);
  CHECK(again->waited == 2s);
  CHECK(gate.waiting() == 0);
}
