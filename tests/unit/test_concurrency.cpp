// The adaptive concurrency controller, on simulated sample streams: a small discrete-time model
// of an Ollama (P slots, a FIFO for the rest, per-stream decode speed falling with the streams
// that share the GPU) behind a queue that admits while in-flight < the controller's limit. Time
// is counted, nothing sleeps; every run is seeded.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "sluice/core/concurrency.hpp"

using namespace std::chrono_literals;
using sluice::core::at;
using sluice::core::AutoConcurrency;
using sluice::core::ConcurrencyController;
using sluice::core::ConcurrencySample;
using sluice::core::Duration;
using sluice::core::LimitChange;
using sluice::core::Time;

namespace {

// Total decode throughput T(N), in solo streams, at N streams on the GPU: the simulator's
// default table (1:1, 2:0.7, 4:0.37, 8:0.18; T interpolated linearly, flat beyond 8).
double sim_total(double n) {
  const double xs[] = {1, 2, 4, 8};
  const double ts[] = {1.0, 1.4, 1.48, 1.44};
  if (n <= 1) return n;
  for (int i = 1; i < 4; ++i) {
    if (n <= xs[i]) return ts[i - 1] + (ts[i] - ts[i - 1]) * (n - xs[i - 1]) / (xs[i] - xs[i - 1]);
  }
  return ts[3];
}
// A GPU that scales perfectly: the only limit is its P slots.
double linear_total(double n) {
  return n;
}

struct Model {
  int parallel = 4;
  double (*total)(double) = sim_total;
  double solo_rate = 60;      // tokens/s of one stream alone
  double prefill_s = 0.067;   // prompt evaluation
  int output_tokens = 250;    // mean output length
  bool vary_length = true;    // log-normal lengths (sigma 0.6)
  double ttfb_jitter_s = 0;   // uniform noise added to the measured TTFB
  double overhead_s = 0;      // fixed per-request time before the backend sees it (network, HTTP)
  double speed_noise = 0;     // each request's speed x U(1 - x, 1 + x)
  int external_streams = 0;   // another tenant's streams (share the GPU, hold no slot)
  bool openai = false;        // answers without durations (TTFB and tokens only)
  double arrivals_per_s = 0;  // 0 = a standing backlog; else Poisson
};

struct Run {
  std::vector<std::pair<double, std::int64_t>> limits;  // (time s, limit) after each change
  std::vector<LimitChange> changes;
  std::vector<std::pair<double, std::string>> notes;  // (time s, text): take_notes()
  std::int64_t final_limit = 0;
  std::size_t completed = 0;
  std::size_t waited = 0;  // requests that waited inside the backend more than 5% of service
};

// Runs the model for `seconds`, calling `at_time(t, model)` every step (to change it live).
template <class Hook>
Run simulate(Model model, AutoConcurrency spec, double seconds, std::uint64_t seed, Hook at_time,
             ConcurrencyController* reuse = nullptr) {
  struct Req {
    int planned = 0;
    double arrival = 0, admitted = 0, started = -1, first_token = -1;
    double tokens = 0, prefill_left = 0, prefill_end = -1, speed_factor = 1;
    std::int64_t in_flight = 0;
    double backlog = 0;    // still in sluice's queue when it was admitted
    double load_mark = 0;  // in_flight_seconds when it was admitted
  };
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> uniform(0, 1);
  ConcurrencyController own(spec);
  ConcurrencyController& c = reuse ? *reuse : own;
  Run run;
  run.limits.push_back({0, c.limit()});
  const double dt = 0.005;
  std::deque<Req> backlog;     // in sluice's queue
  std::vector<Req> in_sluice;  // admitted: in the backend's FIFO or running
  double next_arrival = 0;
  double in_flight_seconds = 0;  // integral of in_sluice.size() over time
  auto make = [&](double t) {
    Req r;
    r.arrival = t;
    const double sigma = 0.6;
    const double mu = std::log(model.output_tokens) - sigma * sigma / 2;
    r.planned =
        model.vary_length
            ? std::clamp(static_cast<int>(std::lround(std::exp(mu + sigma * normal(rng)))), 1, 4096)
            : model.output_tokens;
    r.speed_factor = 1 + model.speed_noise * (2 * uniform(rng) - 1);
    return r;
  };
  for (double t = 0; t < seconds; t += dt) {
    at_time(t, model);
    if (model.arrivals_per_s <= 0) {
      while (backlog.size() < 64)
        backlog.push_back(make(t));
    } else {
      while (next_arrival <= t) {
        backlog.push_back(make(next_arrival));
        next_arrival += -std::log(1 - uniform(rng)) / model.arrivals_per_s;
      }
    }
    while (!backlog.empty() && static_cast<std::int64_t>(in_sluice.size()) < c.limit()) {
      Req r = backlog.front();
      backlog.pop_front();
      r.admitted = t;
      r.in_flight = static_cast<std::int64_t>(in_sluice.size()) + 1;
      r.backlog = static_cast<double>(backlog.size());
      r.load_mark = in_flight_seconds;
      in_sluice.push_back(r);
    }
    in_flight_seconds += static_cast<double>(in_sluice.size()) * dt;
    // The backend's FIFO: the oldest admitted take free slots.
    int running = 0;
    for (const Req& r : in_sluice)
      running += r.started >= 0 ? 1 : 0;
    for (Req& r : in_sluice) {
      if (running >= model.parallel) break;
      if (r.started < 0) {
        r.started = t;
        r.prefill_left = model.prefill_s;
        ++running;
      }
    }
    const double streams = running + model.external_streams;
    const double per_stream = streams > 0 ? model.solo_rate * model.total(streams) / streams : 0;
    for (auto it = in_sluice.begin(); it != in_sluice.end();) {
      Req& r = *it;
      if (r.started < 0) {
        ++it;
        continue;
      }
      if (r.prefill_left > 0) {
        r.prefill_left -= dt;
        if (r.prefill_left <= 0) r.prefill_end = t + dt;
        ++it;
        continue;
      }
      r.tokens += per_stream * r.speed_factor * dt;
      if (r.first_token < 0 && r.tokens >= 1) r.first_token = t + dt;
      if (r.tokens < r.planned) {
        ++it;
        continue;
      }
      const double end = t + dt;
      ConcurrencySample s;
      s.in_flight = r.in_flight;
      s.backlog = r.backlog;
      s.mean_in_flight = (in_flight_seconds - r.load_mark) / std::max(end - r.admitted, dt);
      const double jitter = model.ttfb_jitter_s * uniform(rng);
      s.time_to_first_byte = std::chrono::duration_cast<Duration>(
          std::chrono::duration<double>(r.first_token - r.admitted + jitter + model.overhead_s));
      s.total = std::chrono::duration_cast<Duration>(
          std::chrono::duration<double>(end - r.admitted + model.overhead_s));
      s.eval_count = r.planned;
      if (!model.openai) {
        s.load_duration = 10us;
        s.prompt_eval_duration = std::chrono::duration_cast<Duration>(
            std::chrono::duration<double>(r.prefill_end - r.started));
        s.eval_duration = std::chrono::duration_cast<Duration>(
            std::chrono::duration<double>(end - r.prefill_end));
      }
      const double wait = r.started - r.admitted;
      ++run.completed;
      if (wait > 0.05 * (end - r.started)) ++run.waited;
      it = in_sluice.erase(it);
      const Time now = at(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(end)));
      std::optional<LimitChange> change = c.observe(s, now);
      for (std::string& note : c.take_notes()) {
        REQUIRE(!note.empty());
        if (std::getenv("SLUICE_TRACE")) std::printf("%7.1f s  note: %s\n", end, note.c_str());
        run.notes.emplace_back(end, std::move(note));
      }
      if (change) {
        REQUIRE(change->from != change->to);
        REQUIRE(!change->reason.empty());
        run.changes.push_back(*change);
        run.limits.push_back({end, change->to});
        if (std::getenv("SLUICE_TRACE"))
          std::printf("%7.1f s  %lld -> %lld  %s\n", end, static_cast<long long>(change->from),
                      static_cast<long long>(change->to), change->reason.c_str());
      }
      REQUIRE(c.limit() >= spec.min);
      REQUIRE(c.limit() <= spec.max);
    }
  }
  run.final_limit = c.limit();
  return run;
}

