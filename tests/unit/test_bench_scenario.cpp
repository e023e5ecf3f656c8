// sluice-bench scenarios: parsing (errors name the field), prompt lists, deterministic plans,
// and the scenarios shipped in config/scenarios. Pure (reads files from the source tree only).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "sluice/bench/scenario.hpp"

using namespace sluice::bench;

namespace {

const char* kMinimal = R"({
  "name": "t",
  "prompts": { "free": ["hello", "world"] },
  "groups": [ { "name": "g", "tier": "free" } ]
})";

std::string error_of(const std::string& text) {
  try {
    parse_scenario(text, "s.json", ".");
  } catch (const ScenarioError& e) {
    return e.what();
  }
  return "";
}

std::string with_group(const std::string& group_fields) {
  return R"({"name": "t", "prompts": {"free": ["a"]}, "groups": [{"name": "g", "tier": "free", )" +
         group_fields + "}]}";
}

}  // namespace

TEST_CASE("a minimal scenario gets the defaults") {
  const Scenario s = parse_scenario(kMinimal, "s.json", ".");
  CHECK(s.name == "t");
  CHECK(s.model == "mistral");
  CHECK(s.api == Api::generate);
  CHECK(s.user_header == "X-User-Id");
  CHECK(s.tier_header == "X-Tier");
  REQUIRE(s.groups.size() == 1);
  CHECK(s.groups[0].users == 1);
  CHECK(s.groups[0].requests_per_user == 1);
  CHECK(s.groups[0].prompt_list == "free");  // defaults to the tier's name
  CHECK(s.groups[0].arrival.mode == Arrival::Mode::burst);
  CHECK(s.num_predict.kind == TokenDistribution::Kind::none);
  CHECK(s.total_requests() == 1);
  CHECK(s.targets_json.empty());
}

TEST_CASE("comments are allowed; the full set of fields parses") {
  const Scenario s = parse_scenario(R"({
    // a comment
    "name": "full", "description": "d", "seed": 9, "model": "llama3", "api": "chat",
    "user_header": "X-User", "tier_header": "X-Plan",
    "max_duration_s": 60, "request_timeout_s": 30,
    "num_predict": {"distribution": "uniform", "min": 5, "max": 7},
    "prompts": {"a": ["x"], "b": ["y", "z"]},
    "groups": [
      {"name": "p", "tier": "paid", "prompts": "a", "users": 2, "requests_per_user": 3,
       "arrival": {"mode": "poisson", "rate_per_s": 0.5, "start_s": 1},
       "num_predict": 12, "headers": {"X-Priority": "8", "X-Who": "{user}/{tier}/{group}/{index}"}},
      {"name": "c", "tier": "free", "prompts": "b",
       "arrival": {"mode": "closed_loop", "think_time_s": 2, "think_time_distribution": "exponential"}}
    ],
    "targets": [{"run": "after", "metric": "jain", "min": 0.9}]
  })",
                                    "s.json", ".");
  CHECK(s.seed == 9);
  CHECK(s.model == "llama3");
  CHECK(s.api == Api::chat);
  CHECK(api_path(s.api) == "/api/chat");
  CHECK(s.num_predict.kind == TokenDistribution::Kind::uniform);
  CHECK(s.groups[0].num_predict->kind == TokenDistribution::Kind::fixed);
  CHECK(s.groups[0].num_predict->value == 12);
  CHECK(s.groups[0].arrival.rate_per_s == 0.5);
  CHECK(s.groups[1].arrival.think_exponential);
  CHECK(s.total_requests() == 7);
  CHECK(s.targets_json.find("jain") != std::string::npos);

  const Plan plan = make_plan(s);
  REQUIRE(plan.users.size() == 3);
  const auto& u = plan.users[1];
  CHECK(u.name == "p-2");
  REQUIRE(u.headers.size() == 4);
  CHECK(u.headers[0].name == "X-User");
  CHECK(u.headers[0].value == "p-2");
  CHECK(u.headers[1].name == "X-Plan");
  CHECK(u.headers[1].value == "paid");
  bool saw_template = false;
  for (const auto& h : u.headers)
    if (h.name == "X-Who") {
      CHECK(h.value == "p-2/paid/p/2");
      saw_template = true;
    }
  CHECK(saw_template);
  for (const auto& r : u.requests)
    CHECK(*r.num_predict == 12);
  for (const auto& r : plan.users[2].requests)
    CHECK((*r.num_predict >= 5 && *r.num_predict <= 7));
}

