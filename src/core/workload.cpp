// Workload classification: first matching workload wins, else the default.
#include "sluice/core/workload.hpp"

#include <algorithm>
#include <cmath>

#include "sluice/core/limits.hpp"

namespace sluice::core {

bool matches(const WorkloadSpec& workload, const Labels& labels) {
  for (const LabelMatcher& m : workload.match) {
    auto value = labels.get(m.label);
    if (!value) return false;
    if (!m.values.empty() &&
        std::find(m.values.begin(), m.values.end(), *value) == m.values.end()) {
      return false;
    }
  }
  return true;
}

std::size_t classify(std::span<const WorkloadSpec> workloads, const Labels& labels) {
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    if (matches(workloads[i], labels)) return i;
  }
  return workloads.size();
}

std::string validate(const WorkloadSpec& w) {
  if (w.name.empty()) return "name must not be empty";
  if (w.name.size() > 64) return "name must be at most 64 characters";
  for (char c : w.name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return "name may only contain letters, digits, '-', '_' and '.'";
  }
  if (!std::isfinite(w.priority) || w.priority <= 0 || w.priority > kMaxPriority) {
    return "priority must be a number > 0 and <= 1000000";
  }
  if (w.band < kMinBand || w.band > kMaxBand) {
    return "band must be between " + std::to_string(kMinBand) + " and " + std::to_string(kMaxBand);
  }
  if (w.queue_timeout.count() < 0) return "queue_timeout must not be negative";
  if (w.max_queue < 0) return "max_queue must be >= 0";
  if (w.max_queue > kMaxQueue) return "max_queue must be <= " + std::to_string(kMaxQueue);
  if (w.fairness_label.empty()) return "fairness_key must not be empty";
  for (const LabelMatcher& m : w.match) {
    if (m.label.empty()) return "match: label name must not be empty";
  }
  return "";
}

}  // namespace sluice::core
