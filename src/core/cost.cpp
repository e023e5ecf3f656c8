// Cost estimation and learning from observed output token counts.
#include "sluice/core/cost.hpp"

#include <algorithm>
#include <cmath>

namespace sluice::core {

CostModel::CostModel(Options options) : options_(options) {
  options_.smoothing = std::clamp(options_.smoothing, 1e-6, 1.0);
  options_.default_output_tokens = std::max<std::int64_t>(options_.default_output_tokens, 0);
  options_.max_entries = std::max<std::size_t>(options_.max_entries, 1);
}

std::string CostModel::key(std::string_view workload, std::string_view model) {
  std::string k;
  k.reserve(workload.size() + model.size() + 1);
  k.append(workload).push_back('\0');
  k.append(model);
  return k;
}

std::int64_t CostModel::expected_output(std::string_view workload, std::string_view model) const {
  auto it = table_.find(key(workload, model));
  if (it == table_.end()) return options_.default_output_tokens;
  return static_cast<std::int64_t>(std::llround(it->second.average));
}

std::int64_t CostModel::estimate(std::string_view workload, std::string_view model,
                                 std::int64_t prompt_chars,
                                 std::optional<std::int64_t> num_predict) const {
  std::int64_t output =
      (num_predict && *num_predict > 0) ? *num_predict : expected_output(workload, model);
  std::int64_t total = prompt_tokens(std::max<std::int64_t>(prompt_chars, 0)) + output;
  return std::max<std::int64_t>(total, 1);
}

void CostModel::observe(std::string_view workload, std::string_view model,
                        std::int64_t output_tokens) {
  if (output_tokens < 0) return;
  std::string k = key(workload, model);
  auto it = table_.find(k);
  if (it != table_.end()) {
    Entry& e = it->second;
    e.average += options_.smoothing * (static_cast<double>(output_tokens) - e.average);
    lru_.splice(lru_.begin(), lru_, e.lru);
    return;
  }
  if (table_.size() >= options_.max_entries) {
    table_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(k);
  table_.emplace(std::move(k), Entry{static_cast<double>(output_tokens), lru_.begin()});
}

}  // namespace sluice::core
