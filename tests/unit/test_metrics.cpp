// Metrics: names and labels in the serialized text, histogram counts, bounded label values.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/core/scheduler.hpp"
#include "sluice/obs/metrics.hpp"

using namespace std::chrono_literals;
using sluice::obs::Metrics;
using sluice::obs::Outcome;
using sluice::obs::TokenKind;
using sluice::obs::UpstreamError;

namespace {

// The value of the sample whose name-and-labels part is exactly `key`, e.g.
// sluice_requests_total{outcome="ok",workload="paid"}; nullopt when absent.
std::optional<double> sample(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " ", 0) == 0) return std::stod(line.substr(key.size() + 1));
  }
  return std::nullopt;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const std::vector<std::string> kNames = {"paid", "free", "default"};

}  // namespace

TEST_CASE("metrics: every family of DESIGN.md §4 is exposed with its type") {
  Metrics m(kNames);
  const std::string text = m.serialize();
  for (const char* family :
       {"# TYPE sluice_requests_total counter", "# TYPE sluice_queue_length gauge",
        "# TYPE sluice_inflight gauge", "# TYPE sluice_queue_wait_seconds histogram",
        "# TYPE sluice_request_duration_seconds histogram",
        "# TYPE sluice_time_to_first_byte_seconds histogram", "# TYPE sluice_tokens_total counter",
        "# TYPE sluice_upstream_errors_total counter", "# TYPE sluice_concurrency_limit gauge"}) {
    CAPTURE(family);
    CHECK(contains(text, family));
  }
  // Series exist at zero before any request.
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"paid\"}") == 0);
  CHECK(sample(text, "sluice_requests_total{outcome=\"queue_timeout\",workload=\"free\"}") == 0);
  CHECK(sample(text, "sluice_queue_length{workload=\"default\"}") == 0);
  CHECK(sample(text, "sluice_upstream_errors_total{kind=\"header_timeout\"}") == 0);
  CHECK(sample(text, "sluice_tokens_total{kind=\"output\",workload=\"paid\"}") == 0);
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"passthrough\"}") == 0);
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"unclassified\"}") == 0);
  // The pseudo-workloads never queue: no gauges for them.
  CHECK_FALSE(sample(text, "sluice_queue_length{workload=\"passthrough\"}").has_value());
  CHECK_FALSE(sample(text, "sluice_inflight{workload=\"unclassified\"}").has_value());
}

TEST_CASE("metrics: counters and gauges after recording") {
  Metrics m(kNames);
  Metrics::Workload paid = m.workload("paid");
  m.count_request(paid, Outcome::ok);
  m.count_request(paid, Outcome::ok);
  m.count_request(paid, Outcome::user_queue_full);
  m.count_request(m.passthrough(), Outcome::ok);
  m.add_tokens(paid, TokenKind::prompt, 26);
  m.add_tokens(paid, TokenKind::output, 298);
  m.add_tokens(paid, TokenKind::output, 2);
  m.add_tokens(paid, TokenKind::output, -1);  // unknown: ignored
  m.add_tokens(paid, TokenKind::output, 0);
  m.count_upstream_error(UpstreamError::connect_failed);
  m.count_upstream_error(UpstreamError::idle_timeout);
  m.count_upstream_error(UpstreamError::idle_timeout);
  m.set_queue_length(m.workload("free"), 7);
  m.set_inflight(paid, 2);
  m.set_queue_length(m.passthrough(), 99);  // no such series: no effect
  m.set_concurrency_limit(4);

  const std::string text = m.serialize();
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"paid\"}") == 2);
  CHECK(sample(text, "sluice_requests_total{outcome=\"user_queue_full\",workload=\"paid\"}") == 1);
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"free\"}") == 0);
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"passthrough\"}") == 1);
  CHECK(sample(text, "sluice_tokens_total{kind=\"prompt\",workload=\"paid\"}") == 26);
  CHECK(sample(text, "sluice_tokens_total{kind=\"output\",workload=\"paid\"}") == 300);
  CHECK(sample(text, "sluice_upstream_errors_total{kind=\"connect_failed\"}") == 1);
  CHECK(sample(text, "sluice_upstream_errors_total{kind=\"idle_timeout\"}") == 2);
  CHECK(sample(text, "sluice_upstream_errors_total{kind=\"reset\"}") == 0);
  CHECK(sample(text, "sluice_queue_length{workload=\"free\"}") == 7);
  CHECK(sample(text, "sluice_inflight{workload=\"paid\"}") == 2);
  CHECK_FALSE(sample(text, "sluice_queue_length{workload=\"passthrough\"}").has_value());
  CHECK(sample(text, "sluice_concurrency_limit") == 4);
}