Run simulate(Model model, AutoConcurrency spec, double seconds, std::uint64_t seed = 1) {
  return simulate(model, spec, seconds, seed, [](double, Model&) {});
}

// The limits in force at any time in [from, to).
std::set<std::int64_t> limits_between(const Run& run, double from, double to) {
  std::set<std::int64_t> out;
  std::int64_t current = run.limits.front().second;
  for (const auto& [t, limit] : run.limits) {
    if (t <= from) current = limit;
  }
  out.insert(current);
  for (const auto& [t, limit] : run.limits) {
    if (t > from && t < to) out.insert(limit);
  }
  return out;
}

// First time after which the limit stays within [lo, hi] until `until`.
double settled_at(const Run& run, std::int64_t lo, std::int64_t hi, double until) {
  double since = 0;
  bool inside = false;
  for (const auto& [t, limit] : run.limits) {
    if (t >= until) break;
    const bool in = limit >= lo && limit <= hi;
    if (in && !inside) since = t;
    inside = in;
  }
  return inside ? since : until;
}

ConcurrencySample native(std::int64_t in_flight, Duration wait, Duration decode = 4s,
                         std::int64_t tokens = 240) {
  ConcurrencySample s;
  s.in_flight = in_flight;
  s.prompt_eval_duration = 50ms;
  s.load_duration = 0ms;
  s.eval_duration = decode;
  s.eval_count = tokens;
  s.time_to_first_byte = wait + 50ms + decode / tokens;
  s.total = wait + 50ms + decode;
  return s;
}

}  // namespace

