// sluice-bench outputs and input parsing: CSV round trip, JSON summary round trip, Markdown
// table, SVG chart, targets, the NDJSON scanner, /sim/stats parsing and target URLs. Pure.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "sluice/bench/report.hpp"
#include "sluice/bench/stream.hpp"
#include "sluice/bench/target.hpp"

using namespace sluice::bench;

namespace {

RequestRecord record(std::size_t index, std::string user, std::string tier, double sent,
                     double latency) {
  RequestRecord r;
  r.index = index;
  r.user = std::move(user);
  r.tier = std::move(tier);
  r.group = r.tier;
  r.request_id = "run-" + std::to_string(index);
  r.status = 200;
  r.outcome = "ok";
  r.num_predict = 64;
  r.sent_s = sent;
  r.ttft_s = latency / 4;
  r.latency_s = latency;
  r.prompt_tokens = 20;
  r.output_tokens = 64;
  r.done_reason = "length";
  return r;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1))
    ++n;
  return n;
}

Run make_run(const std::string& label, double paid_latency, double free_latency,
             double utilisation) {
  Run run;
  const std::string paid_users[] = {"p0", "p1"}, free_users[] = {"f0", "f1"};
  for (std::size_t i = 0; i < 4; ++i) {
    run.records.push_back(record(i, paid_users[i % 2], "paid", 0, paid_latency * double(i + 1)));
    run.records.push_back(
        record(10 + i, free_users[i % 2], "free", 0, free_latency * double(i + 1)));
  }
  UpstreamUsage u;
  u.available = true;
  u.utilisation = utilisation;
  run.summary = summarize(run.records, u);
  run.summary.label = label;
  run.summary.scenario = "t";
  return run;
}

}  // namespace

TEST_CASE("CSV round trip keeps every field, quoting what needs it") {
  std::vector<RequestRecord> records;
  records.push_back(record(0, "alice", "paid", 0.5, 2.25));
  auto odd = record(1, "bob, \"the builder\"", "free", 1, 3);
  odd.status = 503;
  odd.outcome = "http_error";
  odd.error = "HTTP 503: queue timeout\nsecond line";
  odd.queue_s = 1.5;
  odd.ttft_s.reset();
  odd.prompt_tokens.reset();
  odd.output_tokens.reset();
  odd.num_predict.reset();
  odd.done_reason = "";
  odd.workload = "free";
  odd.model = "llama3.1:8b";
  odd.eta_s = 1.25;
  odd.eta_rate_s = 2.5;
  odd.eta_after_s = 0.75;
  records.push_back(odd);

  const std::string csv = write_csv(records);
  CHECK(csv.rfind(std::string(kCsvColumns) + "\n", 0) == 0);
  CHECK(csv.find("\"bob, \"\"the builder\"\"\"") != std::string::npos);
  const auto back = parse_csv(csv);
  REQUIRE(back.size() == 2);
  CHECK(back[0].user == "alice");
  CHECK(back[0].latency_s == doctest::Approx(2.25));
  CHECK(*back[0].ttft_s == doctest::Approx(2.25 / 4));
  CHECK(*back[0].output_tokens == 64);
  CHECK(*back[0].num_predict == 64);
  CHECK(back[0].done_reason == "length");
  CHECK_FALSE(back[0].queue_s);
  CHECK(back[1].user == "bob, \"the builder\"");
  CHECK(back[1].error == "HTTP 503: queue timeout\nsecond line");
  CHECK(back[1].status == 503);
  CHECK(*back[1].queue_s == doctest::Approx(1.5));
  CHECK_FALSE(back[1].ttft_s);
  CHECK_FALSE(back[1].output_tokens);
  CHECK_FALSE(back[1].num_predict);
  CHECK(back[1].workload == "free");
  CHECK(back[0].model.empty());
  CHECK(back[1].model == "llama3.1:8b");
  CHECK_FALSE(back[0].eta_s);
  CHECK(*back[1].eta_s == doctest::Approx(1.25));
  CHECK(*back[1].eta_rate_s == doctest::Approx(2.5));
  CHECK_FALSE(back[0].eta_after_s);
  CHECK(*back[1].eta_after_s == doctest::Approx(0.75));
}

