// Unit tests of sluice-sim's model residency policy (src/sim/residency.hpp) and of the Go
// duration syntax it reads keep_alive in. Time is fed in as simulated nanoseconds.
#include <doctest/doctest.h>

#include <algorithm>

#include "duration.hpp"
#include "residency.hpp"

using namespace sluice::sim;
using Phase = Residency::Phase;

namespace {

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSec = 1'000 * kMs;

ResidencyConfig config(int max_loaded, std::int64_t load_ns,
                       std::int64_t keep_alive_ns = kForever) {
  return ResidencyConfig{max_loaded, load_ns, keep_alive_ns};
}

bool contains(const std::vector<Residency::Ticket>& v, Residency::Ticket t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

}  // namespace

TEST_CASE("the first max_loaded models start resident; a resident model is ready at once") {
  Residency r(3, config(2, 300 * kMs), 0);
  CHECK(r.model(0).phase == Phase::resident);
  CHECK(r.model(1).phase == Phase::resident);
  CHECK(r.model(2).phase == Phase::unloaded);
  const auto t = r.arrive(1, std::nullopt, 10 * kMs);
  CHECK(r.ready(t));
  CHECK(r.ticket(t)->load_duration_ns() == 0);
  CHECK_FALSE(r.ticket(t)->triggered_load);
  CHECK(contains(r.take_ready(), t));
  CHECK(r.take_ready().empty());
  CHECK(r.total_loads() == 0);
}

TEST_CASE("a request for a non-resident model evicts the least recently used idle model") {
  Residency r(3, config(2, 300 * kMs), 0);
  r.leave(r.arrive(0, std::nullopt, 1 * kSec), 2 * kSec);  // model 0 used last at 2 s
  r.leave(r.arrive(1, std::nullopt, 3 * kSec), 4 * kSec);  // model 1 used last at 4 s
  const auto t = r.arrive(2, std::nullopt, 5 * kSec);
  CHECK(r.model(0).phase == Phase::unloaded);  // the older idle one went
  CHECK(r.model(1).phase == Phase::resident);
  CHECK(r.model(2).phase == Phase::loading);
  CHECK_FALSE(r.ready(t));
  CHECK(r.next_deadline() == 5 * kSec + 300 * kMs);
  r.advance(5 * kSec + 299 * kMs);
  CHECK_FALSE(r.ready(t));
  r.advance(5 * kSec + 300 * kMs);
  CHECK(r.ready(t));
  CHECK(contains(r.take_ready(), t));
  CHECK(r.ticket(t)->triggered_load);
  CHECK(r.ticket(t)->load_duration_ns() == 300 * kMs);
  CHECK(r.model(2).loads == 1);
  CHECK(r.model(2).load_ns_total == 300 * kMs);
  CHECK(r.loaded() == 2);
}

TEST_CASE("ties in last use are broken by catalog order") {
  Residency r(3, config(2, 0), 0);
  const auto t = r.arrive(2, std::nullopt, 1 * kSec);
  CHECK(r.ready(t));  // a zero load time loads at once
  CHECK(r.model(0).phase == Phase::unloaded);
  CHECK(r.model(1).phase == Phase::resident);
  CHECK(r.model(2).loads == 1);
}

TEST_CASE("when every resident model is busy, the request waits, and so does everyone behind it") {
  Residency r(3, config(2, 100 * kMs), 0);
  const auto a = r.arrive(0, std::nullopt, 0);
  const auto b = r.arrive(1, std::nullopt, 0);
  const auto c = r.arrive(2, std::nullopt, 1 * kSec);
  CHECK_FALSE(r.ticket(c)->admitted_ns);
  CHECK(r.waiting() == 1);
  CHECK(r.model(2).phase == Phase::unloaded);
  // A request for a resident model queues behind the waiting one (Ollama's single FIFO).
  const auto a2 = r.arrive(0, std::nullopt, 2 * kSec);
  CHECK_FALSE(r.ready(a2));
  CHECK(r.waiting() == 2);
  r.take_ready();
  // Model 1 goes idle: it is evicted for model 2; model 0 stays busy (a) and a2 is admitted.
  r.leave(b, 3 * kSec);
  CHECK(r.model(1).phase == Phase::unloaded);
  CHECK(r.model(2).phase == Phase::loading);
  CHECK(r.ready(a2));
  CHECK(r.waiting() == 0);
  r.advance(3 * kSec + 100 * kMs);
  CHECK(r.ready(c));
  // Waited 2 s for a place, then loaded for 100 ms.
  CHECK(r.ticket(c)->load_duration_ns() == 2 * kSec + 100 * kMs);
  CHECK(r.ticket(a2)->load_duration_ns() == 1 * kSec);
  r.leave(a, 4 * kSec);
}

TEST_CASE("requests for a loading model wait for that load; it is not loaded twice") {
  Residency r(2, config(1, 500 * kMs), 0);
  const auto first = r.arrive(1, std::nullopt, 0);
  const auto second = r.arrive(1, std::nullopt, 200 * kMs);
  CHECK(r.ticket(second)->admitted_ns == 200 * kMs);
  CHECK_FALSE(r.ready(second));
  r.advance(500 * kMs);
  const auto woke = r.take_ready();
  CHECK(contains(woke, first));
  CHECK(contains(woke, second));
  CHECK(r.model(1).loads == 1);
  // Only the request that triggered the load reports it.
  CHECK(r.ticket(first)->load_duration_ns() == 500 * kMs);
  CHECK(r.ticket(second)->load_duration_ns() == 0);
}

TEST_CASE("max_loaded 1: models take turns, each switch is a load") {
  Residency r(2, config(1, 1 * kSec), 0);
  auto t = r.arrive(0, std::nullopt, 0);
  CHECK(r.ready(t));
  const auto other = r.arrive(1, std::nullopt, 0);
  CHECK_FALSE(r.ticket(other)->admitted_ns);  // model 0 is busy
  r.leave(t, 2 * kSec);
  CHECK(r.model(0).phase == Phase::unloaded);
  CHECK(r.model(1).phase == Phase::loading);
  r.advance(3 * kSec);
  CHECK(r.ready(other));
  CHECK(r.ticket(other)->load_duration_ns() == 3 * kSec);
  r.leave(other, 4 * kSec);
  t = r.arrive(0, std::nullopt, 5 * kSec);
  CHECK_FALSE(r.ready(t));
  r.advance(6 * kSec);
  CHECK(r.ready(t));
  CHECK(r.total_loads() == 2);
  CHECK(r.loaded() == 1);
}

TEST_CASE("an idle model is unloaded after its keep-alive; a busy one never") {
  Residency r(2, config(2, 0, 5 * kSec), 0);
  const auto t = r.arrive(0, std::nullopt, 1 * kSec);
  CHECK(r.next_deadline() == 5 * kSec);  // model 1, idle since 0
  r.advance(5 * kSec);
  CHECK(r.model(1).phase == Phase::unloaded);
  r.advance(100 * kSec);
  CHECK(r.model(0).phase == Phase::resident);  // busy
  CHECK(r.expires_ns(0, 100 * kSec) == 105 * kSec);
  r.leave(t, 100 * kSec);
  CHECK(r.expires_ns(0, 101 * kSec) == 105 * kSec);
  CHECK(r.next_deadline() == 105 * kSec);
  r.advance(104 * kSec);
  CHECK(r.model(0).phase == Phase::resident);
  r.advance(105 * kSec);
  CHECK(r.model(0).phase == Phase::unloaded);
  CHECK_FALSE(r.next_deadline());
}

TEST_CASE("a request's keep_alive overrides the default and sticks until the model unloads") {
  Residency r(2, config(2, 0, 5 * kSec), 0);
  // keep_alive 0: unloaded right after the request.
  r.leave(r.arrive(0, std::int64_t(0), 1 * kSec), 2 * kSec);
  CHECK(r.model(0).phase == Phase::unloaded);
  // Negative: forever, also for later requests that do not set it.
  r.leave(r.arrive(1, kForever, 1 * kSec), 2 * kSec);
  r.leave(r.arrive(1, std::nullopt, 3 * kSec), 4 * kSec);
  r.advance(1000 * kSec);
  CHECK(r.model(1).phase == Phase::resident);
  CHECK_FALSE(r.expires_ns(1, 1000 * kSec));
  // expire() (an empty request with keep_alive 0) unloads it once idle.
  r.expire(1, 1000 * kSec);
  CHECK(r.model(1).phase == Phase::unloaded);
  // A fresh load starts from the default again.
  const auto t = r.arrive(1, std::nullopt, 2000 * kSec);
  r.leave(t, 2000 * kSec);
  CHECK(r.expires_ns(1, 2000 * kSec) == 2005 * kSec);
}

TEST_CASE("leaving is idempotent; a waiting request that leaves frees the queue behind it") {
  Residency r(3, config(1, 0), 0);
  const auto busy = r.arrive(0, std::nullopt, 0);
  const auto blocked = r.arrive(1, std::nullopt, 0);
  const auto behind = r.arrive(0, std::nullopt, 0);
  CHECK_FALSE(r.ready(behind));
  r.leave(blocked, 1 * kSec);
  r.leave(blocked, 1 * kSec);
  CHECK(r.ready(behind));
  CHECK(r.model(0).refs == 2);
  r.leave(busy, 2 * kSec);
  r.leave(behind, 2 * kSec);
  r.leave(behind, 2 * kSec);
  r.leave(12345, 2 * kSec);
  CHECK(r.model(0).refs == 0);
}

TEST_CASE("an abandoned load is dropped; a load whose requester left passes to the next") {
  Residency r(2, config(1, 1 * kSec), 0);
  const auto loader = r.arrive(1, std::nullopt, 0);
  r.leave(loader, 100 * kMs);
  CHECK(r.model(1).phase == Phase::unloaded);
  CHECK(r.model(0).phase == Phase::unloaded);  // evicted for the load that never finished
  CHECK(r.total_loads() == 0);

  const auto first = r.arrive(1, std::nullopt, 2 * kSec);
  const auto second = r.arrive(1, std::nullopt, 2 * kSec + 100 * kMs);
  r.leave(first, 2 * kSec + 200 * kMs);
  r.advance(3 * kSec);
  CHECK(r.ready(second));
  CHECK(r.ticket(second)->triggered_load);
  CHECK(r.ticket(second)->load_duration_ns() == 900 * kMs);
  CHECK(r.total_loads() == 1);
}

TEST_CASE("lowering max_loaded unloads idle models at once and busy ones when they go idle") {
  Residency r(3, config(3, 0), 0);
  const auto t = r.arrive(2, std::nullopt, 1 * kSec);
  r.set_config(config(1, 0), 2 * kSec);
  CHECK(r.loaded() == 1);
  CHECK(r.model(2).phase == Phase::resident);
  const auto other = r.arrive(0, std::nullopt, 3 * kSec);
  CHECK_FALSE(r.ticket(other)->admitted_ns);
  r.leave(t, 4 * kSec);
  CHECK(r.ready(other));
  CHECK(r.model(2).phase == Phase::unloaded);
  r.set_config(config(3, 0), 5 * kSec);
  CHECK(r.loaded() == 1);  // raising it loads nothing by itself
}

TEST_CASE("reset_counters zeroes load counts") {
  Residency r(2, config(1, 0), 0);
  r.leave(r.arrive(1, std::nullopt, 0), 0);
  CHECK(r.total_loads() == 1);
  r.reset_counters();
  CHECK(r.total_loads() == 0);
  CHECK(r.model(1).load_ns_total == 0);
}

TEST_CASE("Go durations parse as Ollama reads keep_alive") {
  auto ns = [](std::string_view s) { return std::get<std::int64_t>(parse_go_duration(s)); };
  CHECK(ns("0") == 0);
  CHECK(ns("300ms") == 300 * kMs);
  CHECK(ns("5m") == 300 * kSec);
  CHECK(ns("1h30m") == 5400 * kSec);
  CHECK(ns("1.5s") == 1500 * kMs);
  CHECK(ns(".5s") == 500 * kMs);
  CHECK(ns("-1m") == -60 * kSec);
  CHECK(ns("10us") == 10'000);
  CHECK(ns("10\xc2\xb5s") == 10'000);
  CHECK(std::get<std::string>(parse_go_duration("10")) == "time: missing unit in duration \"10\"");
  CHECK(std::get<std::string>(parse_go_duration("abc")) == "time: invalid duration \"abc\"");
  CHECK(std::get<std::string>(parse_go_duration("")) == "time: invalid duration \"\"");
  CHECK(std::holds_alternative<std::string>(parse_go_duration("5x")));
  CHECK(std::holds_alternative<std::string>(parse_go_duration("99999999h")));
  // Flags also take plain seconds, like OLLAMA_KEEP_ALIVE.
  CHECK(std::get<std::int64_t>(parse_duration_flag("2")) == 2 * kSec);
  CHECK(std::get<std::int64_t>(parse_duration_flag("-1")) == -kSec);
  CHECK(std::get<std::int64_t>(parse_duration_flag("250ms")) == 250 * kMs);
}