TEST_CASE("auto_concurrency bounds are validated, naming the field") {
  CHECK(validate(AutoConcurrency{}) == "");
  CHECK(validate(AutoConcurrency{.min = 0}) == "min must be >= 1");
  CHECK(validate(AutoConcurrency{.min = 4, .max = 2}) == "max must be >= min (4)");
  CHECK(validate(AutoConcurrency{.max = 2000}) == "max must be <= 1024");
  CHECK(validate(AutoConcurrency{.min_stream_tokens_per_s = -1}) ==
        "min_stream_tokens_per_s must be a number >= 0");
  CHECK(validate(AutoConcurrency{.min_stream_tokens_per_s = NAN}) ==
        "min_stream_tokens_per_s must be a number >= 0");
}

TEST_CASE("one request that waited is noise; two that waited lower the limit at once") {
  ConcurrencyController c({.min = 1, .max = 8});
  // Climb on samples that did not wait (3 s apart: a probe is judged once twice the 4 s
  // service has passed).
  Time t = at(0s);
  for (std::int64_t level = 1; level <= 2; ++level) {
    for (int i = 0; i < 3; ++i)
      c.observe(native(level, 0ms), t += 3s);
  }
  REQUIRE(c.limit() == 3);
  for (int i = 0; i < 3; ++i)
    c.observe(native(3, 0ms), t += 3s);
  REQUIRE(c.limit() == 4);  // 3 kept (no throughput data below: nothing says it flattened)
  for (int i = 0; i < 3; ++i)
    c.observe(native(4, 0ms), t += 3s);
  REQUIRE(c.limit() == 5);
  for (int i = 0; i < 3; ++i)
    c.observe(native(5, 0ms), t += 3s);
  REQUIRE(c.limit() == 6);
  for (int i = 0; i < 3; ++i)
    c.observe(native(6, 0ms), t += 3s);
  REQUIRE(c.limit() == 7);
  c.observe(native(7, 0ms), t += 3s);
  c.observe(native(7, 0ms), t += 3s);
  c.observe(native(7, 0ms), t += 3s);
  REQUIRE(c.limit() == 8);
  c.observe(native(8, 0ms), t += 3s);
  c.observe(native(8, 0ms), t += 3s);
  c.observe(native(8, 0ms), t += 3s);
  REQUIRE(c.limit() == 8);  // the max
  // At 8: one sample at level 5 waited a second: noise, nothing changes.
  CHECK_FALSE(c.observe(native(5, 1s), t += 3s));
  CHECK(c.limit() == 8);
  // A second one at level 5: the backend runs fewer than 5. Each waited 1 s of 4.05 s service:
  // P ~= 5 x 4.05 / 5.05 = 4.
  std::optional<LimitChange> change = c.observe(native(5, 1s), t += 3s);
  REQUIRE(change);
  CHECK(change->from == 8);
  CHECK(change->to == 4);
  CHECK(change->reason ==
        "requests admitted at 5 in flight waited 1000 ms inside the backend (p50 of 2 of 4 "
        "samples; 25% of their service time)");
  CHECK(c.view().last_change == change->reason);
}

