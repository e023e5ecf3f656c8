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

namespace {

// A scenario whose requests draw from `models_json` (inserted as the "models" value).
std::string with_models(const std::string& models_json, const std::string& extra = "") {
  std::string text = R"({"name": "t", "seed": 42, "prompts": {"a": ["p0", "p1", "p2"]},
    "num_predict": {"distribution": "uniform", "min": 10, "max": 90},
    "groups": [{"name": "g", "tier": "a", "users": 4, "requests_per_user": 500,
                "arrival": {"mode": "poisson", "rate_per_s": 2}}])";
  if (!models_json.empty()) {
    text += R"(, "models": )";
    text += models_json;
  }
  text += extra;
  text += "}";
  return text;
}

const char* kFourModels = R"([{"name": "m1", "weight": 50}, {"name": "m2", "weight": 25},
                              {"name": "m3", "weight": 15}, {"name": "m4", "weight": 10}])";

}  // namespace

TEST_CASE("models: each request draws one by weight, deterministically") {
  const Scenario s = parse_scenario(with_models(kFourModels), "s.json", ".");
  REQUIRE(s.models.size() == 4);
  CHECK(s.models[0].name == "m1");
  CHECK(s.models[3].weight == 10);
  const Plan a = make_plan(s), b = make_plan(s);
  std::vector<std::size_t> counts(4);
  for (std::size_t u = 0; u < a.users.size(); ++u)
    for (std::size_t k = 0; k < a.users[u].requests.size(); ++k) {
      const auto& r = a.users[u].requests[k];
      CHECK(r.model == b.users[u].requests[k].model);  // same seed, same models
      REQUIRE(r.model < 4);
      ++counts[r.model];
      CHECK(model_of(s, r) == s.models[r.model].name);
    }
  // 2000 draws: each share within a few standard deviations (sd of the 50 % share: 1.1 %).
  CHECK(double(counts[0]) / 2000 == doctest::Approx(0.50).epsilon(0.1));
  CHECK(double(counts[1]) / 2000 == doctest::Approx(0.25).epsilon(0.15));
  CHECK(double(counts[2]) / 2000 == doctest::Approx(0.15).epsilon(0.2));
  CHECK(double(counts[3]) / 2000 == doctest::Approx(0.10).epsilon(0.25));

  // Another seed, other draws.
  std::string other = with_models(kFourModels);
  other.replace(other.find("42"), 2, "43");
  const Plan c = make_plan(parse_scenario(other, "s.json", "."));
  bool differs = false;
  for (std::size_t u = 0; u < a.users.size(); ++u)
    for (std::size_t k = 0; k < a.users[u].requests.size(); ++k)
      differs = differs || a.users[u].requests[k].model != c.users[u].requests[k].model;
  CHECK(differs);
}

TEST_CASE("models: the draw leaves prompts, lengths and arrivals as without it") {
  const Plan single = make_plan(parse_scenario(with_models(""), "s.json", "."));
  const Scenario multi_s = parse_scenario(with_models(kFourModels), "s.json", ".");
  const Plan multi = make_plan(multi_s);
  REQUIRE(single.total_requests == multi.total_requests);
  for (std::size_t u = 0; u < single.users.size(); ++u)
    for (std::size_t k = 0; k < single.users[u].requests.size(); ++k) {
      const auto& a = single.users[u].requests[k];
      const auto& b = multi.users[u].requests[k];
      CHECK(a.prompt == b.prompt);
      CHECK(a.num_predict == b.num_predict);
      CHECK(a.send_at_s == b.send_at_s);
      CHECK(a.model == 0);
    }
  // A single "model" still works: every request asks for it.
  const Scenario one = parse_scenario(kMinimal, "s.json", ".");
  CHECK(one.models.empty());
  CHECK(model_of(one, make_plan(one).users[0].requests[0]) == "mistral");
}

TEST_CASE("models: weights are relative; bad lists are refused") {
  // Weights are relative: 1 and 999 -> the first about 0.1 % of the time.
  const Scenario s = parse_scenario(
      with_models(R"([{"name": "rare", "weight": 1}, {"name": "common", "weight": 999}])"),
      "s.json", ".");
  std::size_t rare = 0;
  for (const auto& u : make_plan(s).users)
    for (const auto& r : u.requests)
      rare += r.model == 0;
  CHECK(rare < 20);
  // Default weight 1.
  CHECK(
      parse_scenario(with_models(R"([{"name": "x"}, {"name": "y"}])"), "s", ".").models[1].weight ==
      1);

  CHECK(error_of(with_models("[]")) == "s.json: models: must be a non-empty array");
  CHECK(error_of(with_models(R"([{"name": "a"}, {"name": "a"}])")) ==
        "s.json: models[1].name: duplicate model \"a\"");
  CHECK(error_of(with_models(R"([{"name": "a", "weight": 0}])"))
            .find("s.json: models[0].weight: must be between") == 0);
  CHECK(error_of(with_models(R"([{"name": "a,b"}])")) ==
        "s.json: models[0].name: 1-256 bytes without commas, spaces or line breaks");
  CHECK(error_of(with_models(R"([{"name": "a", "share": 3}])")) ==
        "s.json: models[0].share: unknown key");
  CHECK(error_of(with_models(R"([{"name": "a"}])", R"(, "model": "b")")) ==
        "s.json: models: give \"model\" or \"models\", not both");
}

