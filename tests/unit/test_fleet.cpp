// The fleet's placement policy, one property per test case, then a randomized model check.
// Time is fed in; nothing sleeps.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "sluice/core/fleet.hpp"

using namespace std::chrono_literals;
using sluice::core::at;
using sluice::core::BackendId;
using sluice::core::BackendSet;
using sluice::core::BackendSpec;
using sluice::core::Fleet;
using sluice::core::kDefaultLoadTime;
using sluice::core::kUnlistedModel;
using sluice::core::ModelId;
using sluice::core::Placement;
using sluice::core::Time;
using sluice::core::Timings;
using Kind = Placement::Kind;

namespace {

// "m3" (spelled out here: GCC 12 warns falsely about "m" + std::to_string(3)).
std::string numbered(const char* prefix, std::size_t n) {
  std::string out = prefix;
  out += std::to_string(n);
  return out;
}

std::vector<BackendSpec> three(std::int64_t slots = 2) {
  return {{.name = "a", .max_concurrency = slots, .models = {"m1", "m2", "m3", "m4"}},
          {.name = "b", .max_concurrency = slots, .models = {"m1", "m2", "m3", "m4"}},
          {.name = "c", .max_concurrency = slots, .models = {"m1", "m2", "m3", "m4"}}};
}

// A fleet with every backend up and the given models resident (capacity = what is listed).
Fleet up_fleet(const std::vector<BackendSpec>& specs,
               const std::vector<std::vector<std::string>>& resident = {}) {
  Fleet fleet(specs);
  for (BackendId b = 0; b < specs.size(); ++b) {
    fleet.set_up(b, true);
    if (b < resident.size()) fleet.set_resident(b, resident[b], at(0s));
  }
  REQUIRE(fleet.check_invariants() == "");
  return fleet;
}

BackendId place(const Fleet& fleet, ModelId m, Time now = at(0s), Time since = at(0s)) {
  Placement p = fleet.choose(m, 100, since, now);
  REQUIRE(p.kind == Kind::place);
  return p.backend;
}

// One answer of `tokens` decoded in `took` on b, from `start`: teaches b's decode speed.
void decode(Fleet& fleet, BackendId b, ModelId m, std::int64_t tokens,
            std::chrono::nanoseconds took, Time start = at(0s)) {
  fleet.admit(b, m, start);
  fleet.release(b, m, {.eval_count = tokens, .eval_duration = took}, start + took);
}

Timings loaded(std::chrono::nanoseconds load) {
  return {.load_duration = load, .eval_count = 100, .eval_duration = 2s};
}

}  // namespace

TEST_CASE("fleet: model names as Ollama spells them") {
  CHECK(sluice::core::canonical_model("mistral") == "mistral:latest");
  CHECK(sluice::core::canonical_model("mistral:7b") == "mistral:7b");
  CHECK(sluice::core::canonical_model("registry:5000/library/mistral") ==
        "registry:5000/library/mistral:latest");
  CHECK(sluice::core::canonical_model("library/mistral:7b") == "library/mistral:7b");
  Fleet fleet(std::vector<BackendSpec>{{.name = "a", .models = {"mistral"}}});
  CHECK(fleet.model("mistral:latest") != kUnlistedModel);
  CHECK(fleet.model("mistral") == fleet.model("mistral:latest"));
}

TEST_CASE("fleet: validation names the backend and field") {
  using sluice::core::validate;
  CHECK(validate(three()) == "");
  CHECK(validate(std::vector<BackendSpec>{}) == "at least one backend is required");
  auto specs = three();
  specs[1].name = specs[0].name;  // (not = "a": GCC 12 -Wrestrict false positive)
  CHECK(validate(specs) == "backends[1].name 'a' is used twice");
  specs = three();
  specs[2].max_concurrency = 0;
  CHECK(validate(specs) == "backends[2].max_concurrency must be >= 1");
  specs = three();
  specs[0].models.push_back("");
  CHECK(validate(specs) == "backends[0].models must not contain an empty name");
  std::vector<BackendSpec> many(sluice::core::kMaxBackends + 1);
  for (std::size_t i = 0; i < many.size(); ++i)
    many[i].name = numbered("b", i);
  CHECK(validate(many).find("at most 64") == 0);
}

