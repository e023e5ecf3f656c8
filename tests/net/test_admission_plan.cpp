// Admission planning (src/net/admission_plan.hpp) without sockets: label headers and API keys
// to LabelPlan, then body and classification to the core::Request the gate takes.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "admission_plan.hpp"
#include "sluice/config/config.hpp"

using namespace sluice;
using namespace sluice::net;
using nlohmann::json;

namespace {

/// A scheduler from a config text's "scheduler" section.
struct Setup {
  explicit Setup(const std::string& scheduler_json)
      : config(parse(scheduler_json)), scheduler(config.scheduler.core) {}
  static config::Config parse(const std::string& scheduler_json) {
    auto parsed = config::parse_config("{\"scheduler\": " + scheduler_json + "}", "test");
    REQUIRE_MESSAGE(parsed.ok(), parsed.error_text());
    return std::move(*parsed.config);
  }
  config::Config config;
  core::Scheduler scheduler;
  core::CostModel cost_model;
};

const char* kScheduler = R"({
  "max_concurrency": 2,
  "per_key": [{"label": "user", "max_concurrency": 1}, {"label": "tier", "max_concurrency": 4}],
  "workloads": [
    {"name": "paid", "match": {"tier": "paid"}, "priority": 8},
    {"name": "by-team", "match": {"tier": "team"}, "fairness_key": "team"},
    {"name": "mistral", "match": {"model": "mistral-large"}}
  ]})";

std::string generate(const std::string& model = "mistral", int num_predict = 0) {
  json body = {{"model", model}, {"prompt", std::string(400, 'x')}};
  if (num_predict > 0) body["options"] = {{"num_predict", num_predict}};
  return body.dump();
}

}  // namespace

TEST_CASE("plan_labels: valid headers, errors naming the header, X-Workload looked up") {
  Setup s(kScheduler);
  const auto& names = s.config.headers;
  SUBCASE("valid") {
    LabelPlan plan = plan_labels(names, {.user = "alice", .tier = "paid", .priority = "3"}, "",
                                 nullptr, s.scheduler);
    CHECK(plan.error.empty());
    CHECK(plan.labels.labels.value_or_empty("user") == "alice");
    CHECK(plan.labels.priority == 3.0);
    CHECK_FALSE(plan.workload);
  }
  SUBCASE("a bad value names the header") {
    LabelPlan plan = plan_labels(names, {.priority = "abc"}, "", nullptr, s.scheduler);
    CHECK(plan.error.find("X-Priority") != std::string::npos);
  }
  SUBCASE("a duplicate wins over everything else") {
    LabelPlan plan =
        plan_labels(names, {.user = "a"}, "invalid X-User-Id header: given more than once", nullptr,
                    s.scheduler);
    CHECK(plan.error == "invalid X-User-Id header: given more than once");
  }
  SUBCASE("X-Workload: known, unknown") {
    LabelPlan known = plan_labels(names, {.workload = "paid"}, "", nullptr, s.scheduler);
    REQUIRE(known.workload);
    CHECK(s.scheduler.workload(*known.workload).name == "paid");
    LabelPlan unknown = plan_labels(names, {.workload = "gold"}, "", nullptr, s.scheduler);
    CHECK(unknown.error == "invalid X-Workload header: unknown workload \"gold\"");
  }
}

TEST_CASE("plan_labels: the API key decides user, tier and the priority ceiling") {
  Setup s(kScheduler);
  config::ApiKey key{.name = "app",
                     .sha256 = "",
                     .user = "app-user",
                     .tier = "paid",
                     .max_priority = 2.0,
                     .trusted_gateway = false};
  SUBCASE("an ordinary key: its own user and tier, whatever the client says; priority clamped") {
    LabelPlan plan =
        plan_labels(s.config.headers, {.user = "mallory", .tier = "free", .priority = "1000000"},
                    "", &key, s.scheduler);
    CHECK(plan.labels.labels.value_or_empty("user") == "app-user");
    CHECK(plan.labels.labels.value_or_empty("tier") == "paid");
    CHECK(plan.labels.priority == 2.0);
    CHECK(plan.labels.labels.value_or_empty("priority") == "2");
  }
  SUBCASE("a key without max_priority ignores X-Priority") {
    key.max_priority.reset();
    LabelPlan plan = plan_labels(s.config.headers, {.priority = "5"}, "", &key, s.scheduler);
    CHECK_FALSE(plan.labels.priority);
    CHECK_FALSE(plan.labels.labels.get("priority"));
  }
  SUBCASE("a trusted gateway passes its users through") {
    key.trusted_gateway = true;
    LabelPlan plan =
        plan_labels(s.config.headers, {.user = "carol", .tier = "team"}, "", &key, s.scheduler);
    CHECK(plan.labels.labels.value_or_empty("user") == "carol");
    CHECK(plan.labels.labels.value_or_empty("tier") == "team");
  }
  SUBCASE("a key without a tier removes the client's") {
    key.tier.clear();
    LabelPlan plan = plan_labels(s.config.headers, {.tier = "paid"}, "", &key, s.scheduler);
    CHECK_FALSE(plan.labels.labels.get("tier"));
  }
}