TEST_CASE("an ETA given after parking is scored against the wait left then") {
  std::string csv(kCsvColumnsWithoutEtaAfter);
  csv += "\n0,u,paid,paid,r-0,200,ok,,64,0.000000,3.0,3.5,4.0,20,64,length,paid,mistral,3.0,\n";
  const auto old = parse_csv(csv);
  REQUIRE(old.size() == 1);
  CHECK(*old[0].eta_s == doctest::Approx(3.0));
  CHECK_FALSE(old[0].eta_after_s);
  // Waited 12 s; the ETA came 2 s after parking: 10 s were left. 8 s is 20 % off, not 33 %.
  RequestRecord r = record(0, "u", "paid", 0, 13);
  r.queue_s = 12;
  r.eta_s = 8;
  r.eta_after_s = 2;
  RequestRecord late = record(1, "v", "paid", 0, 13);  // given as it was admitted: not scored
  late.queue_s = 5;
  late.eta_s = 0;
  late.eta_after_s = 5;
  const Summary s = summarize({r, late}, UpstreamUsage{});
  const SubjectSummary* paid = s.find("tier", "paid");
  REQUIRE(paid);
  CHECK(paid->eta_error.n == 1);
  CHECK(*paid->eta_error.p50 == doctest::Approx(0.2));
}

TEST_CASE("CSV written before the ETA columns still reads; the ETA error per tier") {
  std::string csv(kCsvColumnsWithoutEta);
  csv += "\n0,u,paid,paid,r-0,200,ok,,64,0.000000,,0.5,1.0,20,64,length,paid,mistral\n";
  const auto back = parse_csv(csv);
  REQUIRE(back.size() == 1);
  CHECK(back[0].model == "mistral");
  CHECK_FALSE(back[0].eta_s);
  // |ETA - wait| / wait over the requests that waited and carried an ETA.
  std::vector<RequestRecord> records;
  for (int i = 0; i < 4; ++i) {
    RequestRecord r = record(i, "u" + std::to_string(i), "paid", 0, 10);
    r.queue_s = 10;
    r.eta_s = 10 + i;   // 0 %, 10 %, 20 %, 30 %
    r.eta_rate_s = 20;  // 100 %
    records.push_back(r);
  }
  records.push_back(record(9, "x", "paid", 0, 1));  // admitted at once: no ETA
  const Summary s = summarize(records, UpstreamUsage{});
  const SubjectSummary* paid = s.find("tier", "paid");
  REQUIRE(paid);
  CHECK(paid->eta_error.n == 4);
  CHECK(*paid->eta_error.p50 == doctest::Approx(0.1));
  CHECK(*paid->eta_error.p90 == doctest::Approx(0.3));
  CHECK(*paid->eta_rate_error.p50 == doctest::Approx(1.0));
  Run run{s, records};
  const std::string table = eta_markdown_table({run});
  INFO(table);
  CHECK(table.find("| paid | 4 | 10") != std::string::npos);
  CHECK(table.find("| 30") != std::string::npos);
  const Summary again = summary_from_json(summary_to_json(s));
  CHECK(again.find("tier", "paid")->eta_error.n == 4);
}

TEST_CASE("CSV written before the model column still reads") {
  std::string csv(kCsvColumnsWithoutModel);
  csv += "\n0,u,paid,paid,r-0,200,ok,,64,0.000000,,0.5,1.0,20,64,length,paid\n";
  const auto back = parse_csv(csv);
  REQUIRE(back.size() == 1);
  CHECK(back[0].workload == "paid");
  CHECK(back[0].model.empty());
  // ...but a row must have as many fields as its header says.
  CHECK_THROWS_WITH_AS(parse_csv(std::string(kCsvColumns) +
                                 "\n0,u,paid,paid,r-0,200,ok,,64,0,,0.5,1.0,20,64,length,paid\n"),
                       "csv line 2: expected 21 fields, got 17", ReportError);
}