TEST_CASE("errors name the field and the file") {
  CHECK(error_of("{").find("s.json: not valid JSON") == 0);
  CHECK(error_of(R"({"name": "t", "seed": 1e999})").find("s.json: not valid JSON") == 0);
  CHECK(error_of(R"({"prompts": {"a": ["x"]}, "groups": []})") == "s.json: name: is required");
  CHECK(error_of(R"({"name": "t", "prompts": {"a": ["x"]}, "groups": [], "extra": 1})") ==
        "s.json: groups: must be a non-empty array");
  CHECK(
      error_of(
          R"({"name": "t", "prompts": {"free": ["x"]}, "groups": [{"name": "g", "tier": "free"}], "extra": 1})") ==
      "s.json: extra: unknown key");
  CHECK(error_of(with_group(R"("users": 0)")) ==
        "s.json: groups[0].users: must be between 1 and 10000, not 0");
  CHECK(error_of(with_group(R"("users": 1.5)")) == "s.json: groups[0].users: must be an integer");
  CHECK(error_of(with_group(R"("prompts": "nope")")) ==
        "s.json: groups[0].prompts: no prompt list named \"nope\"");
  CHECK(error_of(with_group(R"("arrival": {"mode": "sometimes"})"))
            .find("groups[0].arrival.mode: must be \"burst\"") != std::string::npos);
  CHECK(error_of(with_group(R"("arrival": {"mode": "poisson"})")) ==
        "s.json: groups[0].arrival.rate_per_s: is required for mode \"poisson\"");
  CHECK(error_of(with_group(R"("arrival": {"mode": "burst", "rate": 2})")) ==
        "s.json: groups[0].arrival.rate: unknown key");
  CHECK(error_of(with_group(R"("headers": {"X-Tier": "paid"})")) ==
        "s.json: groups[0].headers.X-Tier: set by sluice-bench itself");
  CHECK(error_of(with_group(R"("headers": {"Bad Name": "x"})")) ==
        "s.json: groups[0].headers.Bad Name: not a valid header name");
  CHECK(error_of(with_group(R"("num_predict": {"distribution": "uniform", "min": 9, "max": 3})")) ==
        "s.json: groups[0].num_predict.max: must be >= min");
  CHECK(error_of(with_group(R"("num_predict": 0)")) ==
        "s.json: groups[0].num_predict: must be between 1 and 1000000");
  CHECK(error_of(with_group(R"("users": 10000, "requests_per_user": 11)"))
            .find("groups: more than 100000 requests in total") != std::string::npos);
  CHECK(
      error_of(R"({"name": "t", "prompts": {"a": []}, "groups": [{"name": "g", "tier": "a"}]})") ==
      "s.json: prompts.a: holds no prompt");
  CHECK(
      error_of(
          R"({"name": "t", "prompts": {"a": "missing.txt"}, "groups": [{"name": "g", "tier": "a"}]})")
          .find("s.json: prompts.a: cannot open ./missing.txt") != std::string::npos);
  CHECK(
      error_of(
          R"({"name": "t", "prompts": {"a": ["x"]}, "groups": [{"name": "g", "tier": "a"}, {"name": "g", "tier": "a"}]})") ==
      "s.json: groups[1].name: duplicate group name \"g\"");
  CHECK(
      error_of(
          R"({"name": "t t", "prompts": {"a": ["x"]}, "groups": [{"name": "g", "tier": "a"}]})") ==
      "s.json: name: 1-64 of A-Z a-z 0-9 - _ .");
}

TEST_CASE("prompt lists: one per line, comments and blanks skipped, trimmed") {
  const auto prompts = parse_prompt_lines("# title\n\n  first prompt  \r\nsecond\n#x\nthird", "p");
  REQUIRE(prompts.size() == 3);
  CHECK(prompts[0] == "first prompt");
  CHECK(prompts[1] == "second");
  CHECK(prompts[2] == "third");
  CHECK_THROWS_AS(parse_prompt_lines(std::string(kMaxPromptBytes + 1, 'x'), "p"), ScenarioError);
}

TEST_CASE("prompt files are read relative to the scenario") {
  const std::string dir = "/tmp";
  const std::string file = "sluice_bench_test_prompts_" + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream out(dir + "/" + file);
    out << "# prompts\none\ntwo\n";
  }
  const Scenario s = parse_scenario(R"({"name": "t", "prompts": {"a": ")" + file +
                                        R"("}, "groups": [{"name": "g", "tier": "a"}]})",
                                    "s.json", dir);
  std::remove((dir + "/" + file).c_str());
  CHECK(s.prompt_lists.at("a") == std::vector<std::string>{"one", "two"});
}