TEST_CASE("plan_admission: workload, fairness key, limit keys and cost") {
  Setup s(kScheduler);
  auto labels = [&](LabelHeaderValues values) {
    LabelPlan plan = plan_labels(s.config.headers, values, "", nullptr, s.scheduler);
    REQUIRE(plan.error.empty());
    return plan;
  };
  SUBCASE("classified by tier; fairness by user; limit keys in per_key order") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({.user = "alice", .tier = "paid"}), "/api/generate", generate(),
                         "10.0.0.1", s.scheduler, s.cost_model, plan) == "");
    CHECK(plan.workload_name == "paid");
    const core::Request request = plan.request();
    CHECK(request.fairness_key == "alice");
    REQUIRE(request.limit_keys.size() == 2);
    CHECK(request.limit_keys[0] == "alice");
    CHECK(request.limit_keys[1] == "paid");
    // 400 prompt chars = 100 tokens, plus the default expected output.
    CHECK(request.cost == 100 + s.cost_model.expected_output("paid", "mistral"));
  }
  SUBCASE("no fairness label: the client's address is the key; no user: limit key empty") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({}), "/api/generate", generate(), "10.0.0.9", s.scheduler,
                         s.cost_model, plan) == "");
    CHECK(plan.workload_name == "default");
    CHECK(plan.request().fairness_key == "addr:10.0.0.9");
    CHECK(plan.request().limit_keys[0] == "");
  }
  SUBCASE("a workload's own fairness label") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({.user = "bob", .tier = "team"}), "/api/generate", generate(),
                         "10.0.0.1", s.scheduler, s.cost_model, plan) == "");
    CHECK(plan.workload_name == "by-team");
    CHECK(plan.request().fairness_key == "addr:10.0.0.1");  // no "team" label sent
  }
  SUBCASE("the model from the body is a label rules can match") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({}), "/api/generate", generate("mistral-large"), "a", s.scheduler,
                         s.cost_model, plan) == "");
    CHECK(plan.workload_name == "mistral");
  }
  SUBCASE("X-Workload beats the rules") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({.tier = "paid", .workload = "mistral"}), "/api/generate",
                         generate(), "a", s.scheduler, s.cost_model, plan) == "");
    CHECK(plan.workload_name == "mistral");
  }
  SUBCASE("cost: X-Tokens, num_predict, embeddings") {
    AdmissionPlan tokens;
    CHECK(plan_admission(labels({.tokens = "77"}), "/api/generate", generate(), "a", s.scheduler,
                         s.cost_model, tokens) == "");
    CHECK(tokens.request().cost == 77);
    AdmissionPlan bounded;
    CHECK(plan_admission(labels({}), "/api/generate", generate("mistral", 20), "a", s.scheduler,
                         s.cost_model, bounded) == "");
    CHECK(bounded.request().cost == 100 + 20);
    AdmissionPlan embed;
    CHECK(plan_admission(labels({}), "/api/embed",
                         json{{"model", "m"}, {"input", std::string(40, 'y')}}.dump(), "a",
                         s.scheduler, s.cost_model, embed) == "");
    CHECK(embed.body.embedding);
    CHECK(embed.request().cost == 10);
  }
  SUBCASE("X-Queue-Timeout and X-Priority reach the request") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({.priority = "4", .queue_timeout = "250ms"}), "/api/generate",
                         generate(), "a", s.scheduler, s.cost_model, plan) == "");
    CHECK(plan.request().priority == 4.0);
    CHECK(plan.request().queue_timeout == std::chrono::milliseconds(250));
  }
  SUBCASE("a bad body is the 400 message") {
    AdmissionPlan plan;
    CHECK(plan_admission(labels({}), "/api/generate", "{not json", "a", s.scheduler, s.cost_model,
                         plan)
              .find("not valid JSON") != std::string::npos);
    AdmissionPlan typed;
    CHECK(plan_admission(labels({}), "/api/generate", R"({"model": 5})", "a", s.scheduler,
                         s.cost_model, typed)
              .find("model") != std::string::npos);
  }
}
