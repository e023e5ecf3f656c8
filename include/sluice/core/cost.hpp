// Request cost in tokens, and learning it from what the upstream really produced.
//
// Estimate = prompt tokens (prompt characters / 4, rounded up) + expected output tokens, where
// the expected output is options.num_predict when the request sets a positive one, else the
// running average (EWMA) of output tokens observed for the same (workload, model), else a
// default. The table is bounded: beyond max_entries the least recently observed pair is dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::core {

class CostModel {
 public:
  struct Options {
    std::int64_t default_output_tokens = 250;
    double smoothing = 0.2;  ///< EWMA weight of a new observation, in (0, 1]
    std::size_t max_entries = 4096;
  };

  CostModel() : CostModel(Options{}) {}
  explicit CostModel(Options options);

  static std::int64_t prompt_tokens(std::int64_t prompt_chars) { return (prompt_chars + 3) / 4; }

  /// Expected output tokens for (workload, model); the default when nothing was observed.
  std::int64_t expected_output(std::string_view workload, std::string_view model) const;

  /// Total expected cost, at least 1.
  std::int64_t estimate(std::string_view workload, std::string_view model,
                        std::int64_t prompt_chars, std::optional<std::int64_t> num_predict) const;

  /// Feeds the real output token count of a finished request (ignored when < 0).
  void observe(std::string_view workload, std::string_view model, std::int64_t output_tokens);

  std::size_t size() const { return table_.size(); }

 private:
  struct Entry {
    double average;
    std::list<std::string>::iterator lru;
  };
  static std::string key(std::string_view workload, std::string_view model);

  Options options_;
  std::list<std::string> lru_;  // front = most recently observed
  std::unordered_map<std::string, Entry> table_;
};

}  // namespace sluice::core
