// sluice-bench statistics: nearest-rank percentiles, Jain's index, interval unions, run
// summaries and upstream utilisation. Pure.
#include <doctest/doctest.h>

#include <cmath>

#include "sluice/bench/stats.hpp"

using namespace sluice::bench;

namespace {

RequestRecord ok_record(std::string user, std::string tier, std::string group, double sent,
                        double latency, long tokens = 10) {
  RequestRecord r;
  r.user = std::move(user);
  r.tier = std::move(tier);
  r.group = std::move(group);
  r.status = 200;
  r.outcome = "ok";
  r.sent_s = sent;
  r.latency_s = latency;
  r.ttft_s = latency / 2;
  r.output_tokens = tokens;
  return r;
}

}  // namespace

TEST_CASE("percentile is nearest rank and always an observed value") {
  std::vector<double> v{10, 9, 8, 7, 6, 5, 4, 3, 2, 1};  // unsorted on purpose
  CHECK(*percentile(v, 50) == 5);
  CHECK(*percentile(v, 90) == 9);  // 0.9 * 10 is 9.000000000000002 in doubles: still rank 9
  CHECK(*percentile(v, 99) == 10);
  CHECK(*percentile(v, 100) == 10);
  CHECK(*percentile(v, 10) == 1);
  CHECK(*percentile(v, 1) == 1);
  CHECK(*percentile({42}, 50) == 42);
  CHECK(*percentile({42}, 99) == 42);
  // 3 values: p50 is the 2nd (ceil 1.5), p90 the 3rd (ceil 2.7).
  CHECK(*percentile({3, 1, 2}, 50) == 2);
  CHECK(*percentile({3, 1, 2}, 90) == 3);
  CHECK_FALSE(percentile({}, 50));
  CHECK_FALSE(percentile({1, 2}, 0));
  CHECK_FALSE(percentile({1, 2}, 101));
}

TEST_CASE("Jain's index: 1 when equal, 1/n when one takes everything") {
  CHECK(*jain_index({5, 5, 5, 5}) == doctest::Approx(1.0));
  CHECK(*jain_index({1, 0, 0, 0}) == doctest::Approx(0.25));
  CHECK(*jain_index({1, 2}) == doctest::Approx(9.0 / 10.0));  // (1+2)^2 / (2 * (1+4))
  CHECK_FALSE(jain_index({}));
  CHECK_FALSE(jain_index({0, 0}));
}

TEST_CASE("union_length merges overlaps, keeps gaps and clips to the window") {
  CHECK(union_length({{0, 2}, {1, 3}}, 0, 10) == doctest::Approx(3));
  CHECK(union_length({{0, 1}, {2, 3}}, 0, 10) == doctest::Approx(2));
  CHECK(union_length({{0, 10}, {2, 3}}, 0, 10) == doctest::Approx(10));  // nested
  CHECK(union_length({{0, 1}, {1, 2}}, 0, 10) == doctest::Approx(2));    // touching
  CHECK(union_length({{-5, 1}, {9, 20}}, 0, 10) == doctest::Approx(2));  // clipped
  CHECK(union_length({{3, 4}, {0, 1}}, 0, 10) == doctest::Approx(2));    // any order
  CHECK(union_length({{0, 1}}, 5, 5) == 0);
  CHECK(union_length({}, 0, 1) == 0);
}

TEST_CASE("summaries: per tier and group, ok requests only in the percentiles") {
  std::vector<RequestRecord> records;
  records.push_back(ok_record("p1", "paid", "paid", 0, 2, 100));
  records.push_back(ok_record("p1", "paid", "paid", 0, 4, 100));
  records.push_back(ok_record("p2", "paid", "paid", 0, 6, 100));
  records.push_back(ok_record("f1", "free", "free", 1, 10, 50));
  auto failed = ok_record("f1", "free", "free", 1, 1000, 0);
  failed.outcome = "http_error";
  failed.status = 503;
  records.push_back(failed);

  const Summary s = summarize(records, {});
  CHECK(s.requests == 5);
  CHECK(s.ok == 4);
  CHECK(s.failed == 1);
  CHECK(s.span_s == doctest::Approx(1001));  // first send 0, last end 1 + 1000
  REQUIRE(s.tiers.size() == 2);
  CHECK(s.tiers[0].name == "paid");  // order of first appearance
  const SubjectSummary* paid = s.find("tier", "paid");
  REQUIRE(paid);
  CHECK(paid->count == 3);
  CHECK(*paid->latency.p50 == 4);
  CHECK(*paid->latency.max == 6);
  CHECK(*paid->latency.mean == doctest::Approx(4));
  CHECK(*paid->ttft.p50 == 2);
  CHECK(paid->output_tokens == 300);
  CHECK(*paid->tokens_per_s == doctest::Approx(300.0 / 1001));
  // per-user means 3 and 6: (9)^2 / (2 * 45) = 0.9
  CHECK(*paid->jain == doctest::Approx(0.9));
  REQUIRE(paid->users.size() == 2);
  CHECK(*paid->users[0].mean_latency_s == doctest::Approx(3));

  const SubjectSummary* free = s.find("tier", "free");
  REQUIRE(free);
  CHECK(free->failed == 1);
  CHECK(free->latency.n == 1);
  CHECK(*free->latency.max == 10);  // the failed request's 1000 s is not a latency sample
  CHECK(s.find("group", "free") != nullptr);
  CHECK(s.find("tier", "nobody") == nullptr);
  CHECK(s.find("all", "")->count == 5);
}

