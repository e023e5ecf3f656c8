// Workloads and classification: which workload a request belongs to, decided from its labels.
// Workloads are tried in order, the first whose matchers all hold wins, else the default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sluice/core/labels.hpp"
#include "sluice/core/time.hpp"

namespace sluice::core {

/// One condition on one label. Holds when the label is present and its value is one of
/// `values`; an empty `values` list means "label present, any value".
struct LabelMatcher {
  std::string label;
  std::vector<std::string> values;
};

struct WorkloadSpec {
  std::string name;
  std::vector<LabelMatcher> match;  ///< all must hold; empty = matches every request
  double priority = 1.0;            ///< WFQ weight inside its band (> 0)
  int band = 0;                     ///< strict band: a higher band always goes first
  Duration queue_timeout = std::chrono::seconds(60);
  std::int64_t max_queue = 0;           ///< parked requests of this workload; 0 = no own bound
  std::string fairness_label = "user";  ///< label whose value is the fairness key
  /// Its clients get progress while parked (as if each sent X-Sluice-Progress: 1).
  bool progress = false;
};

bool matches(const WorkloadSpec& workload, const Labels& labels);

/// Index into `workloads` of the first match, or workloads.size() when none matches
/// (meaning: the default workload).
std::size_t classify(std::span<const WorkloadSpec> workloads, const Labels& labels);

/// Checks one workload's values; returns "" when valid, else a message naming the field
/// ("priority must be > 0", "name must not be empty", ...).
std::string validate(const WorkloadSpec& workload);

}  // namespace sluice::core