TEST_CASE("fleet: eligible = up and serving the model; unlisted names only where unknown") {
  std::vector<BackendSpec> specs = {{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                                    {.name = "b", .max_concurrency = 1, .models = {"m2"}},
                                    {.name = "c", .max_concurrency = 1}};  // discovered later
  Fleet fleet = up_fleet(specs);
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2");
  CHECK(fleet.eligible(m1) == 0b101);  // c's catalog is unknown: it may serve anything
  CHECK(fleet.eligible(m2) == 0b110);
  CHECK(fleet.model("other") == kUnlistedModel);
  CHECK(fleet.eligible(kUnlistedModel) == 0b100);

  // c's catalog arrives: unlisted names are served by nobody any more.
  CHECK(fleet.set_catalog(2, std::vector<std::string>{"m3"}));
  const ModelId m3 = fleet.model("m3");
  CHECK(fleet.eligible(m1) == 0b001);
  CHECK(fleet.eligible(m3) == 0b100);
  CHECK(fleet.choose(fleet.model("other"), 1, at(0s), at(0s)).kind == Kind::unserved);
  CHECK_FALSE(fleet.set_catalog(2, std::vector<std::string>{"m3"}));  // unchanged
  CHECK_FALSE(fleet.set_catalog(0, std::vector<std::string>{"x"}));   // static catalog wins

  // A backend going down is no longer eligible; all down = down, not unserved.
  fleet.set_up(0, false);
  CHECK(fleet.eligible(m1) == 0);
  CHECK(fleet.choose(m1, 1, at(0s), at(0s)).kind == Kind::down);
  CHECK(fleet.set_up(0, true));
  CHECK(place(fleet, m1) == 0);
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: never places on a backend without a free slot") {
  Fleet fleet = up_fleet(three(1));
  const ModelId m1 = fleet.model("m1");
  // Long waited, so a cold backend may take m1 although another holds it (see the next cases).
  for (int i = 0; i < 3; ++i) {
    BackendId b = place(fleet, m1, at(100s));
    CHECK(fleet.in_flight(b) == 0);
    fleet.admit(b, m1, at(0s));
  }
  CHECK(fleet.free_slots() == 0);
  CHECK(fleet.choose(m1, 1, at(0s), at(0s)).kind == Kind::full);
  fleet.release(1, m1, {}, at(1s));
  CHECK(place(fleet, m1, at(100s)) == 1);
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: a backend holding the model resident beats one that must load it") {
  Fleet fleet = up_fleet(three(), {{"m2", "m3"}, {"m1", "m2"}, {"m3", "m4"}});
  CHECK(place(fleet, fleet.model("m1")) == 1);
  CHECK(place(fleet, fleet.model("m4")) == 2);
  // Both a and b hold m2: the less loaded one wins.
  fleet.admit(0, fleet.model("m2"), at(0s));
  CHECK(place(fleet, fleet.model("m2")) == 1);
}

TEST_CASE("fleet: warm but full waits for a warm slot at most one load time, then goes cold") {
  Fleet fleet = up_fleet(three(1), {{"m1"}, {"m2"}, {"m3"}});
  const ModelId m1 = fleet.model("m1");
  fleet.admit(0, m1, at(0s));  // a, the only one holding m1, is full
  Placement p = fleet.choose(m1, 100, at(1s), at(1s));
  CHECK(p.kind == Kind::wait_warm);
  CHECK(p.until == at(1s) + kDefaultLoadTime);
  CHECK(fleet.choose(m1, 100, at(1s), at(1s) + kDefaultLoadTime - 1ns).kind == Kind::wait_warm);
  CHECK(place(fleet, m1, at(1s) + kDefaultLoadTime, at(1s)) != 0);
  // A learned, shorter load time shortens the wait.
  fleet.admit(1, fleet.model("m2"), at(2s));
  fleet.release(1, fleet.model("m2"), loaded(2s), at(3s));
  fleet.admit(2, fleet.model("m3"), at(2s));
  fleet.release(2, fleet.model("m3"), loaded(2s), at(3s));
  p = fleet.choose(m1, 100, at(10s), at(10s));
  CHECK(p.kind == Kind::wait_warm);
  CHECK(p.until == at(12s));
}

TEST_CASE("fleet: after a load time it goes cold only where the load relieves the demand") {
  // a holds m1 and is full of it; b holds m2 (one running) and m3 (idle, its least recently
  // used), one slot free; c holds m4 and is full. The m1 request has waited longer than a load.
  const std::vector<std::string> models = {"m1", "m2", "m3", "m4"};
  const std::vector<BackendSpec> specs = {{.name = "a", .max_concurrency = 2, .models = models},
                                          {.name = "b", .max_concurrency = 2, .models = models},
                                          {.name = "c", .max_concurrency = 2, .models = models}};
  Fleet fleet = up_fleet(specs, {{"m1"}, {"m3", "m2"}, {"m4"}});
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2"), m3 = fleet.model("m3"),
                m4 = fleet.model("m4");
  for (int i = 0; i < 2; ++i) {
    fleet.admit(0, m1, at(0s));
    fleet.admit(2, m4, at(0s));
  }
  fleet.admit(1, m2, at(1s));
  const Time late = at(0s) + 2 * kDefaultLoadTime;

  SUBCASE("nothing parked is warm on b: its slot would idle, so m1 loads there") {
    fleet.note_parked(m1, 1);
    CHECK(place(fleet, m1, late) == 1);
    fleet.note_parked(m1, -1);
  }
  SUBCASE("a load that evicts the only copy of a model others wait for is not worth it") {
    fleet.note_parked(m1, 1);
    fleet.note_parked(m3, 2);  // only b holds m3
    const Placement p = fleet.choose(m1, 100, at(0s), late);
    CHECK(p.kind == Kind::wait_warm);
    CHECK(p.until == late + kDefaultLoadTime);  // judged again one load time later at most
    fleet.note_parked(m1, -1);
    fleet.note_parked(m3, -2);
  }
  SUBCASE("one waiting m1 request does not take b's slot from the m2 queue") {
    fleet.note_parked(m1, 1);  // m1: 3 on a's 2 slots, 1.5 per slot
    fleet.note_parked(m2, 3);  // m2: 4 on b's 2 slots, 2 per slot
    // With m1 on b too, m2's 4 requests still have only b's 2 slots: the worst set stays at 2.
    CHECK(fleet.choose(m1, 100, at(0s), late).kind == Kind::wait_warm);
    fleet.note_parked(m1, -1);
    fleet.note_parked(m2, -3);
  }
  SUBCASE("a standing m1 queue is worth a copy on b") {
    fleet.note_parked(m1, 10);  // 12 on a's 2 slots: 6 per slot
    fleet.note_parked(m2, 1);
    CHECK(place(fleet, m1, late) == 1);  // {m1, m2} on a and b: 14 / 4 = 3.5 per slot
    fleet.note_parked(m1, -10);
    fleet.note_parked(m2, -1);
  }
  SUBCASE("before a load time has passed it waits, however long the queue") {
    fleet.note_parked(m1, 10);
    CHECK(fleet.choose(m1, 100, at(0s), at(1s)).kind == Kind::wait_warm);
    fleet.note_parked(m1, -10);
  }
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: a load onto a backend whose models are all busy waits for one to go idle") {
  // What Ollama does: b holds one model (capacity 1, from /api/ps) and it is busy; the load of
  // m2 waits, m1 goes when its last request ends, and b's capacity stays what it reported.
  const std::vector<std::string> models = {"m1", "m2"};
  const std::vector<BackendSpec> specs = {{.name = "b", .max_concurrency = 4, .models = models}};
  Fleet fleet = up_fleet(specs, {{"m1"}});
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2");
  fleet.admit(0, m1, at(0s));
  fleet.admit(0, m1, at(0s));
  fleet.admit(0, m2, at(1s));
  CHECK(fleet.view(0).loaded.size() == 2);  // m2 loading, m1 still busy
  CHECK(fleet.view(0).resident_capacity == 1);
  CHECK(fleet.check_invariants() == "");
  fleet.release(0, m1, {}, at(2s));
  CHECK(fleet.view(0).loaded.size() == 2);  // one m1 request still runs
  fleet.release(0, m1, {}, at(3s));
  REQUIRE(fleet.view(0).loaded.size() == 1);  // m1 idle: evicted, as Ollama does
  CHECK(fleet.view(0).loaded[0].model == "m2:latest");
  CHECK(fleet.is_resident(0, m2));
  CHECK_FALSE(fleet.is_resident(0, m1));
  // A report that still lists the old model with the waiting load beside it keeps the capacity.
  fleet.admit(0, m1, at(4s));  // m2 busy: m1 waits for it
  CHECK(fleet.set_resident(0, std::vector<std::string>{"m2"}, at(5s)) == false);
  CHECK(fleet.view(0).resident_capacity == 1);
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: a model resident nowhere is placed at once, evicting what no one waits for") {
  const std::vector<std::string> models = {"m1", "m2", "m3", "m4", "m5"};
  const std::vector<BackendSpec> specs = {{.name = "a", .max_concurrency = 2, .models = models},
                                          {.name = "b", .max_concurrency = 2, .models = models}};
  // Capacity two on each (learned from /api/ps); m1 is a's least recently used, m3 b's.
  Fleet fleet = up_fleet(specs, {{"m1", "m2"}, {"m3", "m4"}});
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2"), m4 = fleet.model("m4"),
                m5 = fleet.model("m5");
  for (auto [b, m] : {std::pair<BackendId, ModelId>{0, m2}, {1, m4}}) {
    fleet.admit(b, m, at(1s));
    fleet.release(b, m, {}, at(2s));
  }
  CHECK(fleet.view(0).loaded.back().model == "m1:latest");
  CHECK(fleet.view(1).loaded.back().model == "m3:latest");

  // Nobody waits for m1 or m3: both evictions are free; the tie goes to the first backend.
  CHECK(place(fleet, m5, at(3s)) == 0);
  CHECK(fleet.choose(m5, 100, at(3s), at(3s)).kind == Kind::place);  // resident nowhere: no wait

  // Requests for m1 are parked and only a holds it: loading m5 there would cost them a load.
  fleet.note_parked(m1, 3);
  CHECK(place(fleet, m5, at(3s)) == 1);
  fleet.admit(1, m5, at(3s));
  CHECK(fleet.view(1).loaded.front().model == "m5:latest");
  CHECK(fleet.view(1).loaded.size() == 2);  // m3 evicted, as Ollama would
  CHECK(fleet.view(0).loaded.size() == 2);  // a untouched
  fleet.note_parked(m1, -3);
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: a load onto a backend whose resident models are all busy counts the wait") {
  const std::vector<std::string> models = {"m1", "m2", "m3", "m4"};
  const std::vector<BackendSpec> specs = {{.name = "a", .max_concurrency = 4, .models = models},
                                          {.name = "b", .max_concurrency = 4, .models = models}};
  // a holds one model (capacity 1), busy; b holds two (capacity 2), one busy, one idle. Equal
  // load, but on a the load of m4 would wait until m1's requests are done (Ollama's rule).
  Fleet fleet = up_fleet(specs, {{"m1"}, {"m2", "m3"}});
  fleet.admit(0, fleet.model("m1"), at(0s));
  fleet.admit(1, fleet.model("m2"), at(0s));
  CHECK(place(fleet, fleet.model("m4")) == 1);
}

TEST_CASE("fleet: learns load times per model and the speed of each backend") {
  Fleet fleet = up_fleet(three());
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2");
  CHECK(fleet.load_time(0, m1) == kDefaultLoadTime);
  fleet.admit(0, m1, at(0s));
  CHECK(fleet.release(0, m1, loaded(3s), at(4s)));
  CHECK(fleet.load_time(0, m1) == 3s);
  CHECK(fleet.load_time(0, m2) == 3s);  // the backend's average until m2 is seen
  CHECK(fleet.load_time(1, m1) == kDefaultLoadTime);
  fleet.admit(0, m1, at(5s));
  CHECK(fleet.release(0, m1, loaded(1s), at(6s)));
  CHECK(fleet.load_time(0, m1) == 2s);  // smoothed
  fleet.admit(0, m1, at(7s));
  CHECK_FALSE(fleet.release(0, m1, loaded(10ms), at(8s)));  // warm: no load
  CHECK(fleet.load_time(0, m1) == 2s);

  // b decodes at half a's speed: with both warm and idle, a wins.
  Fleet speed = up_fleet(three(), {{"m1"}, {"m1"}, {"m2"}});
  speed.admit(0, m1, at(0s));
  speed.release(0, m1, {.eval_count = 100, .eval_duration = 1s}, at(1s));
  speed.admit(1, m1, at(0s));
  speed.release(1, m1, {.eval_count = 100, .eval_duration = 2s}, at(2s));
  CHECK(speed.view(0).tokens_per_second == doctest::Approx(100));
  CHECK(speed.view(1).tokens_per_second == doctest::Approx(50));
  CHECK(place(speed, m1) == 0);
}

TEST_CASE("fleet: a busy fast backend's next slot can beat a free slow one") {
  // a decodes 100 tokens/s with one slot, b 25 tokens/s with two; both hold m1.
  Fleet fleet = up_fleet({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                          {.name = "b", .max_concurrency = 2, .models = {"m1"}}},
                         {{"m1"}, {"m1"}});
  const ModelId m1 = fleet.model("m1");
  decode(fleet, 0, m1, 100, 1s);
  decode(fleet, 1, m1, 100, 4s);

  // a runs 50 tokens from 10 s: expected to end at 10.5 s (its speed, no load factor).
  const Time end = fleet.admit(0, m1, at(10s), 50);
  CHECK(end == at(10s) + 500ms);
  fleet.admit(1, m1, at(10s), 400);  // b has one of its two slots in use
  CHECK(place(fleet, m1, at(10s) + 100ms) == 1);
  // 100 tokens: on b beside one other 4 s x 1.5 = 6 s; on a after a 0.4 s wait, 1 s.
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(10s) + 100ms) == BackendId{0});
  // Rent-or-buy: a request that has waited as long as b would take stops waiting.
  CHECK(fleet.faster_slot(m1, 100, 1, 6s, at(10s) + 100ms) == std::nullopt);
  // A wait that eats the saving is not worth it: 5.5 s of it, then 1 s, against 6 s.
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(5s)) == std::nullopt);
  // Overdue requests are expected to end any moment, not in the past.
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(20s)) == BackendId{0});
  // Least-loaded placement (the benchmark's comparison) waits for nothing.
  fleet.set_model_aware(false);
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(10s) + 100ms) == std::nullopt);
  fleet.set_model_aware(true);

  // The expected end leaves with its request; one not named goes earliest first.
  fleet.release(0, m1, {}, at(10s) + 400ms, end);
  CHECK(fleet.check_invariants() == "");
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(10s) + 400ms) == std::nullopt);  // a is free now
  fleet.release(1, m1, {}, at(11s));
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: a faster slot is about speed: warm on both sides, streams 1.5x as fast") {
  Fleet fleet = up_fleet({{.name = "a", .max_concurrency = 1, .models = {"m1", "m2"}},
                          {.name = "b", .max_concurrency = 2, .models = {"m1", "m2"}}},
                         {{"m1"}, {"m2"}});
  const ModelId m1 = fleet.model("m1");
  const ModelId m2 = fleet.model("m2");
  fleet.set_load_policy(1ms, sluice::core::kLoadSeen);  // loads cost next to nothing...
  decode(fleet, 0, m1, 100, 1s);
  decode(fleet, 1, m2, 100, 4s);
  fleet.admit(0, m1, at(10s), 50);
  fleet.admit(1, m2, at(10s), 400);
  // ...but whether to wait for a warm slot or load is choose()'s rule, not this one's: m2 is
  // cold on the busy a, and m1 cold on the free b.
  CHECK(fleet.faster_slot(m2, 100, 1, 0s, at(10s) + 100ms) == std::nullopt);
  CHECK(fleet.faster_slot(m1, 100, 1, 0s, at(10s) + 100ms) == std::nullopt);

  // Warm on both, a at 1.3x b's speed (a learned speed mixes lone and shared streams): not
  // faster, however the finishes compare.
  Fleet close = up_fleet({{.name = "a", .max_concurrency = 1, .models = {"m1"}},
                          {.name = "b", .max_concurrency = 2, .models = {"m1"}}},
                         {{"m1"}, {"m1"}});
  decode(close, 0, m1, 130, 1s);
  decode(close, 1, m1, 100, 1s);
  close.admit(0, m1, at(10s), 1);
  close.admit(1, m1, at(10s), 400);
  CHECK(close.faster_slot(m1, 1000, 1, 0s, at(10s)) == std::nullopt);
  // At 1.5x it is: 1000 tokens, 15 s on b beside one other, 6.3 s on a.
  decode(close, 0, m1, 150, 1s, at(20s));
  for (int i = 0; i < 2; ++i)
    decode(close, 0, m1, 200, 1s, at(21s));
  REQUIRE(close.view(0).tokens_per_second >= 150);  // smoothed: 157.8
  close.admit(0, m1, at(30s), 1);
  CHECK(close.faster_slot(m1, 1000, 1, 0s, at(30s)) == BackendId{0});
}

