// Admission planning for a scheduled request: from what its headers and body say, and which API
// key sent it, to the core::Request the admission gate takes, or the client error that refuses
// it. Pure (no Asio, no Beast, no clock): every rule is unit-tested without a socket
// (tests/net/test_admission_plan.cpp).
//
// Two steps, because the session answers a bad label header before reading the body when the
// client waits for 100 Continue:
//  1. plan_labels(): the label headers validated (parse_label_headers), then the API key's word
//     applied — the user and tier are the key's own unless it is a trusted gateway passing its
//     users through, and X-Priority is clamped to the key's maximum — and X-Workload looked up.
//  2. plan_admission(): the body inspected (model, prompt size, output bound), the workload
//     classified (X-Workload wins, else first matching rule), the fairness key chosen (the
//     workload's fairness label, else the client's address), the per-key limit values read, and
//     the cost estimated (X-Tokens, else prompt tokens for an embedding, else the cost model).
//
// An AdmissionPlan owns every string its core::Request views; request() must not outlive it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "request_info.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/cost.hpp"
#include "sluice/core/scheduler.hpp"

namespace sluice::net {

/// The label headers of a request, validated and with the API key's word applied.
struct LabelPlan {
  RequestLabels labels;
  std::optional<core::WorkloadId> workload;  ///< chosen by X-Workload
  std::string error;                         ///< "" = valid; else the 400 message
};

/// Step 1. `duplicate` is the message for a label header given twice ("" when none was);
/// `key` the API key the request authenticated with (nullptr: keys are off).
LabelPlan plan_labels(const config::HeaderNames& names, const LabelHeaderValues& values,
                      std::string_view duplicate, const config::ApiKey* key,
                      const core::Scheduler& scheduler);

struct AdmissionPlan {
  LabelPlan labels;
  BodyInfo body;
  core::WorkloadId workload = 0;
  std::string workload_name;
  std::string fairness_key;
  std::vector<std::string_view> limit_keys;  ///< views into labels.labels
  std::int64_t cost = 1;

  /// The request for the admission gate; views into this plan.
  core::Request request() const;

  AdmissionPlan() = default;
  AdmissionPlan(const AdmissionPlan&) = delete;  // limit_keys view into labels
  AdmissionPlan& operator=(const AdmissionPlan&) = delete;
};

/// Step 2, once the body of a request to `path` was read. `labels` must have no error. Returns
/// "" and fills `out`, or the 400 message for the body.
std::string plan_admission(LabelPlan labels, std::string_view path, std::string_view body,
                           std::string_view client_address, const core::Scheduler& scheduler,
                           const core::CostModel& cost_model, AdmissionPlan& out);

}  // namespace sluice::net
