#include <doctest/doctest.h>

#include "sluice/core/cost.hpp"

using namespace sluice::core;

TEST_CASE("cost: prompt chars / 4 plus num_predict or the learned average") {
  CostModel model({.default_output_tokens = 250, .smoothing = 0.5, .max_entries = 8});
  CHECK(model.estimate("paid", "mistral", 400, 100) == 100 + 100);
  CHECK(model.estimate("paid", "mistral", 401, std::nullopt) == 101 + 250);
  CHECK(model.estimate("paid", "mistral", 0, -1) == 250);  // -1 = until stop: use the average
  CHECK(model.estimate("paid", "mistral", 0, 0) == 250);
  model.observe("paid", "mistral", 50);
  CHECK(model.expected_output("paid", "mistral") == 50);
  model.observe("paid", "mistral", 150);
  CHECK(model.expected_output("paid", "mistral") == 100);  // EWMA with smoothing 0.5
  CHECK(model.expected_output("free", "mistral") == 250);  // per workload
  CHECK(model.expected_output("paid", "llama") == 250);    // per model
  CHECK(model.estimate("x", "y", 0, std::nullopt) >= 1);
}

TEST_CASE("cost: the table is bounded, least recently observed dropped first") {
  CostModel model({.default_output_tokens = 10, .smoothing = 1.0, .max_entries = 2});
  model.observe("w", "a", 1);
  model.observe("w", "b", 2);
  model.observe("w", "a", 3);  // a is now most recent
  model.observe("w", "c", 4);  // evicts b
  CHECK(model.size() == 2);
  CHECK(model.expected_output("w", "a") == 3);
  CHECK(model.expected_output("w", "b") == 10);
  CHECK(model.expected_output("w", "c") == 4);
  model.observe("w", "a", -5);  // negative = unknown, ignored
  CHECK(model.expected_output("w", "a") == 3);
}