TEST_CASE("fleet: the assumed load time and the load threshold are the operator's") {
  // A fleet 100 times faster than the defaults assume (fleet.load_time, fleet.load_threshold).
  Fleet fleet = up_fleet(three(1), {{"m1"}, {"m2"}, {"m3"}});
  fleet.set_load_policy(50ms, 2500us);
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2");
  CHECK(fleet.load_time(0, m1) == 50ms);
  fleet.admit(0, m1, at(0s));
  Placement p = fleet.choose(m1, 100, at(1s), at(1s));
  CHECK(p.kind == Kind::wait_warm);
  CHECK(p.until == at(1s) + 50ms);  // the warm wait follows the assumed load time
  CHECK(place(fleet, m1, at(1s) + 50ms, at(1s)) != 0);
  fleet.admit(1, m2, at(2s));
  CHECK(fleet.counts_as_load(loaded(30ms)));
  CHECK_FALSE(fleet.counts_as_load(loaded(2ms)));
  CHECK(fleet.release(1, m2, loaded(30ms), at(3s)));  // 30 ms: below the default, a load here
  CHECK(fleet.load_time(1, m2) == 30ms);
}

TEST_CASE("fleet: counts_as_load() is the load rule, and view() shows what was learned") {
  using sluice::core::kLoadSeen;
  Fleet fleet = up_fleet(three());
  CHECK_FALSE(fleet.counts_as_load({}));
  CHECK_FALSE(fleet.counts_as_load(loaded(kLoadSeen - 1ns)));
  CHECK(fleet.counts_as_load(loaded(kLoadSeen)));

  const ModelId m1 = fleet.model("m1"), m3 = fleet.model("m3");
  CHECK(fleet.view(0).load_times.empty());
  CHECK_FALSE(fleet.view(0).speed_known);
  fleet.admit(0, m3, at(0s));
  fleet.release(0, m3, loaded(3s), at(4s));
  fleet.admit(0, m1, at(5s));
  fleet.release(0, m1, loaded(2s), at(8s));
  const sluice::core::BackendView v = fleet.view(0);
  REQUIRE(v.load_times.size() == 2);
  CHECK(v.load_times[0].model == "m1:latest");  // by name
  CHECK(v.load_times[0].load_time == 2s);
  CHECK(v.load_times[1].model == "m3:latest");
  CHECK(v.load_times[1].load_time == 3s);
  CHECK(v.speed_known);
  CHECK(fleet.view(1).load_times.empty());
}