TEST_CASE("malformed CSV is refused with the line") {
  CHECK_THROWS_WITH_AS(parse_csv("a,b\n1,2\n"), doctest::Contains("unexpected header"),
                       ReportError);
  const std::string header = std::string(kCsvColumns) + "\n";
  CHECK_THROWS_WITH_AS(parse_csv(header + "1,2,3\n"), doctest::Contains("line 2: expected 21"),
                       ReportError);
  CHECK_THROWS_WITH_AS(parse_csv(header + "0,u,t,g,id,200,ok,,,x,,,,,,,,,,,\n"),
                       doctest::Contains("sent_s: not a number"), ReportError);
  CHECK_THROWS_WITH_AS(parse_csv(header + "0,\"u"), doctest::Contains("unterminated"), ReportError);
  CHECK(parse_csv(header).empty());
}

TEST_CASE("summary JSON round trip") {
  Run run = make_run("after", 1, 10, 0.995);
  run.summary.notes = {{"time", "simulated"}};
  run.summary.time_scale = 20;
  const auto j = summary_to_json(run.summary);
  CHECK(j["time_unit"] == "simulated seconds (wall time x time_scale)");
  const Summary back = summary_from_json(nlohmann::json::parse(j.dump()));
  CHECK(back.label == "after");
  CHECK(back.time_scale == 20);
  CHECK(*back.upstream.utilisation == doctest::Approx(0.995));
  REQUIRE(back.tiers.size() == 2);
  CHECK(*back.find("tier", "paid")->latency.p90 == *run.summary.find("tier", "paid")->latency.p90);
  CHECK(*back.find("tier", "free")->jain == *run.summary.find("tier", "free")->jain);
  CHECK(back.find("tier", "paid")->users.size() == 2);
  CHECK(back.notes.size() == 1);
  CHECK_THROWS_AS(summary_from_json(nlohmann::json::object()), ReportError);
}

TEST_CASE("summary JSON: model loads, output tokens/s and the backends round trip") {
  Run run = make_run("sluice", 1, 10, 0.9);
  run.summary.upstream.model_loads = 7;
  run.summary.upstream.load_s = 21;
  run.summary.upstream.backends = {{"http://127.0.0.1:1", 5, 40, 0.8, 3, 9},
                                   {"http://127.0.0.1:2", 3, 30, 0.6, 4, 12}};
  const auto j = summary_to_json(run.summary);
  CHECK(j["model_loads"] == 7);
  CHECK(j["tokens_per_s"].get<double>() == doctest::Approx(*run.summary.all.tokens_per_s));
  CHECK(j["upstream"]["backends"].size() == 2);
  const Summary back = summary_from_json(nlohmann::json::parse(j.dump()));
  CHECK(back.upstream.model_loads == std::optional<std::uint64_t>(7));
  CHECK(back.upstream.load_s == 21);
  REQUIRE(back.upstream.backends.size() == 2);
  CHECK(back.upstream.backends[1].target == "http://127.0.0.1:2");
  CHECK(back.upstream.backends[1].model_loads == std::optional<std::uint64_t>(4));
  CHECK(*back.upstream.backends[0].utilisation == doctest::Approx(0.8));

  // A summary written before these fields existed still reads: loads unknown.
  auto old = j;
  old.erase("model_loads");
  old.erase("tokens_per_s");
  old["upstream"].erase("model_loads");
  old["upstream"].erase("load_s");
  old["upstream"].erase("backends");
  const Summary before = summary_from_json(old);
  CHECK_FALSE(before.upstream.model_loads);
  CHECK(before.upstream.backends.empty());
  // No count (no --sim-stats): null, not 0.
  CHECK(summary_to_json(make_run("x", 1, 1, 1).summary)["model_loads"].is_null());
}