TEST_CASE("metrics: histograms count observations into LLM-sized buckets") {
  Metrics m(kNames);
  Metrics::Workload free = m.workload("free");
  m.observe_queue_wait(free, 0ms);
  m.observe_queue_wait(free, 3ms);
  m.observe_queue_wait(free, 45s);
  m.observe_request_duration(free, 90s);
  m.observe_request_duration(free, 700s);  // beyond the last bucket: only +Inf
  m.observe_ttfb(free, 200ms);

  const std::string text = m.serialize();
  const std::string wait = "sluice_queue_wait_seconds";
  CHECK(sample(text, wait + "_count{workload=\"free\"}") == 3);
  CHECK(sample(text, wait + "_sum{workload=\"free\"}") == doctest::Approx(45.003));
  CHECK(sample(text, wait + "_bucket{workload=\"free\",le=\"0.001\"}") == 1);
  CHECK(sample(text, wait + "_bucket{workload=\"free\",le=\"0.005\"}") == 2);
  CHECK(sample(text, wait + "_bucket{workload=\"free\",le=\"30\"}") == 2);
  CHECK(sample(text, wait + "_bucket{workload=\"free\",le=\"60\"}") == 3);
  CHECK(sample(text, wait + "_bucket{workload=\"free\",le=\"+Inf\"}") == 3);
  CHECK(sample(text, wait + "_count{workload=\"paid\"}") == 0);

  const std::string total = "sluice_request_duration_seconds";
  CHECK(sample(text, total + "_count{workload=\"free\"}") == 2);
  CHECK(sample(text, total + "_bucket{workload=\"free\",le=\"120\"}") == 1);
  CHECK(sample(text, total + "_bucket{workload=\"free\",le=\"600\"}") == 1);
  CHECK(sample(text, total + "_bucket{workload=\"free\",le=\"+Inf\"}") == 2);

  CHECK(sample(text, "sluice_time_to_first_byte_seconds_count{workload=\"free\"}") == 1);
  CHECK(sample(text, "sluice_time_to_first_byte_seconds_bucket{workload=\"free\",le=\"0.1\"}") ==
        0);
  CHECK(sample(text, "sluice_time_to_first_byte_seconds_bucket{workload=\"free\",le=\"0.25\"}") ==
        1);

  // Buckets span milliseconds to minutes, increasing.
  const auto& buckets = sluice::obs::latency_buckets();
  CHECK(buckets.front() == 0.001);
  CHECK(buckets.back() == 600);
  CHECK(std::is_sorted(buckets.begin(), buckets.end()));
}

TEST_CASE("metrics: a client-chosen name never becomes a label value") {
  Metrics m(kNames);
  const std::string hostile = "x\",evil=\"1";
  Metrics::Workload w = m.workload(hostile);
  CHECK(w == m.unclassified());
  CHECK(m.workload("PAID") == m.unclassified());  // names are exact
  CHECK(Metrics::Workload{} == Metrics::Workload{});
  m.count_request(w, Outcome::invalid_request);
  m.count_request(Metrics::Workload{}, Outcome::invalid_request);  // default handle: unclassified
  const std::string text = m.serialize();
  CHECK_FALSE(contains(text, "evil"));
  CHECK(sample(text,
               "sluice_requests_total{outcome=\"invalid_request\",workload=\"unclassified\"}") ==
        2);
}

