// Issue 13's benchmark, the pure part (src/bench/adaptive.cpp): the limit read from
// /admin/state, limits.csv and upstream.csv round trips, the simulator's arrival times, Poisson
// rate scaling, live changes, convergence, per-arm metrics, the targets and the limit chart.
#include <doctest/doctest.h>

#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/report.hpp"
#include "sluice/bench/stream.hpp"

using namespace sluice::bench;

namespace {

RequestRecord ok(std::string tier, double sent, double latency, long tokens) {
  RequestRecord r;
  r.tier = std::move(tier);
  r.group = r.tier;
  r.status = 200;
  r.outcome = "ok";
  r.sent_s = sent;
  r.latency_s = latency;
  r.output_tokens = tokens;
  return r;
}

}  // namespace

TEST_CASE("parse_state_limit reads backends[0].concurrency_limit and says why not") {
  CHECK(parse_state_limit(
            R"({"backends":[{"name":"a","concurrency_limit":3},{"concurrency_limit":9}]})") == 3);
  std::string why;
  CHECK_FALSE(parse_state_limit(R"({"backends":[]})", &why));
  CHECK(why.find("no backends") != std::string::npos);
  CHECK_FALSE(parse_state_limit(R"({"backends":[{"concurrency_limit":"auto"}]})", &why));
  CHECK(why.find("concurrency_limit") != std::string::npos);
  CHECK_FALSE(parse_state_limit("not json", &why));
}

TEST_CASE("limits.csv and upstream.csv round trip; malformed lines are named") {
  const std::vector<LimitPoint> points{{0.5, 1}, {9.25, 2}, {30, 4}};
  const auto back = parse_limits_csv(write_limits_csv(points));
  REQUIRE(back.size() == 3);
  CHECK(back[1].t_s == doctest::Approx(9.25));
  CHECK(back[2].limit == 4);
  CHECK_THROWS_WITH_AS(parse_limits_csv("t_s,limit\n1,x\n"), doctest::Contains("line 2"),
                       ReportError);
  CHECK_THROWS_AS(parse_limits_csv("time,limit\n"), ReportError);

  UpstreamInterval i;
  i.arrival_s = 1;
  i.start_s = 1.5;
  i.end_s = 4;
  const auto up = parse_upstream_csv(write_upstream_csv({i}));
  REQUIRE(up.size() == 1);
  CHECK(up[0].arrival_s == doctest::Approx(1));
  CHECK(up[0].start_s == doctest::Approx(1.5));
  CHECK(up[0].end_s == doctest::Approx(4));
}

TEST_CASE("the simulator's arrival time reaches the run's time line") {
  const auto stats = parse_sim_stats(
      R"({"time_scale":10,"now_ns":9000000000,"records":[{"id":1,"arrival_ns":1000000000,
          "start_ns":3000000000,"end_ns":5000000000,"headers":{}}]})",
      "");
  REQUIRE(stats);
  REQUIRE(stats->generation.size() == 1);
  CHECK(stats->generation[0].arrival_ns == 1000000000);
  const auto run = to_run_time(*stats, 1000000000, 10.0);  // sim 1 s = run 10 s
  REQUIRE(run.size() == 1);
  CHECK(run[0].arrival_s == doctest::Approx(10));
  CHECK(run[0].start_s == doctest::Approx(12));
  CHECK(run[0].end_s == doctest::Approx(14));
}

TEST_CASE("scale_poisson_rates scales Poisson groups only") {
  Scenario s;
  Group poisson, burst;
  poisson.arrival.mode = Arrival::Mode::poisson;
  poisson.arrival.rate_per_s = 0.1;
  burst.arrival.mode = Arrival::Mode::burst;
  s.groups = {poisson, burst};
  scale_poisson_rates(s, 3);
  CHECK(s.groups[0].arrival.rate_per_s == doctest::Approx(0.3));
  CHECK(s.groups[1].arrival.rate_per_s == 0);
}

TEST_CASE("parse_live_change takes SECONDS=JSON object") {
  const auto c = parse_live_change(R"(150={"parallel":2})");
  REQUIRE(c);
  CHECK(c->at_s == 150);
  CHECK(c->body == R"({"parallel":2})");
  std::string why;
  CHECK_FALSE(parse_live_change(R"({"parallel":2})", &why));
  CHECK_FALSE(parse_live_change("x=1", &why));
  CHECK_FALSE(parse_live_change("10=[1]", &why));
  CHECK(why.find("object") != std::string::npos);
}