TEST_CASE("the fleet table: only for fleets, one row per run with loads and tokens/s") {
  Run one = make_run("before", 1, 10, 0.99);
  one.summary.upstream.model_loads = 0;
  one.summary.upstream.backends = {{"http://127.0.0.1:1", 8, 9, 0.99, 0, 0}};
  CHECK(fleet_markdown_table({one}).empty());  // one GPU, no loads: the old output only

  Run fleet = make_run("haproxy-leastconn", 1, 10, 0.75);
  fleet.summary.upstream.model_loads = 12;
  fleet.summary.upstream.load_s = 36;
  fleet.summary.upstream.backends = {{"http://127.0.0.1:1", 4, 9, 0.9, 5, 15},
                                     {"http://127.0.0.1:2", 4, 6, 0.6, 7, 21}};
  const std::string md = fleet_markdown_table({one, fleet});
  CHECK(md.find("| run | n | failed | span (s) | output tok/s | model loads |") == 0);
  CHECK(md.find("| before | 8 | 0 |") != std::string::npos);
  CHECK(md.find("| haproxy-leastconn | 8 | 0 | 40.0 | 12.8 | 12 | 36.0 | 75.0 % | 90.0 %, 5 "
                "loads · 60.0 %, 7 loads |") != std::string::npos);
}

TEST_CASE("the Markdown table shows each tier and the ratio to the baseline") {
  const std::vector<Run> runs{make_run("before", 10, 10, 0.999), make_run("after", 2, 12, 0.99)};
  const std::string md = markdown_table(runs, "before");
  CHECK(md.find("| p50 vs before | p90 vs before |") != std::string::npos);
  // paid latencies 2,4,6,8 vs 10,20,30,40: p50 4 / 20 = 0.20, p90 8 / 40 = 0.20
  CHECK(md.find("| after | paid | 4 | 0 | 4.00 | 8.00 |") != std::string::npos);
  CHECK(md.find("0.20× | 0.20×") != std::string::npos);
  CHECK(md.find("1.20× | 1.20×") != std::string::npos);  // free got slower by 12/10
  CHECK(md.find("99.0 %") != std::string::npos);
  CHECK(count(md, "\n") == 2 + 4);  // header, rule, 2 runs x 2 tiers
  CHECK(markdown_table(runs).find("vs") == std::string::npos);
}

TEST_CASE("groups of a tier get their own rows when a tier has several") {
  Run run = make_run("x", 1, 1, 1);
  for (auto& r : run.records)
    if (r.tier == "free" && r.user == "f1")
      r.group = std::string("light");  // (not a literal: GCC 12 -Wrestrict)
  run.summary = summarize(run.records, {});
  run.summary.label = "x";
  const std::string md = markdown_table({run});
  CHECK(md.find("| · free |") != std::string::npos);
  CHECK(md.find("| · light |") != std::string::npos);
  CHECK(md.find("| · paid |") == std::string::npos);
}