TEST_CASE("an answer that was not streamed: its head came after the decoding") {
  ConcurrencyController c({.min = 2, .max = 2});
  ConcurrencySample s = native(2, 300ms);
  s.streamed = false;
  s.time_to_first_byte = s.total;  // head and body at the end
  c.observe(s, at(1s));
  const auto view = c.view();
  REQUIRE(view.levels.size() == 1);
  CHECK(view.levels[0].waited == 1);
  CHECK(view.levels[0].median_wait_ms == doctest::Approx(300).epsilon(0.01));
}

TEST_CASE("a wait below the threshold (a few percent of the service time) is not a wait") {
  ConcurrencyController c({.min = 2, .max = 2});
  for (int i = 0; i < 4; ++i)
    c.observe(native(2, 100ms), at(std::chrono::seconds(i)));  // 2.5% of 4.05 s
  const auto view = c.view();
  REQUIRE(view.levels.size() == 1);
  CHECK(view.levels[0].waited == 0);
  CHECK(view.levels[0].median_wait_ms == doctest::Approx(100).epsilon(0.01));
  ConcurrencyController d({.min = 2, .max = 2});
  for (int i = 0; i < 4; ++i)
    d.observe(native(2, 200ms), at(std::chrono::seconds(i)));  // 4.9%
  CHECK(d.view().levels[0].waited == 4);
}

TEST_CASE("converges to the backend's parallelism on a GPU that scales (P = 1, 2, 4, 8)") {
  for (int p : {1, 2, 4, 8}) {
    CAPTURE(p);
    Model model{.parallel = p, .total = linear_total};
    const Run run = simulate(model, {.min = 1, .max = 32}, 600, 7 + p);
    CHECK(run.final_limit == p);
    // Converged: within one of P from 60 simulated seconds on, and exactly P most of the time.
    const double settled = settled_at(run, p - 1, p + 1, 600);
    CHECK(settled <= 60.0);
    const auto seen = limits_between(run, 120, 600);
    CHECK(*seen.begin() >= p - 1);
    CHECK(*seen.rbegin() <= p + 1);
    // Probes above P make a few requests wait: fewer than 10 % (so the p90 of the wait stays
    // under 5 % of the service time).
    CHECK(static_cast<double>(run.waited) < 0.1 * static_cast<double>(run.completed));
  }
}

TEST_CASE("a fixed per-request overhead is not a wait: it is learned from requests run alone") {
  // Short services (answers of 250 tokens at 1200 tokens/s: ~0.2 s, so 3 % is 6 ms) behind a
  // fixed 8 ms (+ up to 2 ms) that every request spends before the backend sees it. Counted as
  // waiting, it would hold the limit at 1 whatever P is.
  for (int p : {2, 4}) {
    CAPTURE(p);
    Model model{.parallel = p,
                .total = linear_total,
                .solo_rate = 1200,
                .prefill_s = 0.005,
                .ttfb_jitter_s = 0.002,
                .overhead_s = 0.008};
    const Run run = simulate(model, {.min = 1, .max = 16}, 120, 40 + p);
    CHECK(run.final_limit == p);
    CHECK(settled_at(run, p - 1, p + 1, 120) <= 30.0);
  }
  // The alone wait is what was subtracted: about the overhead.
  ConcurrencyController c({.min = 1, .max = 4});
  for (int i = 0; i < 8; ++i)
    c.observe(native(1, 8ms + std::chrono::milliseconds(i % 3)), at(std::chrono::seconds(i)));
  CHECK(c.view().alone_wait_ms == doctest::Approx(9).epsilon(0.01));
  // And a real wait beyond it still counts (reason names both).
  ConcurrencyController d({.min = 1, .max = 8});
  Time t = at(0s);
  for (std::int64_t level = 1; level <= 3; ++level) {
    for (int i = 0; i < 3; ++i)
      d.observe(native(level, 20ms), t += 9s);
  }
  REQUIRE(d.limit() == 4);
  const std::optional<LimitChange> change = d.observe(native(4, 1020ms), t += 9s);
  REQUIRE(change);
  CHECK(change->to == 3);
  CHECK(change->reason.find("waited 1000 ms inside the backend") != std::string::npos);
  CHECK(change->reason.find("beyond the 20 ms a request waits alone") != std::string::npos);
}