TEST_CASE("fleet: parsed, validated, and turned into sluice-sim flags") {
  const std::string fleet = R"(, "fleet": {"parallel": 2, "max_loaded": 2, "load_time": "3s",
      "decode_rate": 50, "backends": [
        {"name": "gpu-a", "models": ["m1", "m2", "m3", "m4"]},
        {"name": "gpu-b", "models": ["m3", "m4", "m1", "m2"], "decode_rate_factor": 0.5}]})";
  const Scenario s = parse_scenario(with_models(kFourModels, fleet), "s.json", ".");
  REQUIRE(s.fleet);
  REQUIRE(s.fleet->backends.size() == 2);
  CHECK(s.fleet->backends[1].name == "gpu-b");
  CHECK(s.fleet->keep_alive == "5m");  // default
  CHECK(s.fleet->sim_args(0) == std::vector<std::string>{"--parallel", "2", "--max-loaded", "2",
                                                         "--load-time", "3s", "--keep-alive", "5m",
                                                         "--decode-rate", "50", "--models",
                                                         "m1,m2,m3,m4"});
  CHECK(s.fleet->sim_args(1)[9] == "25");  // half speed
  CHECK(s.fleet->sim_args(1)[11] == "m3,m4,m1,m2");
  CHECK_FALSE(parse_scenario(kMinimal, "s", ".").fleet);

  // Durations may be seconds.
  const Scenario secs = parse_scenario(
      with_models(
          "",
          R"(, "fleet": {"load_time": 2.5, "backends": [{"name": "a", "models": ["mistral"]}]})"),
      "s", ".");
  CHECK(secs.fleet->load_time == "2.5");
  CHECK(secs.fleet->parallel == 1);

  auto fleet_error = [](const std::string& f) { return error_of(with_models(kFourModels, f)); };
  CHECK(fleet_error(R"(, "fleet": {"backends": []})") ==
        "s.json: fleet.backends: must be a non-empty array");
  CHECK(fleet_error(R"(, "fleet": {"backends": [{"name": "a", "models": ["m1", "m2", "m3"]}]})") ==
        "s.json: fleet.backends: no backend serves model \"m4\"");
  CHECK(fleet_error(R"(, "fleet": {"backends": [{"name": "a", "models": ["m1,m2"]}]})")
            .find("s.json: fleet.backends[0].models[0]: must be a model name") == 0);
  CHECK(fleet_error(
            R"(, "fleet": {"load_time": "3 s", "backends": [{"name": "a", "models": ["m1"]}]})") ==
        "s.json: fleet.load_time: must be a number of seconds or a duration like \"3s\"");
  CHECK(fleet_error(R"(, "fleet": {"gpus": 3, "backends": [{"name": "a", "models": ["m1"]}]})") ==
        "s.json: fleet.gpus: unknown key");
  CHECK(
      fleet_error(
          R"(, "fleet": {"backends": [{"name": "a", "models": ["m1"]}, {"name": "a", "models": ["m2"]}]})") ==
      "s.json: fleet.backends[1].name: duplicate backend \"a\"");
  CHECK(
      fleet_error(R"(, "fleet": {"parallel": 0, "backends": [{"name": "a", "models": ["m1"]}]})") ==
      "s.json: fleet.parallel: must be between 1 and 1024, not 0");
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
  CHECK_FALSE(guide.fleet);
  CHECK_FALSE(noisy.fleet);

  // The fleets: 3 backends holding 2 of 4 models each, skewed popularity, a few hundred
  // requests of paid and free users arriving at a Poisson rate; fleet-slow halves one backend.
  for (const char* name : {"fleet.json", "fleet-slow.json"}) {
    INFO(name);
    const Scenario f = load_scenario_file(dir + name);
    REQUIRE(f.fleet);
    CHECK(f.fleet->backends.size() == 3);
    CHECK(f.fleet->max_loaded == 2);
    CHECK(f.fleet->load_time == "3s");
    REQUIRE(f.models.size() == 4);
    CHECK(f.models[0].weight == 50);
    CHECK(f.models[1].weight == 25);
    CHECK(f.models[2].weight == 15);
    CHECK(f.models[3].weight == 10);
    CHECK(f.total_requests() >= 200);
    CHECK(f.total_requests() <= 1000);
    std::set<std::string> tiers;
    for (const auto& g : f.groups) {
      tiers.insert(g.tier);
      CHECK(g.arrival.mode == Arrival::Mode::poisson);
    }
    CHECK(tiers == std::set<std::string>{"paid", "free"});
    for (const auto& b : f.fleet->backends)
      CHECK(b.models.size() == 4);  // any backend can serve any request
    CHECK(f.targets_json.find("model_loads") != std::string::npos);
  }
  const Scenario slow = load_scenario_file(dir + "fleet-slow.json");
  CHECK(slow.fleet->backends[2].decode_rate_factor == 0.5);
  CHECK(load_scenario_file(dir + "fleet.json").fleet->backends[2].decode_rate_factor == 1);
  // fleet-slow with one model everywhere: placement by speed alone.
  const Scenario one = load_scenario_file(dir + "fleet-slow-one-model.json");
  REQUIRE(one.fleet);
  REQUIRE(one.models.size() == 1);
  CHECK(one.total_requests() == slow.total_requests());
  for (const auto& b : one.fleet->backends)
    CHECK(b.models == std::vector<std::string>{one.models[0].name});
  CHECK(one.fleet->backends[2].decode_rate_factor == 0.5);
}