TEST_CASE("requests never sent do not stretch the span") {
  std::vector<RequestRecord> records;
  records.push_back(ok_record("u", "t", "g", 5, 2));
  // (built from ok_record, not by assigning literals: GCC 12 -Wrestrict false positive)
  RequestRecord unsent = ok_record("u", "t", "g", 0, 0);
  unsent.outcome = std::string("not_sent");
  unsent.latency_s.reset();
  records.push_back(unsent);
  CHECK(run_span(records) == doctest::Approx(2));
}

TEST_CASE("upstream utilisation is busy time over the span, peak counts overlaps") {
  std::vector<RequestRecord> records;
  records.push_back(ok_record("u", "t", "g", 0, 10));  // span [0, 10]
  SUBCASE("back-to-back intervals: never idle, one at a time") {
    const auto u = upstream_usage(records, {{0, 4}, {4, 10}});
    CHECK(u.available);
    CHECK(*u.utilisation == doctest::Approx(1.0));
    CHECK(u.busy_s == doctest::Approx(10));
    CHECK(u.peak_active == 1);
    CHECK(u.records == 2);
  }
  SUBCASE("a gap is idle time") {
    const auto u = upstream_usage(records, {{0, 4}, {5, 10}});
    CHECK(*u.utilisation == doctest::Approx(0.9));
  }
  SUBCASE("overlap is counted once; peak is 2") {
    const auto u = upstream_usage(records, {{0, 6}, {5, 10}, {12, 13}});
    CHECK(*u.utilisation == doctest::Approx(1.0));
    CHECK(u.peak_active == 2);
  }
}

TEST_CASE("several upstreams: busy time and loads summed, utilisation the mean, peak across all") {
  std::vector<RequestRecord> records;
  records.push_back(ok_record("u", "t", "g", 0, 10));  // span [0, 10]
  std::vector<UpstreamObservation> fleet(3);
  fleet[0] = {"http://a", {{0, 10}}, 2, 6};
  fleet[1] = {"http://b", {{0, 5}, {2, 4}}, 0, 0};
  fleet[2] = {"http://c", {{3, 6}}, 5, 15};
  const auto u = upstream_usage(records, fleet);
  CHECK(u.available);
  CHECK(u.records == 4);
  CHECK(u.busy_s == doctest::Approx(10 + 5 + 3));
  CHECK(*u.utilisation == doctest::Approx(18.0 / 30.0));
  CHECK(u.peak_active == 4);  // from t = 3 to 4: a, b twice, c
  CHECK(u.model_loads == std::optional<std::uint64_t>(7));
  CHECK(u.load_s == doctest::Approx(21));
  REQUIRE(u.backends.size() == 3);
  CHECK(u.backends[1].target == "http://b");
  CHECK(u.backends[1].busy_s == doctest::Approx(5));
  CHECK(*u.backends[1].utilisation == doctest::Approx(0.5));
  CHECK(u.backends[2].model_loads == std::optional<std::uint64_t>(5));

  SUBCASE("one upstream: the same figures as the single-upstream form") {
    const auto one = upstream_usage(records, std::vector<UpstreamObservation>{fleet[1]});
    const auto plain = upstream_usage(records, fleet[1].intervals);
    CHECK(one.busy_s == plain.busy_s);
    CHECK(*one.utilisation == *plain.utilisation);
    CHECK(one.peak_active == plain.peak_active);
    CHECK(one.records == plain.records);
    CHECK(one.model_loads == std::optional<std::uint64_t>(0));
  }
  SUBCASE("loads unknown on one upstream: unknown in total") {
    fleet[2].model_loads.reset();
    CHECK_FALSE(upstream_usage(records, fleet).model_loads);
  }
}
