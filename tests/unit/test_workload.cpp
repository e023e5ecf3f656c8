#include <doctest/doctest.h>

#include "sluice/core/workload.hpp"

using namespace sluice::core;

TEST_CASE("classification: first match wins, default otherwise") {
  std::vector<WorkloadSpec> workloads{
      {.name = "paid-batch", .match = {{"tier", {"paid"}}, {"kind", {"batch"}}}, .priority = 2},
      {.name = "paid", .match = {{"tier", {"paid", "enterprise"}}}, .priority = 8},
      {.name = "free", .match = {{"tier", {"free"}}}, .priority = 1},
      {.name = "anyone-with-tier", .match = {{"tier", {}}}},
  };
  CHECK(classify(workloads, Labels{{"tier", "paid"}}) == 1);
  CHECK(classify(workloads, Labels{{"tier", "enterprise"}}) == 1);
  CHECK(classify(workloads, Labels{{"tier", "paid"}, {"kind", "batch"}}) == 0);
  CHECK(classify(workloads, Labels{{"tier", "free"}}) == 2);
  CHECK(classify(workloads, Labels{{"tier", "trial"}}) == 3);
  CHECK(classify(workloads, Labels{{"user", "alice"}}) == workloads.size());
  CHECK(classify({}, Labels{{"tier", "paid"}}) == 0);
}

TEST_CASE("classification: an empty matcher list matches everything") {
  std::vector<WorkloadSpec> workloads{{.name = "all"}};
  CHECK(classify(workloads, Labels{}) == 0);
}

TEST_CASE("workload validation names the field") {
  CHECK(validate(WorkloadSpec{.name = "ok"}) == "");
  CHECK(validate(WorkloadSpec{.name = ""}).find("name") != std::string::npos);
  CHECK(validate(WorkloadSpec{.name = "a b"}).find("name") != std::string::npos);
  CHECK(validate(WorkloadSpec{.name = "w", .priority = 0}).find("priority") != std::string::npos);
  CHECK(validate(WorkloadSpec{.name = "w", .priority = -1}).find("priority") != std::string::npos);
  CHECK(validate(WorkloadSpec{.name = "w", .max_queue = -1}).find("max_queue") !=
        std::string::npos);
  CHECK(validate(WorkloadSpec{.name = "w", .fairness_label = ""}).find("fairness") !=
        std::string::npos);
}