TEST_CASE("convergence: the settled limit and when it stays within one of it") {
  SUBCASE("climbing 1, 2, 3, 4 and staying: converged when it reached 3") {
    const auto [settled, at] = convergence({{0, 1}, {10, 2}, {20, 3}, {30, 4}}, 0, 300);
    CHECK(settled == 4);
    REQUIRE(at);
    CHECK(*at == doctest::Approx(20));
  }
  SUBCASE("+-1 oscillation at steady state does not delay it") {
    const auto [settled, at] =
        convergence({{0, 1}, {5, 4}, {100, 5}, {110, 4}, {200, 3}, {210, 4}}, 0, 300);
    CHECK(settled == 4);
    CHECK(*at == doctest::Approx(5));
  }
  SUBCASE("measured from a later time (a live change): converged when the drop came") {
    const auto [settled, at] = convergence({{0, 4}, {150, 4}, {170, 2}}, 150, 400);
    CHECK(settled == 2);
    REQUIRE(at);
    CHECK(*at == doctest::Approx(20));  // 4 is two off 2: converged when 2 came, at 170
  }
  SUBCASE("no samples: unknown") {
    const auto [settled, at] = convergence({}, 0, 100);
    CHECK_FALSE(settled);
    CHECK_FALSE(at);
  }
}

TEST_CASE("arm_metrics: tokens/s, paid p90 and the backend wait share over a window") {
  ArmInput arm;
  arm.label = "auto";
  for (int i = 0; i < 10; ++i)
    arm.records.push_back(ok(i % 2 ? "paid" : "open-source", i * 10.0, 1.0 + i, 100));
  // Waits of 0, 10, ..., 90 % of a 10 s service; the first one arrived before the window.
  for (int i = 0; i < 10; ++i) {
    UpstreamInterval u;
    u.arrival_s = i * 10.0;
    u.start_s = u.arrival_s + i;
    u.end_s = u.start_s + 10;
    arm.upstream.push_back(u);
  }
  arm.limits = {{0, 1}, {20, 4}};
  const ArmMetrics all = arm_metrics(arm, 0);
  // 1000 tokens over the span 0 .. 90 + 10 = 100 s.
  CHECK(*all.tokens_per_s == doctest::Approx(10));
  CHECK(*all.paid_p90_s == doctest::Approx(10));  // paid latencies 2, 4, 6, 8, 10
  CHECK(*all.wait_share_p90 == doctest::Approx(0.8));
  CHECK(all.settled_limit == 4);
  CHECK(*all.converged_s == doctest::Approx(20));

  const ArmMetrics late = arm_metrics(arm, 50, 0.0);
  CHECK(*late.tokens_per_s == doctest::Approx(500.0 / 50));  // requests ending >= 50: 5
  CHECK(*late.paid_p90_s == doctest::Approx(10));            // paid sent >= 50: 6, 8, 10
  CHECK(*late.wait_share_p90 == doctest::Approx(0.9));       // arrived >= 50: 50..90 %
  CHECK(*late.converged_s == doctest::Approx(20));           // measured from 0

  arm.static_limit = 4;
  CHECK_FALSE(arm_metrics(arm, 0).converged_s);
}

TEST_CASE("judge_auto compares auto with the best static per metric") {
  auto arm = [](std::optional<long> limit, double tokens, double p90, double wait,
                std::optional<double> converged) {
    ArmMetrics m;
    m.label = limit ? "static-" + std::to_string(*limit) : "auto";
    m.static_limit = limit;
    m.tokens_per_s = tokens;
    m.paid_p90_s = p90;
    m.wait_share_p90 = wait;
    m.converged_s = converged;
    return m;
  };
  // Best tokens/s is static-4 (100), best p90 static-2 (5 s).
  std::vector<ArmMetrics> arms{arm(2, 90, 5, 0, {}), arm(4, 100, 6, 0.01, {}),
                               arm(std::nullopt, 96, 5.4, 0.04, 30.0)};
  auto v = judge_auto(arms, AdaptiveTargets{});
  REQUIRE(v.size() == 1);
  CHECK(v[0].tokens);     // 0.96 >= 0.95
  CHECK(v[0].p90);        // 1.08 <= 1.1
  CHECK(v[0].wait);       // 4 % <= 5 %
  CHECK(v[0].converged);  // 30 <= 60
  arms[2] = arm(std::nullopt, 94, 5.6, 0.06, 61.0);
  v = judge_auto(arms, AdaptiveTargets{});
  CHECK_FALSE(v[0].tokens);
  CHECK_FALSE(v[0].p90);
  CHECK_FALSE(v[0].wait);
  CHECK_FALSE(v[0].converged);
  const auto md = adaptive_markdown("P4 <steady>", arms, AdaptiveTargets{});
  CHECK(md.find("| static-4 | 4 | 100.0 |") != std::string::npos);
  CHECK(md.find("**missed**") != std::string::npos);
}

TEST_CASE("limit_chart draws one step line per series and marks a live change") {
  LimitPanel panel;
  panel.title = "P4 <live>";
  panel.mark_s = 150;
  panel.series.push_back({"auto", {{0, 1}, {10, 4}, {160, 2}}, 300});
  const auto svg = limit_chart({panel}, "limits & more");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("limits &amp; more") != std::string::npos);
  CHECK(svg.find("P4 &lt;live&gt;") != std::string::npos);
  CHECK(svg.find("<path d=\"M") != std::string::npos);
  CHECK(svg.find("stroke-dasharray=\"5 4\"") != std::string::npos);
  CHECK(svg.find("</svg>") != std::string::npos);
}
