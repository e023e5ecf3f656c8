// Admission planning for scheduled requests (see admission_plan.hpp).
#include "admission_plan.hpp"

#include <algorithm>
#include <cstdio>

#include "sluice/auth/auth.hpp"

namespace sluice::net {

namespace {

std::string priority_text(double priority) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", priority);
  return text;
}

/// The key decides who this is (a trusted gateway may pass its users through) and how urgent
/// it may claim to be.
void apply_key(const config::ApiKey& key, RequestLabels& labels) {
  const auto id = auth::identity(key, labels.labels.value_or_empty("user"),
                                 labels.labels.value_or_empty("tier"));
  const std::string user(id.user), tier(id.tier);
  labels.labels.set("user", user);
  if (tier.empty()) {
    labels.labels.erase("tier");
  } else {
    labels.labels.set("tier", tier);
  }
  labels.priority = auth::allowed_priority(key, labels.priority);
  if (labels.priority) {
    labels.labels.set("priority", priority_text(*labels.priority));
  } else {
    labels.labels.erase("priority");
  }
}

}  // namespace

LabelPlan plan_labels(const config::HeaderNames& names, const LabelHeaderValues& values,
                      std::string_view duplicate, const config::ApiKey* key,
                      const core::Scheduler& scheduler) {
  LabelPlan plan;
  plan.error =
      duplicate.empty() ? parse_label_headers(names, values, plan.labels) : std::string(duplicate);
  if (key) apply_key(*key, plan.labels);
  if (plan.error.empty() && plan.labels.workload) {
    plan.workload = scheduler.find_workload(*plan.labels.workload);
    if (!plan.workload) {
      plan.error = "invalid " + names.workload + " header: unknown workload \"" +
                   *plan.labels.workload + "\"";
    }
  }
  return plan;
}

core::Request AdmissionPlan::request() const {
  return core::Request{.workload = workload,
                       .priority = labels.labels.priority.value_or(0.0),
                       .fairness_key = fairness_key,
                       .limit_keys = limit_keys,
                       .cost = cost,
                       .queue_timeout = labels.labels.queue_timeout,
                       .model = body.model};
}

std::string plan_admission(LabelPlan labels, std::string_view path, std::string_view body,
                           std::string_view client_address, const core::Scheduler& scheduler,
                           const core::CostModel& cost_model, AdmissionPlan& out) {
  out.labels = std::move(labels);
  RequestLabels& request_labels = out.labels.labels;
  if (std::string error = inspect_body(path, body, out.body); !error.empty()) return error;
  if (!out.body.model.empty() && core::valid_label_value(out.body.model))
    request_labels.labels.set("model", out.body.model);

  out.workload =
      out.labels.workload ? *out.labels.workload : scheduler.classify(request_labels.labels);
  const core::WorkloadSpec& spec = scheduler.workload(out.workload);
  out.workload_name = spec.name;

  // The fairness key: the workload's fairness label, else the client's address.
  if (auto value = request_labels.labels.get(spec.fairness_label)) {
    out.fairness_key = std::string(*value);
  } else {
    out.fairness_key = "addr:";
    out.fairness_key.append(client_address);
  }
  out.limit_keys.clear();
  out.limit_keys.reserve(scheduler.config().per_key.size());
  for (const auto& limit : scheduler.config().per_key)
    out.limit_keys.push_back(request_labels.labels.value_or_empty(limit.label));

  if (request_labels.tokens) {
    out.cost = *request_labels.tokens;
  } else if (out.body.embedding) {
    out.cost = std::max<std::int64_t>(core::CostModel::prompt_tokens(out.body.prompt_chars), 1);
  } else {
    out.cost =
        cost_model.estimate(spec.name, out.body.model, out.body.prompt_chars, out.body.num_predict);
  }
  return {};
}

}  // namespace sluice::net
