// The scheduler's bounds come from one place (sluice/core/limits.hpp): the config loader and the
// core's validate() accept exactly the same values, so neither can drift from the other.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "sluice/config/config.hpp"
#include "sluice/core/limits.hpp"
#include "sluice/core/scheduler.hpp"

using nlohmann::json;
using sluice::config::parse_config;

TEST_CASE("limits: the config and the core accept the same scheduler bounds") {
  using sluice::core::kMaxConcurrency;
  using sluice::core::kMaxQueue;
  using sluice::core::kMaxTokenBudget;
  struct Case {
    const char* field;     // in the config's scheduler object
    std::int64_t maximum;  // the shared bound
    void (*set)(sluice::core::SchedulerConfig&, std::int64_t);
  };
  const Case cases[] = {
      {"max_concurrency", kMaxConcurrency,
       [](sluice::core::SchedulerConfig& c, std::int64_t v) { c.max_concurrency = v; }},
      {"max_queue", kMaxQueue,
       [](sluice::core::SchedulerConfig& c, std::int64_t v) { c.max_queue = v; }},
      {"max_inflight_tokens", kMaxTokenBudget,
       [](sluice::core::SchedulerConfig& c, std::int64_t v) { c.max_inflight_tokens = v; }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.field);
    for (std::int64_t value : {c.maximum, c.maximum + 1}) {
      CAPTURE(value);
      const bool config_ok = parse_config(json{{"scheduler", {{c.field, value}}}}.dump()).ok();
      sluice::core::SchedulerConfig core;
      c.set(core, value);
      const bool core_ok = sluice::core::validate(core).empty();
      CHECK(config_ok == (value <= c.maximum));
      CHECK(core_ok == config_ok);
    }
  }
  // Per-key limits and a workload's bounds, the same way.
  for (auto [field, value] :
       {std::pair{"max_concurrency", kMaxConcurrency}, std::pair{"max_tokens", kMaxTokenBudget},
        std::pair{"max_queue", kMaxQueue}}) {
    CAPTURE(field);
    for (std::int64_t v : {value, value + 1}) {
      json doc = {{"scheduler", {{"per_key", {{"label", "user"}, {field, v}}}}}};
      sluice::core::SchedulerConfig core;
      sluice::core::KeyLimitSpec limit{.label = "user"};
      if (std::string(field) == "max_concurrency") limit.max_concurrency = v;
      if (std::string(field) == "max_tokens") limit.max_tokens = v;
      if (std::string(field) == "max_queue") limit.max_queue = v;
      core.per_key = {limit};
      CHECK(parse_config(doc.dump()).ok() == (v <= value));
      CHECK(sluice::core::validate(core).empty() == (v <= value));
    }
  }
  for (int band : {sluice::core::kMinBand - 1, sluice::core::kMinBand, sluice::core::kMaxBand,
                   sluice::core::kMaxBand + 1}) {
    CAPTURE(band);
    const bool inside = band >= sluice::core::kMinBand && band <= sluice::core::kMaxBand;
    json doc = {{"scheduler", {{"workloads", {{{"name", "w"}, {"band", band}}}}}}};
    sluice::core::SchedulerConfig core;
    core.workloads.push_back({.name = "w", .band = band});
    CHECK(parse_config(doc.dump()).ok() == inside);
    CHECK(sluice::core::validate(core).empty() == inside);
  }
  json doc = {{"scheduler", {{"workloads", {{{"name", "w"}, {"max_queue", kMaxQueue + 1}}}}}}};
  sluice::core::SchedulerConfig core;
  core.workloads.push_back({.name = "w", .max_queue = kMaxQueue + 1});
  CHECK_FALSE(parse_config(doc.dump()).ok());
  CHECK_FALSE(sluice::core::validate(core).empty());
}