TEST_CASE("the SVG chart has one panel per run and one mark per request") {
  Run a = make_run("before <&>", 10, 10, 0.999);
  Run b = make_run("after", 2, 12, 0.99);
  b.records[0].outcome = "http_error";
  b.summary = summarize(b.records, {});
  b.summary.label = "after";
  const std::string svg = svg_chart({a, b}, "title & more");
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>\n") == svg.size() - 7);
  CHECK(svg.find("before &lt;&amp;&gt;") != std::string::npos);
  CHECK(svg.find("title &amp; more") != std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
  // 16 requests: 15 ok dots + 1 cross; plus one legend dot per tier.
  CHECK(count(svg, "<circle") == 15 + 2);
  CHECK(count(svg, "l6 6m0 -6l-6 6") == 1);
  CHECK(count(svg, "stroke-dasharray") == 4);  // p90 per tier per panel
  CHECK(count(svg, "font-weight=\"bold\">after<") == 1);
  CHECK(count(svg, "<g>") == 2);
}

TEST_CASE("targets: met, missed, skipped, with the figures") {
  const std::vector<Run> runs{make_run("before", 10, 10, 0.999), make_run("after", 2, 12, 0.97)};
  const auto results = evaluate_targets(R"([
    {"name": "paid p90", "run": "after", "baseline": "before", "metric": "latency_p90",
     "subject": "tier:paid", "max_ratio": 0.5},
    {"name": "free p50", "run": "after", "baseline": "before", "metric": "latency_p50",
     "subject": "tier:free", "max_ratio": 1.1},
    {"name": "busy", "run": "after", "metric": "utilisation", "min": 0.98},
    {"name": "jain", "run": "after", "metric": "jain", "subject": "tier:paid", "min": 0.5},
    {"name": "none failed", "run": "after", "metric": "failures", "max": 0},
    {"name": "no haproxy", "run": "after", "baseline": "haproxy", "metric": "latency_p90",
     "subject": "tier:paid", "max_ratio": 1.05},
    {"name": "no tier", "run": "after", "metric": "latency_p90", "subject": "tier:nobody", "max": 1}
  ])",
                                        runs);
  REQUIRE(results.size() == 7);
  CHECK(results[0].status == "met");
  CHECK(results[0].detail == "after 8.00 s vs before 40.0 s = 0.200× (max 0.5×)");
  CHECK(results[1].status == "missed");  // 24 / 20 = 1.2
  CHECK(results[2].status == "missed");
  CHECK(results[2].detail == "after 97.0 % (min 98.0 %)");
  CHECK(results[3].status == "met");
  CHECK(results[4].status == "met");
  CHECK(results[5].status == "skipped");
  CHECK(results[5].detail == "run haproxy is not part of this experiment");
  CHECK(results[6].status == "skipped");
  const std::string md = targets_markdown(results);
  CHECK(md.find("| paid p90 | **met** |") != std::string::npos);
  CHECK(md.find("| free p50 | missed |") != std::string::npos);

  CHECK_THROWS_AS(evaluate_targets(R"([{"run": "a", "metric": "jain"}])", runs), ReportError);
  CHECK_THROWS_AS(evaluate_targets(R"([{"run": "after", "metric": "speed", "max": 1}])", runs),
                  ReportError);
  CHECK_THROWS_AS(
      evaluate_targets(R"([{"run": "after", "metric": "jain", "max": 1, "x": 1}])", runs),
      ReportError);
  CHECK_THROWS_AS(evaluate_targets(R"([{"run": "after", "metric": "jain", "max_ratio": 1}])", runs),
                  ReportError);
  CHECK(evaluate_targets("", runs).empty());
}