TEST_CASE("stops where throughput flattens (the simulator's decode scaling, P = 4 and 8)") {
  // T(n) = 1, 1.4, 1.44, 1.48, 1.47, ... x 60 tokens/s: +2.9 % and +2.8 % for the 3rd and 4th
  // slot (>= 2 %), less from the 5th on. Both settle at 4; with P = 2 at 2 (waits), P = 1 at 1.
  for (auto [p, expected] : {std::pair{1, 1}, {2, 2}, {4, 4}, {8, 4}}) {
    CAPTURE(p);
    Model model{.parallel = p, .total = sim_total, .vary_length = false};
    const Run run = simulate(model, {.min = 1, .max = 32}, 600, 3);
    CHECK(run.final_limit == expected);
    CHECK(settled_at(run, expected - 1, expected + 1, 600) <= 60.0);
    const auto seen = limits_between(run, 120, 600);
    CHECK(*seen.begin() >= expected - 1);
    CHECK(*seen.rbegin() <= expected + 1);
  }
}

TEST_CASE("a slot that slows every stream is worth it only while a queue waits for it") {
  // The simulator's curve: the 3rd and 4th slot add 2.9 % and 2.8 % tokens/s and make each
  // stream 46 % and 30 % slower. Under a Poisson load that two slots carry (80 % of T(2)) the
  // queue is short, the probes of 3 are not worth it and the limit stays at 2 (where paid
  // answers decode 1.9x faster than at 4). Without the rule it climbs to 4.
  for (int p : {4, 8}) {
    CAPTURE(p);
    Model model{.parallel = p, .total = sim_total, .arrivals_per_s = 0.8 * 1.4 * 60 / 250};
    const Run run = simulate(model, {.min = 1, .max = 32}, 900, 13 + p);
    CHECK(run.final_limit == 2);
    const auto seen = limits_between(run, 120, 900);
    CHECK(*seen.begin() >= 2);
    CHECK(*seen.rbegin() <= 3);
    bool unworthy = false;
    for (const LimitChange& c : run.changes)
      unworthy = unworthy || c.reason.find("not worth a slot: 3 in flight") != std::string::npos;
    CHECK(unworthy);
  }
  // A standing queue makes the same slots worth it (the test above: 4), and once it has
  // drained the limit steps back down. 64 parked until 200 s, then 0.1 requests/s.
  Model model{.parallel = 4, .total = sim_total, .vary_length = false};
  const Run run = simulate(model, {.min = 1, .max = 32}, 900, 17, [](double t, Model& m) {
    if (t >= 200) m.arrivals_per_s = 0.1;
  });
  CHECK(*limits_between(run, 150, 200).rbegin() >= 4);
  CHECK(run.final_limit <= 2);
  bool stepped_down = false;
  for (const auto& c : run.changes)
    stepped_down = stepped_down || (c.to == c.from - 1 && c.reason.find("not worth") == 0);
  CHECK(stepped_down);
}

TEST_CASE("stable under noise: no oscillation beyond one slot at steady state") {
  for (int p : {2, 4, 8}) {
    CAPTURE(p);
    Model model{.parallel = p, .total = linear_total, .ttfb_jitter_s = 0.03, .speed_noise = 0.1};
    const Run run = simulate(model, {.min = 1, .max = 32}, 900, 11 * p);
    // A jittered TTFB can fail a good probe (then backed off 60 s): steady from 200 s on.
    const auto seen = limits_between(run, 200, 900);
    CHECK(*seen.begin() >= p - 1);
    CHECK(*seen.rbegin() <= p + 1);
    // And it does not move often: at most a probe per backoff, give or take.
    std::size_t moves = 0;
    for (const auto& [t, limit] : run.limits)
      moves += t > 200 ? 1 : 0;
    CHECK(moves <= 30);
  }
}