TEST_CASE("fleet: /api/ps is the truth, except for models with requests running") {
  Fleet fleet = up_fleet(three());
  const ModelId m1 = fleet.model("m1");
  CHECK(fleet.set_resident(0, std::vector<std::string>{"m2", "m3", "unknown-model"}, at(0s)));
  CHECK(fleet.view(0).resident_capacity == 3);  // three were resident at once
  CHECK(fleet.view(0).loaded.size() == 2);      // the unlisted one is never placed
  fleet.admit(0, m1, at(1s));                   // loading m1 evicts the LRU (m2 or m3)
  CHECK(fleet.view(0).loaded.size() == 3);
  CHECK(fleet.set_resident(0, std::vector<std::string>{"m3"}, at(2s)));
  auto loaded = fleet.view(0).loaded;
  REQUIRE(loaded.size() == 2);            // m1 still runs there, whatever the report says
  CHECK(loaded[0].model == "m1:latest");  // most recently used first
  CHECK(loaded[0].in_flight == 1);
  CHECK(loaded[1].model == "m3:latest");
  CHECK_FALSE(fleet.set_resident(0, std::vector<std::string>{"m3", "m1"}, at(3s)));
  CHECK(fleet.check_invariants() == "");
}

TEST_CASE("fleet: reconfigure adds, resizes and retires backends by name") {
  Fleet fleet = up_fleet(three(1));
  const ModelId m1 = fleet.model("m1");
  fleet.admit(2, m1, at(0s));
  auto specs = three(1);
  specs.erase(specs.begin() + 2);                        // c removed while a request runs
  specs[0].max_concurrency = 3;                          // a resized
  specs.push_back({.name = "d", .max_concurrency = 1});  // d added, catalog to be discovered
  CHECK(fleet.reconfigure(specs) == "");
  CHECK(fleet.view(0).max_concurrency == 3);
  CHECK(fleet.view(2).retired);
  CHECK(fleet.in_flight(2) == 1);
  const BackendId d = *fleet.find("d");
  CHECK(d == 3);                  // c's id is still in use
  CHECK_FALSE(fleet.view(d).up);  // new backends start down, until a health check says so
  CHECK(fleet.eligible(m1) == 0b011);
  fleet.set_up(d, true);
  CHECK(fleet.eligible(m1) == 0b1011);
  fleet.release(2, m1, {}, at(1s));  // c's last request ends: its id is free
  CHECK_FALSE(fleet.live(2));
  CHECK_FALSE(fleet.find("c"));
  specs.push_back({.name = "e", .max_concurrency = 1, .models = {"m1"}});
  CHECK(fleet.reconfigure(specs) == "");
  CHECK(*fleet.find("e") == 2);
  CHECK(fleet.check_invariants() == "");
  CHECK(fleet.reconfigure(std::vector<BackendSpec>{}) == "at least one backend is required");
  CHECK(fleet.find("e"));
}

