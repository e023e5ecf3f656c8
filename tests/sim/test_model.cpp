// Unit tests of the pure GPU timing model of sluice-sim (no sockets, no clock).
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "sluice/sim/model.hpp"

using namespace sluice::sim;
using namespace std::chrono_literals;

namespace {
double secs(Duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

TEST_CASE("decode retention follows the calibration table and interpolates total throughput") {
  GpuModel m{GpuParams{}};
  CHECK(m.retention(1) == doctest::Approx(1.0));
  CHECK(m.retention(2) == doctest::Approx(0.70));
  CHECK(m.retention(4) == doctest::Approx(0.37));
  CHECK(m.retention(8) == doctest::Approx(0.18));
  // Between 2 (total 1.40) and 4 (total 1.48): total 1.44 at 3 streams.
  CHECK(m.retention(3) == doctest::Approx(1.44 / 3));
  // Past the last point the total stays at 8 * 0.18 = 1.44.
  CHECK(m.retention(16) == doctest::Approx(1.44 / 16));
  CHECK(m.retention(0) == doctest::Approx(1.0));
}

TEST_CASE("token interval and prefill follow the rates") {
  GpuParams p;
  p.decode_tokens_per_second = 50;
  p.prefill_tokens_per_second = 1000;
  GpuModel m{p};
  CHECK(secs(m.token_interval(1)) == doctest::Approx(0.02));
  CHECK(secs(m.token_interval(2)) == doctest::Approx(1.0 / 35));
  CHECK(m.stream_tokens_per_second(4) == doctest::Approx(50 * 0.37));
  CHECK(secs(m.prefill_duration(500)) == doctest::Approx(0.5));
  CHECK(m.prefill_duration(0) == Duration(0));
}

TEST_CASE("prompt tokens are characters / 4 rounded up, at least one") {
  CHECK(prompt_tokens_for_chars(0) == 1);
  CHECK(prompt_tokens_for_chars(4) == 1);
  CHECK(prompt_tokens_for_chars(5) == 2);
  CHECK(prompt_tokens_for_chars(400) == 100);
}

TEST_CASE("scaling tables parse, imply 1:1 and reject nonsense") {
  std::string err;
  auto t = parse_scaling("2:0.5, 4:0.3", &err);
  REQUIRE(t);
  REQUIRE(t->size() == 3);
  CHECK(t->front().streams == 1);
  CHECK((*t)[2].retention == doctest::Approx(0.3));
  CHECK(format_scaling(*t) == "1:1,2:0.5,4:0.3");
  CHECK_FALSE(parse_scaling("4:0.3,2:0.5", &err));
  CHECK(err.find("increasing") != std::string::npos);
  CHECK_FALSE(parse_scaling("2:1.5", &err));
  CHECK(err.find("retention") != std::string::npos);
  CHECK_FALSE(parse_scaling("two:0.5", &err));
  CHECK(err.find("two:0.5") != std::string::npos);
  CHECK_FALSE(parse_scaling("", &err));
}

TEST_CASE("validate names the bad parameter") {
  GpuParams p;
  CHECK_FALSE(validate(p));
  p.decode_tokens_per_second = 0;
  REQUIRE(validate(p));
  CHECK(validate(p)->find("decode") != std::string::npos);
  p = GpuParams{};
  p.prefill_tokens_per_second = -1;
  CHECK(validate(p)->find("prefill") != std::string::npos);
  p = GpuParams{};
  p.max_output_tokens = 0;
  CHECK(validate(p)->find("max output") != std::string::npos);
}

TEST_CASE("drawn output lengths are deterministic, bounded and average the configured mean") {
  GpuModel m{GpuParams{}};
  CHECK(m.drawn_output_tokens(42) == m.drawn_output_tokens(42));
  double sum = 0;
  std::set<int> distinct;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const int t = m.drawn_output_tokens(hash_text(1, std::to_string(i)));
    CHECK(t >= 1);
    CHECK(t <= 4096);
    sum += t;
    distinct.insert(t);
  }
  CHECK(sum / n == doctest::Approx(250).epsilon(0.05));
  CHECK(distinct.size() > 100);

  GpuParams fixed;
  fixed.output_length_sigma = 0;
  fixed.mean_output_tokens = 77;
  CHECK(GpuModel{fixed}.drawn_output_tokens(5) == 77);
  fixed.max_output_tokens = 10;
  CHECK(GpuModel{fixed}.drawn_output_tokens(5) == 10);
}

TEST_CASE("predict_fifo: 8 simultaneous requests at parallel 2 run in pairs") {
  GpuModel m{GpuParams{}};
  std::vector<PlannedRequest> reqs(8, PlannedRequest{0ns, 100, 40});
  const auto t = predict_fifo(m, 2, reqs);
  const double prefill = 100.0 / 1500;
  const double pair = prefill + 40 / (60 * 0.70);
  for (int i = 0; i < 8; ++i) {
    const int batch = i / 2;
    CAPTURE(i);
    CHECK(secs(t[i].start) == doctest::Approx(batch * pair).epsilon(1e-6));
    CHECK(secs(t[i].first_token) ==
          doctest::Approx(batch * pair + prefill + 1 / (60 * 0.70)).epsilon(1e-6));
    CHECK(secs(t[i].end) == doctest::Approx((batch + 1) * pair).epsilon(1e-6));
  }
}

TEST_CASE("predict_fifo: later arrivals wait, and a lone stream decodes at full speed") {
  GpuModel m{GpuParams{}};
  // A arrives first and runs alone; B arrives while A runs (parallel 1) and waits for it.
  std::vector<PlannedRequest> reqs{{0ns, 1, 60}, {100ms, 1, 60}};
  const auto t = predict_fifo(m, 1, reqs);
  const double one = 1.0 / 1500 + 60 / 60.0;
  CHECK(secs(t[0].end) == doctest::Approx(one).epsilon(1e-6));
  CHECK(t[1].start == t[0].end);
  CHECK(secs(t[1].end) == doctest::Approx(2 * one).epsilon(1e-6));
  // With two slots B starts on arrival and both slow down while they overlap.
  const auto t2 = predict_fifo(m, 2, reqs);
  CHECK(t2[1].start == 100ms);
  CHECK(secs(t2[0].end) > one);
  // Arrival order, not index order, decides who goes first.
  std::vector<PlannedRequest> reversed{{50ms, 1, 10}, {0ns, 1, 10}};
  const auto t3 = predict_fifo(m, 1, reversed);
  CHECK(t3[1].start == 0ns);
  CHECK(t3[0].start == t3[1].end);
}

TEST_CASE("words are deterministic per seed and look like text") {
  WordGenerator a(7), b(7), c(8);
  std::string ta, tb, tc;
  for (int i = 0; i < 200; ++i) {
    const auto w = a.next_token();
    CHECK_FALSE(w.empty());
    if (i == 0) CHECK(w.front() != ' ');
    if (i > 0) CHECK((w.front() == ' ' || w == "." || w == ","));
    for (char ch : w)
      CHECK(static_cast<unsigned char>(ch) < 128);
    ta += w;
    tb += b.next_token();
    tc += c.next_token();
  }
  CHECK(ta == tb);
  CHECK(ta != tc);
  CHECK(ta.find('.') != std::string::npos);
}

TEST_CASE("embeddings are deterministic, sized, and unit length when normalized") {
  const auto v = embedding(1, "hello", 64, true);
  REQUIRE(v.size() == 64);
  double norm = 0;
  for (float x : v)
    norm += double(x) * x;
  CHECK(std::sqrt(norm) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(embedding(1, "hello", 64, true) == v);
  CHECK(embedding(1, "world", 64, true) != v);
  const auto raw = embedding(1, "hello", 64, false);
  for (float x : raw)
    CHECK(std::fabs(x) <= 1.0f);
  CHECK(hash_text(1, "x") != hash_text(2, "x"));
}