TEST_CASE("follows a live change of the backend's parallelism, down fast and up on a probe") {
  Model model{.parallel = 4, .total = linear_total};
  const Run run = simulate(model, {.min = 1, .max = 32}, 800, 5, [](double t, Model& m) {
    if (t >= 200 && t < 500) m.parallel = 2;
    if (t >= 500) m.parallel = 4;
  });
  const auto before = limits_between(run, 150, 200);
  CHECK(*before.begin() >= 3);
  CHECK(*before.rbegin() <= 5);
  // Down to 2 within 30 s of the change, and it stays around 2.
  CHECK(settled_at(run, 1, 3, 500) <= 230);
  const auto during = limits_between(run, 240, 500);
  CHECK(*during.rbegin() <= 3);
  CHECK(*during.begin() >= 1);
  // Parallelism back to 4: found by the next probes (backoff 60 s, doubling), not stuck at 2.
  CHECK(run.final_limit >= 3);
  CHECK(run.final_limit <= 5);
}

TEST_CASE("a second tenant on the same GPU: the per-stream floor lowers the limit") {
  // The simulator's curve, 60 tokens/s solo, P = 4, a floor of 20 tokens/s per stream. Alone,
  // 4 streams get 60 x 1.48 / 4 = 22.2 each: 4. With a tenant of 2 streams, 3 + 2 share
  // 60 x 1.47: 17.6 each, below the floor; 2 + 2 share 60 x 1.48: 22.2 each, above.
  Model model{.parallel = 4, .total = sim_total, .vary_length = false};
  const Run run = simulate(model, {.min = 1, .max = 8, .min_stream_tokens_per_s = 20}, 600, 9,
                           [](double t, Model& m) { m.external_streams = t >= 200 ? 2 : 0; });
  CHECK(*limits_between(run, 150, 200).begin() >= 4);  // 4, and probes of 5
  const auto after = limits_between(run, 260, 600);
  CHECK(*after.rbegin() <= 3);
  CHECK(run.final_limit == 2);
  bool floor_reason = false;
  for (const LimitChange& c : run.changes)
    floor_reason = floor_reason || c.reason.find("min_stream_tokens_per_s") != std::string::npos;
  CHECK(floor_reason);
}

TEST_CASE("the bounds hold whatever the backend does") {
  {
    Model model{.parallel = 16, .total = linear_total};
    const Run run = simulate(model, {.min = 3, .max = 5}, 300);
    CHECK(run.limits.front().second == 3);  // starts at min
    CHECK(run.final_limit == 5);
  }
  {
    Model model{.parallel = 1, .total = linear_total};
    const Run run = simulate(model, {.min = 2, .max = 6}, 300);
    for (const auto& [t, limit] : run.limits)
      CHECK(limit >= 2);
    CHECK(run.final_limit == 2);
  }
}

TEST_CASE("OpenAI-compatible answers (no durations): TTFB and token throughput alone") {
  for (int p : {1, 2, 4}) {
    CAPTURE(p);
    Model model{.parallel = p, .total = linear_total, .openai = true};
    const Run run = simulate(model, {.min = 1, .max = 16}, 600, 21 + p);
    CHECK(run.final_limit >= p);
    CHECK(run.final_limit <= p + 1);
    const auto seen = limits_between(run, 120, 600);
    CHECK(*seen.begin() >= p - 1);
    CHECK(*seen.rbegin() <= p + 1);
  }
  // And throughput still stops it where the GPU flattens (simulator curve, P = 8).
  Model model{.parallel = 8, .total = sim_total, .vary_length = false, .openai = true};
  const Run run = simulate(model, {.min = 1, .max = 16}, 600, 5);
  CHECK(run.final_limit >= 3);
  CHECK(run.final_limit <= 5);
}

TEST_CASE("under a light load the limit is not raised: no evidence above the demand") {
  // 0.1 requests/s of ~4 s each: rarely two at once.
  Model model{.parallel = 8, .total = linear_total, .arrivals_per_s = 0.1};
  const Run run = simulate(model, {.min = 1, .max = 32}, 600, 4);
  CHECK(run.final_limit <= 3);
}