TEST_CASE("fleet: model names are bounded; unused names are reclaimed") {
  Fleet fleet = up_fleet({{.name = "a", .max_concurrency = 1}});
  std::vector<std::string> names;
  for (std::size_t i = 0; i < sluice::core::kMaxModels + 10; ++i)
    names.push_back(numbered("model-", i));
  fleet.set_catalog(0, names);
  CHECK(fleet.model("model-0") != kUnlistedModel);
  CHECK(fleet.model(names.back()) == kUnlistedModel);  // beyond the bound: unlisted
  // The backend drops those models and lists new ones: the old ids are reused.
  std::vector<std::string> fresh;
  for (int i = 0; i < 100; ++i)
    fresh.push_back(numbered("fresh-", static_cast<std::size_t>(i)));
  CHECK(fleet.set_catalog(0, fresh));
  for (const std::string& name : fresh)
    CHECK(fleet.model(name) != kUnlistedModel);
  CHECK(fleet.model("model-0") == kUnlistedModel);
}

// Random operations on a random fleet: after each, the invariants hold, and every placement
// names an eligible backend with a free slot; `full` only when no eligible backend has one.
TEST_CASE("fleet: backlog is each backend's share by slots of the parked requests it could serve") {
  // a (2 slots) and b (6 slots) serve m1; only b serves m2; c serves m3 alone.
  Fleet fleet = up_fleet({{.name = "a", .max_concurrency = 2, .models = {"m1"}},
                          {.name = "b", .max_concurrency = 6, .models = {"m1", "m2"}},
                          {.name = "c", .max_concurrency = 1, .models = {"m3"}}});
  const ModelId m1 = fleet.model("m1"), m2 = fleet.model("m2");
  CHECK(fleet.backlog(0) == 0);
  fleet.note_parked(m1, 8);
  fleet.note_parked(m2, 3);
  CHECK(fleet.backlog(0) == doctest::Approx(8.0 * 2 / 8));
  CHECK(fleet.backlog(1) == doctest::Approx(8.0 * 6 / 8 + 3));
  CHECK(fleet.backlog(2) == 0);
  fleet.set_up(0, false);  // a down: b could take all of m1
  CHECK(fleet.backlog(1) == doctest::Approx(11));
  CHECK(fleet.backlog(0) == 0);
}