TEST_CASE("metrics: workloads added on reload, bounded in number") {
  Metrics m(kNames);
  CHECK(m.workload("batch") == m.unclassified());
  const std::vector<std::string> more = {"paid", "batch"};
  m.add_workloads(more);
  CHECK_FALSE(m.workload("batch") == m.unclassified());
  CHECK(m.workload("paid") == m.workload("paid"));
  m.count_request(m.workload("batch"), Outcome::ok);
  std::string text = m.serialize();
  CHECK(sample(text, "sluice_requests_total{outcome=\"ok\",workload=\"batch\"}") == 1);
  CHECK(sample(text, "sluice_queue_length{workload=\"batch\"}") == 0);

  std::vector<std::string> flood;
  for (std::size_t i = 0; i < sluice::obs::kMaxWorkloadSeries + 50; ++i) {
    std::string name = "w";  // (not "w" + ...: GCC 12 warns falsely, bug 105329)
    name += std::to_string(i);
    flood.push_back(std::move(name));
  }
  m.add_workloads(flood);
  text = m.serialize();
  std::size_t series = 0;
  for (std::size_t pos = 0; (pos = text.find("sluice_queue_length{", pos)) != std::string::npos;
       ++pos) {
    ++series;
  }
  CHECK(series == sluice::obs::kMaxWorkloadSeries);
  CHECK(m.workload("w1100") == m.unclassified());
}

TEST_CASE("metrics: gauges follow a scheduler snapshot") {
  Metrics m(kNames);
  m.set_queue_length(m.workload("default"), 5);  // stale value, absent from the snapshot below
  sluice::core::Snapshot snapshot;
  snapshot.max_concurrency = 3;
  snapshot.workloads.push_back({.name = "paid", .parked = 4, .in_flight = 2});
  snapshot.workloads.push_back({.name = "free", .parked = 9, .in_flight = 1});
  snapshot.workloads.push_back({.name = "free", .parked = 1, .in_flight = 0, .retired = true});
  snapshot.workloads.push_back({.name = "unknown-to-metrics", .parked = 1});
  m.update_from(snapshot);
  const std::string text = m.serialize();
  CHECK(sample(text, "sluice_queue_length{workload=\"paid\"}") == 4);
  CHECK(sample(text, "sluice_inflight{workload=\"paid\"}") == 2);
  CHECK(sample(text, "sluice_queue_length{workload=\"free\"}") == 10);
  CHECK(sample(text, "sluice_inflight{workload=\"free\"}") == 1);
  CHECK(sample(text, "sluice_queue_length{workload=\"default\"}") == 0);
  CHECK(sample(text, "sluice_concurrency_limit") == 3);
  CHECK_FALSE(contains(text, "unknown-to-metrics"));
}

namespace {

const std::vector<std::string> kBackends = {"gpu-a", "gpu-b"};

// "m7" (appended: GCC 12 warns falsely about "m" + std::to_string(7)).
std::string model_name(int n) {
  std::string out = "m";
  out += std::to_string(n);
  return out;
}

}  // namespace

TEST_CASE("metrics: per-backend families, series at 0, recorded by backend name") {
  Metrics m(kNames);
  m.set_backends(kBackends);
  std::string text = m.serialize();
  for (const char* family :
       {"# TYPE sluice_backend_up gauge", "# TYPE sluice_backend_inflight gauge",
        "# TYPE sluice_backend_requests_total counter", "# HELP sluice_backend_up ",
        "# HELP sluice_backend_requests_total "}) {
    CAPTURE(family);
    CHECK(contains(text, family));
  }
  CHECK(sample(text, "sluice_backend_up{backend=\"gpu-a\"}") == 0);
  CHECK(sample(text, "sluice_backend_inflight{backend=\"gpu-b\"}") == 0);
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-b\",outcome=\"ok\"}") == 0);
  CHECK(sample(text,
               "sluice_backend_requests_total{backend=\"gpu-a\",outcome=\"upstream_error\"}") == 0);

  m.count_backend_request("gpu-a", Outcome::ok);
  m.count_backend_request("gpu-a", Outcome::ok);
  m.count_backend_request("gpu-b", Outcome::upstream_5xx);
  m.count_backend_request("not-configured", Outcome::ok);  // ignored
  m.count_model_load("gpu-a", "llama3.1:8b");
  m.count_model_load("gpu-a", "llama3.1:8b");
  m.count_model_load("gpu-b", "");  // a name the fleet does not know
  m.count_model_load("not-configured", "llama3.1:8b");

  sluice::core::Snapshot snapshot;
  snapshot.backends.push_back(
      {.id = 0, .name = "gpu-a", .up = true, .in_flight = 2, .max_concurrency = 3});
  snapshot.backends.push_back(
      {.id = 1, .name = "gpu-b", .up = false, .in_flight = 0, .max_concurrency = 5});
  snapshot.backends.push_back(
      {.id = 2, .name = "gpu-a", .up = false, .retired = true, .in_flight = 7});  // gone
  m.update_from(snapshot);
  text = m.serialize();
  CHECK(contains(text, "# TYPE sluice_backend_model_loads_total counter"));
  CHECK(sample(text, "sluice_backend_up{backend=\"gpu-a\"}") == 1);
  CHECK(sample(text, "sluice_backend_up{backend=\"gpu-b\"}") == 0);
  CHECK(sample(text, "sluice_backend_inflight{backend=\"gpu-a\"}") == 2);
  // Each backend's limit in force (learned with "auto"), beside the global one.
  CHECK(sample(text, "sluice_concurrency_limit{backend=\"gpu-a\"}") == 3);
  CHECK(sample(text, "sluice_concurrency_limit{backend=\"gpu-b\"}") == 5);
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-a\",outcome=\"ok\"}") == 2);
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-b\",outcome=\"upstream_5xx\"}") ==
        1);
  CHECK(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-a\",model=\"llama3.1:8b\"}") ==
        2);
  CHECK(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-b\",model=\"other\"}") == 1);
  CHECK_FALSE(contains(text, "not-configured"));
  CHECK(contains(text, "# TYPE sluice_backend_faster_slot_waits_total counter"));
  CHECK(sample(text, "sluice_backend_faster_slot_waits_total{backend=\"gpu-a\"}") == 0);

  // The scheduler's count of requests that waited for a faster slot: the counter follows it.
  snapshot.backends[0].faster_slot_waits = 3;
  m.update_from(snapshot);
  m.update_from(snapshot);  // a second scrape of the same count adds nothing
  text = m.serialize();
  CHECK(sample(text, "sluice_backend_faster_slot_waits_total{backend=\"gpu-a\"}") == 3);
  CHECK(sample(text, "sluice_backend_faster_slot_waits_total{backend=\"gpu-b\"}") == 0);
  snapshot.backends[0].faster_slot_waits = 5;
  m.update_from(snapshot);
  CHECK(sample(m.serialize(), "sluice_backend_faster_slot_waits_total{backend=\"gpu-a\"}") == 5);
}