TEST_CASE("targets on model loads and output tokens/s, as ratios to a baseline") {
  Run sluice = make_run("sluice", 1, 2, 0.9), haproxy = make_run("haproxy-leastconn", 1, 8, 0.8);
  sluice.summary.upstream.model_loads = 3;
  haproxy.summary.upstream.model_loads = 40;
  // Output tokens/s: the same tokens over a 4x longer span.
  haproxy.summary.span_s = sluice.summary.span_s * 4;
  haproxy.summary.all.tokens_per_s = *sluice.summary.all.tokens_per_s / 4;
  Run unknown = make_run("direct", 1, 1, 1);  // no load count
  const std::vector<Run> runs{sluice, haproxy, unknown};
  const auto results = evaluate_targets(R"([
    {"name": "loads", "run": "sluice", "baseline": "haproxy-leastconn", "metric": "model_loads",
     "max_ratio": 0.25},
    {"name": "tokens", "run": "sluice", "baseline": "haproxy-leastconn", "metric": "tokens_per_s",
     "min_ratio": 1.3},
    {"name": "too few tokens", "run": "haproxy-leastconn", "baseline": "sluice",
     "metric": "tokens_per_s", "min_ratio": 1.3},
    {"name": "absolute loads", "run": "haproxy-leastconn", "metric": "model_loads", "max": 10},
    {"name": "not counted", "run": "direct", "metric": "model_loads", "max": 10}
  ])",
                                        runs);
  REQUIRE(results.size() == 5);
  CHECK(results[0].status == "met");
  CHECK(results[0].detail == "sluice 3.00 vs haproxy-leastconn 40.0 = 0.075× (max 0.25×)");
  CHECK(results[1].status == "met");
  CHECK(results[1].detail.find("= 4.000× (min 1.30×)") != std::string::npos);
  CHECK(results[2].status == "missed");
  CHECK(results[3].status == "missed");
  CHECK(results[3].detail == "haproxy-leastconn 40.0 (max 10.0)");
  CHECK(results[4].status == "skipped");
  CHECK(results[4].detail == "no model load count in run direct");

  // Zero loads in the run itself is a ratio of 0: met.
  sluice.summary.upstream.model_loads = 0;
  const auto zero = evaluate_targets(R"([{"run": "sluice", "baseline": "haproxy-leastconn",
      "metric": "model_loads", "max_ratio": 0.25}])",
                                     {sluice, haproxy});
  CHECK(zero[0].status == "met");
}

TEST_CASE("NDJSON scanner: lines split anywhere, counts from the final object") {
  NdjsonScanner s;
  s.feed("{\"response\":\"He\",\"done\":false}\n{\"respo");
  s.feed("nse\":\"llo\",\"done\":false}\n");
  CHECK_FALSE(s.done());
  s.feed("{\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":12,");
  s.feed("\"eval_count\":40}");
  CHECK_FALSE(s.done());  // no newline yet
  s.finish();
  CHECK(s.done());
  CHECK(*s.prompt_tokens() == 12);
  CHECK(*s.output_tokens() == 40);
  CHECK(s.done_reason() == "length");
  CHECK(s.error().empty());
  CHECK(s.lines() == 3);
}

TEST_CASE("NDJSON scanner: error lines, garbage and overlong lines are errors") {
  NdjsonScanner e;
  e.feed("{\"response\":\"a\",\"done\":false}\n{\"error\":\"model crashed\"}\n");
  CHECK(e.error() == "model crashed");
  CHECK_FALSE(e.done());

  NdjsonScanner g;
  g.feed("not json\n");
  CHECK(g.error() == "malformed response line");

  NdjsonScanner big;
  big.feed(std::string(NdjsonScanner::kMaxLineBytes, 'x'));
  big.feed("yy\n{\"done\":true,\"eval_count\":1}\n");
  CHECK(big.error() == "response line longer than 1 MiB");
  CHECK(big.done());  // the next line is still read
}

TEST_CASE("/sim/stats: the run's records become intervals on the run's clock") {
  const std::string doc = R"({"parallel":1,"time_scale":10.0,"now_ns":9000000000,"records":[
    {"id":4,"start_ns":1000000000,"end_ns":2000000000,"headers":{"x-bench-run":"r1"}},
    {"id":5,"start_ns":2000000000,"end_ns":null,"headers":{"x-bench-run":"r1"}},
    {"id":6,"start_ns":null,"end_ns":null,"headers":{"x-bench-run":"r1"}},
    {"id":7,"start_ns":1,"end_ns":2,"headers":{"x-bench-run":"other"}},
    {"id":8,"start_ns":1,"end_ns":2,"headers":{}}]})";
  const auto s = parse_sim_stats(doc, "r1");
  REQUIRE(s);
  CHECK(s->time_scale == 10);
  CHECK(s->last_id == 8);
  CHECK(s->parallel == 1);
  REQUIRE(s->generation.size() == 2);
  CHECK(s->generation[1].end_ns == 9000000000);  // still running: ends "now"
  const auto runs = to_run_time(*s, 1000000000, 0.5);
  CHECK(runs[0].start_s == doctest::Approx(0.5));
  CHECK(runs[0].end_s == doctest::Approx(1.5));
  CHECK(runs[1].end_s == doctest::Approx(8.5));
  CHECK(parse_sim_stats(doc, "")->generation.size() == 4);

  std::string why;
  CHECK_FALSE(parse_sim_stats("[]", "", &why));
  CHECK(why == "/sim/stats: not a JSON object");
  CHECK_FALSE(parse_sim_stats(R"({"time_scale":1})", "", &why));
  CHECK(why.find("now_ns") != std::string::npos);
  CHECK_FALSE(s->loads);  // a simulator without residency counters
}