TEST_CASE("fleet: in_flight_seconds integrates a backend's in-flight count over time") {
  Fleet fleet = up_fleet(three());
  const ModelId m1 = fleet.model("m1");
  fleet.admit(0, m1, at(1s));
  fleet.admit(0, m1, at(3s));
  CHECK(fleet.in_flight_seconds(0, at(4s)) == doctest::Approx(2 + 2 * 1));
  fleet.release(0, m1, {}, at(5s));
  CHECK(fleet.in_flight_seconds(0, at(7s)) == doctest::Approx(2 + 2 * 2 + 2));
  CHECK(fleet.in_flight_seconds(1, at(7s)) == 0);
}

TEST_CASE("fleet: model check of placement under random events") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 200; ++round) {
    const std::size_t n = 1 + rng() % 5;
    std::vector<BackendSpec> specs;
    for (std::size_t b = 0; b < n; ++b) {
      BackendSpec spec{.name = numbered("b", b),
                       .max_concurrency = static_cast<std::int64_t>(1 + rng() % 3)};
      for (int m = 0; m < 4; ++m) {
        if (rng() % 2) spec.models.push_back(numbered("m", m));
      }
      specs.push_back(spec);
    }
    Fleet fleet(specs);
    std::vector<std::pair<BackendId, ModelId>> running;
    Time now = at(0s);
    for (int step = 0; step < 300; ++step) {
      now += std::chrono::milliseconds(rng() % 2000);
      const BackendId b = static_cast<BackendId>(rng() % n);
      const ModelId m = fleet.model(numbered("m", rng() % 5));  // m4: listed by nobody
      switch (rng() % 6) {
        case 0:
          fleet.set_up(b, rng() % 4 != 0);
          break;
        case 1: {
          std::vector<std::string> ps;
          for (int k = 0; k < 4; ++k) {
            if (rng() % 3 == 0) ps.push_back(numbered("m", k));
          }
          fleet.set_resident(b, ps, now);
          break;
        }
        case 2:
          if (!running.empty()) {
            const std::size_t i = rng() % running.size();
            fleet.release(running[i].first, running[i].second,
                          loaded(std::chrono::milliseconds(rng() % 4000)), now);
            running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
          }
          break;
        default: {
          const Time since = now - std::chrono::milliseconds(rng() % 8000);
          const Placement p = fleet.choose(m, 1 + rng() % 500, since, now);
          const BackendSet eligible = fleet.eligible(m);
          const BackendSet open = eligible & fleet.free_slots();
          switch (p.kind) {
            case Kind::place:
              REQUIRE(((open >> p.backend) & 1) == 1);
              fleet.admit(p.backend, m, now);
              running.emplace_back(p.backend, m);
              break;
            case Kind::full:
              REQUIRE(eligible != 0);
              REQUIRE(open == 0);
              break;
            case Kind::wait_warm:
              REQUIRE(open != 0);
              REQUIRE(p.until > now);
              REQUIRE(p.until <= since + std::chrono::hours(1));
              break;
            case Kind::down:
            case Kind::unserved:
              REQUIRE(eligible == 0);
              break;
          }
        }
      }
      const std::string problem = fleet.check_invariants();
      INFO("round " << round << " step " << step);
      REQUIRE(problem == "");
    }
  }
}