TEST_CASE("a reload's new bounds clamp the limit and keep what was learned") {
  Model model{.parallel = 8, .total = linear_total};
  ConcurrencyController c({.min = 1, .max = 32});
  simulate(
      model, {.min = 1, .max = 32}, 300, 1, [](double, Model&) {}, &c);
  REQUIRE(c.limit() == 8);
  c.set_spec({.min = 1, .max = 6});
  CHECK(c.limit() == 6);
  CHECK_FALSE(c.view().probing);
  c.set_spec({.min = 7, .max = 12});
  CHECK(c.limit() == 7);
  CHECK(c.view().levels.size() >= 6);
}

TEST_CASE("a level found not worth its slot is probed again only for a queue that makes it so") {
  // The load of the case above: 3 is refused ("not worth a slot") within the first minute.
  // Without the memory of that refusal, 3 is probed again after every backoff (60 s, 120 s, ...)
  // and each probe slows every stream to relearn it. With it, no probe until the queue grows:
  // a standing queue from 300 s makes 3 (and 4) worth it at once, long before the memory of
  // the refusal (max_probe_backoff, 10 minutes) runs out.
  Model model{.parallel = 4, .total = sim_total, .arrivals_per_s = 0.8 * 1.4 * 60 / 250};
  const Run run = simulate(model, {.min = 1, .max = 32}, 420, 17, [](double t, Model& m) {
    if (t >= 300) m.arrivals_per_s = 0;  // a standing queue of 64
  });
  double refused = -1;
  int probes_before_queue = 0;
  double probed_after_queue = -1;
  for (std::size_t i = 0; i < run.changes.size(); ++i) {
    const LimitChange& c = run.changes[i];
    const double t = run.limits[i + 1].first;
    if (refused < 0 && c.reason.find("not worth a slot: 3 in flight") == 0) refused = t;
    if (refused >= 0 && t > refused && t < 300 && c.to == 3) ++probes_before_queue;
    if (t >= 300 && c.to == 3 && probed_after_queue < 0) probed_after_queue = t;
  }
  REQUIRE(refused > 0);
  CHECK(refused < 120);
  CHECK(probes_before_queue == 0);
  // The log says once (per refusal) why no probe comes, and what queue would bring one.
  int held_back_notes = 0;
  for (const auto& [t, text] : run.notes) {
    if (t > refused && t < 300 && text.find("not probing 3: found not worth a slot") == 0) {
      ++held_back_notes;
      CHECK(text.find(" would)") != std::string::npos);
    }
  }
  CHECK(held_back_notes == 1);
  CHECK(probed_after_queue > 0);
  CHECK(probed_after_queue < 360);
  CHECK(*limits_between(run, 380, 420).rbegin() >= 4);
}

TEST_CASE(
    "a second tenant after a refusal: the GPU changed, so the limit is probed again at once") {
  // As above, 3 is found not worth it within the first minute and backed off. At 90 s a tenant
  // of 4 streams takes most of the GPU: sluice's streams at 2 decode at a third of the speed, a
  // 3rd stream would now add 28 % of sluice's tokens/s, and the queue grows. What held 3 back
  // was learned on the old curve: it is forgotten and the limit rises within seconds, rather
  // than after the backoff (and the memory of the refusal) runs out.
  Model model{.parallel = 4, .total = sim_total, .arrivals_per_s = 0.8 * 1.4 * 60 / 250};
  const Run run = simulate(model, {.min = 1, .max = 32}, 200, 17,
                           [](double t, Model& m) { m.external_streams = t >= 90 ? 4 : 0; });
  double refused = -1;
  for (std::size_t i = 0; i < run.changes.size() && refused < 0; ++i) {
    if (run.changes[i].reason.find("not worth a slot: 3 in flight") == 0)
      refused = run.limits[i + 1].first;
  }
  REQUIRE(refused > 0);
  REQUIRE(refused < 80);
  CHECK(*limits_between(run, refused + 1, 90).rbegin() == 2);
  CHECK(*limits_between(run, 90, 150).rbegin() >= 3);
  // The log says so: the speed at 2 fell (no limit changed at that moment).
  bool changed_noted = false;
  for (const auto& [t, text] : run.notes) {
    if (t < 90) CHECK(text.find("the GPU changed") == std::string::npos);
    if (t >= 90 && t < 150 && text.find("the GPU changed: per-stream speed at 2 in flight") == 0 &&
        text.find("% slower than the") != std::string::npos)
      changed_noted = true;
  }
  CHECK(changed_noted);
}