TEST_CASE("/sim/stats: model load counters") {
  const auto s = parse_sim_stats(
      R"({"time_scale":10.0,"now_ns":1,"loads":4,"load_ns_total":12000000000,"records":[]})", "");
  REQUIRE(s);
  CHECK(s->loads == std::optional<std::uint64_t>(4));
  CHECK(s->load_ns_total == std::optional<std::int64_t>(12000000000));
}

TEST_CASE("target URLs") {
  auto t = parse_http_target("http://127.0.0.1:11435");
  REQUIRE(t);
  CHECK(t->host == "127.0.0.1");
  CHECK(t->port == 11435);
  CHECK(t->host_header == "127.0.0.1:11435");
  CHECK(t->base_path.empty());
  CHECK(t->to_string() == "http://127.0.0.1:11435");

  t = parse_http_target("http://gpu.internal/ollama/");
  REQUIRE(t);
  CHECK(t->port == 80);
  CHECK(t->host_header == "gpu.internal");
  CHECK(t->base_path == "/ollama");

  t = parse_http_target("http://[::1]:8080");
  REQUIRE(t);
  CHECK(t->host == "::1");
  CHECK(t->host_header == "[::1]:8080");

  std::string why;
  CHECK_FALSE(parse_http_target("https://x", &why));
  CHECK(why.find("only http://") == 0);
  CHECK_FALSE(parse_http_target("localhost:11434", &why));
  CHECK_FALSE(parse_http_target("http://x:0", &why));
  CHECK_FALSE(parse_http_target("http://x/?q=1", &why));
  CHECK_FALSE(parse_http_target("not a url", &why));
}

TEST_CASE("numbers are shown with three significant figures") {
  CHECK(format_number(1234.4) == "1234");
  CHECK(format_number(12.34) == "12.3");
  CHECK(format_number(1.234) == "1.23");
  CHECK(format_number(0.04213) == "0.0421");
  CHECK(format_number(0) == "0");
}

TEST_CASE("the chart colours by group when every request is of one tier") {
  Run run = make_run("one tier", 1, 1, 1);
  for (auto& r : run.records) {
    r.tier = "free";
    r.group = r.user == "p0" ? "heavy" : "light";
  }
  run.summary = summarize(run.records, {});
  run.summary.label = "one tier";
  const std::string svg = svg_chart({run}, "t");
  CHECK(svg.find("dashed: p90 per group") != std::string::npos);
  CHECK(svg.find(">heavy</text>") != std::string::npos);  // legend
  CHECK(svg.find(">light</text>") != std::string::npos);
  CHECK(count(svg, "stroke-dasharray") == 2);
  CHECK(svg.find("heavy p50") != std::string::npos);  // panel figures per group
  // Two colours in use among the dots.
  CHECK(svg.find("fill=\"#d1495b\" fill-opacity") != std::string::npos);
  CHECK(svg.find("fill=\"#2e86ab\" fill-opacity") != std::string::npos);
}