TEST_CASE("metrics: model-load labels are bounded per backend; the rest count as other") {
  Metrics m(kNames);
  m.set_backends(kBackends);
  const int names = static_cast<int>(sluice::obs::kMaxModelLoadSeries) + 8;
  m.count_model_load("gpu-a", "");  // "other" first: it does not take a named place
  for (int i = 0; i < names; ++i)
    m.count_model_load("gpu-a", model_name(i));
  m.count_model_load("gpu-a", model_name(0));  // an early name keeps its series
  const std::string text = m.serialize();
  std::size_t series = 0;
  for (std::size_t at = text.find("sluice_backend_model_loads_total{"); at != std::string::npos;
       at = text.find("sluice_backend_model_loads_total{", at + 1))
    ++series;
  CHECK(series == sluice::obs::kMaxModelLoadSeries + 1);
  CHECK(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-a\",model=\"m0\"}") == 2);
  CHECK(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-a\",model=\"m31\"}") == 1);
  CHECK_FALSE(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-a\",model=\"m32\"}")
                  .has_value());
  CHECK(sample(text, "sluice_backend_model_loads_total{backend=\"gpu-a\",model=\"other\"}") == 9);
}

TEST_CASE("metrics: a backend removed by a reload loses its series; kept ones keep counting") {
  Metrics m(kNames);
  m.set_backends(kBackends);
  m.count_backend_request("gpu-a", Outcome::ok);
  m.count_backend_request("gpu-b", Outcome::ok);
  m.count_model_load("gpu-b", "m1");
  const std::vector<std::string> next = {"gpu-a", "gpu-c"};
  m.set_backends(next);
  m.count_backend_request("gpu-b", Outcome::ok);  // still finishing there: not counted
  m.count_backend_request("gpu-a", Outcome::ok);
  std::string text = m.serialize();
  CHECK_FALSE(contains(text, "backend=\"gpu-b\""));
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-a\",outcome=\"ok\"}") == 2);
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-c\",outcome=\"ok\"}") == 0);
  // Re-added later: a new series from 0 (Prometheus sees a counter reset).
  m.set_backends(kBackends);
  text = m.serialize();
  CHECK(sample(text, "sluice_backend_requests_total{backend=\"gpu-b\",outcome=\"ok\"}") == 0);
  CHECK_FALSE(contains(text, "backend=\"gpu-c\""));
}