TEST_CASE("plans are deterministic for a seed and differ between seeds") {
  const std::string text = R"({"name": "t", "seed": SEED,
    "num_predict": {"distribution": "lognormal", "mean": 90, "sigma": 0.4, "min": 24, "max": 256},
    "prompts": {"a": ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"]},
    "groups": [{"name": "g", "tier": "a", "users": 4, "requests_per_user": 50,
                "arrival": {"mode": "poisson", "rate_per_s": 2}}]})";
  auto with_seed = [&](int seed) {
    // (append, not replace: GCC 12 -Wrestrict false positive)
    const auto at = text.find("SEED");
    std::string t = text.substr(0, at);
    t.append(std::to_string(seed));
    t.append(text, at + 4);
    return make_plan(parse_scenario(t, "s", "."));
  };
  const Plan a = with_seed(1), b = with_seed(1), c = with_seed(2);
  REQUIRE(a.total_requests == 200);
  bool differs = false;
  std::set<std::size_t> indices;
  double sum_tokens = 0;
  for (std::size_t u = 0; u < a.users.size(); ++u) {
    double last = 0;
    for (std::size_t k = 0; k < a.users[u].requests.size(); ++k) {
      const auto& ra = a.users[u].requests[k];
      const auto& rb = b.users[u].requests[k];
      const auto& rc = c.users[u].requests[k];
      CHECK(ra.prompt == rb.prompt);
      CHECK(ra.num_predict == rb.num_predict);
      CHECK(ra.send_at_s == rb.send_at_s);
      differs = differs || ra.prompt != rc.prompt || ra.num_predict != rc.num_predict;
      CHECK(ra.send_at_s > last);  // Poisson: strictly increasing per user
      last = ra.send_at_s;
      CHECK(ra.prompt < 8);
      CHECK((*ra.num_predict >= 24 && *ra.num_predict <= 256));
      sum_tokens += *ra.num_predict;
      indices.insert(ra.index);
    }
    // 50 arrivals at 2/s take about 25 s (mean of the sum: 25, sd ~3.5)
    CHECK(last > 12);
    CHECK(last < 40);
  }
  CHECK(differs);
  CHECK(indices.size() == 200);  // every request has its own index
  CHECK(sum_tokens / 200 == doctest::Approx(90).epsilon(0.1));
}

TEST_CASE("burst and closed-loop arrivals") {
  const Scenario s = parse_scenario(R"({"name": "t", "prompts": {"a": ["x"]}, "groups": [
      {"name": "b", "tier": "a", "users": 2, "requests_per_user": 3, "arrival": {"mode": "burst", "start_s": 4}},
      {"name": "c", "tier": "a", "requests_per_user": 3, "arrival": {"mode": "closed_loop", "think_time_s": 1.5}}]})",
                                    "s", ".");
  const Plan p = make_plan(s);
  REQUIRE(p.users.size() == 3);
  for (const auto& r : p.users[0].requests)
    CHECK(r.send_at_s == 4);
  const auto& closed = p.users[2].requests;
  CHECK(closed[0].think_before_s == 0);
  CHECK(closed[1].think_before_s == 1.5);
  CHECK(closed[2].think_before_s == 1.5);
  CHECK(!closed[0].num_predict);  // no distribution: the model decides
}

TEST_CASE("token distributions stay inside their bounds") {
  Rng rng(7);
  TokenDistribution u{.kind = TokenDistribution::Kind::uniform, .min = 3, .max = 5};
  std::set<int> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(*draw_tokens(u, rng));
  CHECK(seen == std::set<int>{3, 4, 5});
  TokenDistribution f{.kind = TokenDistribution::Kind::fixed, .value = 17};
  CHECK(*draw_tokens(f, rng) == 17);
  CHECK_FALSE(draw_tokens(TokenDistribution{}, rng));
  for (int i = 0; i < 1000; ++i) {
    const double x = rng.uniform();
    CHECK((x >= 0 && x < 1));
  }
}

TEST_CASE("the shipped scenarios parse and match the experiment's description") {
  const std::string dir = std::string(SLUICE_SOURCE_DIR) + "/config/scenarios/";
  const Scenario guide = load_scenario_file(dir + "mistral-guide.json");
  CHECK(guide.total_requests() == 250);
  REQUIRE(guide.groups.size() == 2);
  CHECK(guide.groups[0].tier == "paid");
  CHECK(guide.groups[0].users == 3);
  CHECK(guide.groups[1].tier == "open-source");
  CHECK(guide.groups[1].users == 7);
  for (const auto& g : guide.groups) {
    CHECK(g.requests_per_user == 25);
    CHECK(g.arrival.mode == Arrival::Mode::burst);
    CHECK(guide.prompt_lists.at(g.prompt_list).size() >= 30);
  }
  CHECK_FALSE(guide.targets_json.empty());

  const Scenario noisy = load_scenario_file(dir + "noisy-neighbour.json");
  CHECK(noisy.total_requests() == 130);
  for (const auto& g : noisy.groups)
    CHECK(g.tier == "open-source");
}
