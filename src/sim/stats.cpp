// Request records and counters of sluice-sim (see stats.hpp).
#include "stats.hpp"

#include <nlohmann/json.hpp>

namespace sluice::sim {

std::shared_ptr<Record> RecordLog::add(Record record) {
  record.id = next_id_++;
  ++counters_.total;
  auto shared = std::make_shared<Record>(std::move(record));
  if (max_records_ > 0) {
    records_.push_back(shared);
    while (records_.size() > max_records_)
      records_.pop_front();
  }
  return shared;
}

void RecordLog::finish(Record& record, std::string outcome, std::int64_t now_ns) {
  if (record.end_ns) return;
  record.end_ns = now_ns;
  record.cancelled = outcome == "cancelled";
  if (outcome == "completed" || outcome == "load") {
    ++counters_.completed;
  } else if (outcome == "cancelled") {
    ++counters_.cancelled;
  } else if (outcome == "rejected" || (outcome == "fault" && !record.start_ns)) {
    ++counters_.rejected;
  } else {
    ++counters_.errors;
  }
  record.outcome = std::move(outcome);
}

void RecordLog::reset() {
  std::erase_if(records_, [](const auto& r) { return r->end_ns.has_value(); });
  counters_ = Counters{};
}

std::string record_json(const Record& r) {
  nlohmann::ordered_json j;
  auto opt = [](const std::optional<std::int64_t>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
  };
  j["id"] = r.id;
  j["route"] = r.route;
  j["model"] = r.model;
  j["stream"] = r.stream;
  j["arrival_ns"] = r.arrival_ns;
  j["model_ready_ns"] = opt(r.model_ready_ns);
  j["start_ns"] = opt(r.start_ns);
  j["first_token_ns"] = opt(r.first_token_ns);
  j["end_ns"] = opt(r.end_ns);
  j["load_duration_ns"] = r.load_ns;
  j["triggered_load"] = r.triggered_load;
  j["prompt_tokens"] = r.prompt_tokens;
  j["planned_tokens"] = r.planned_tokens;
  j["tokens"] = r.tokens;
  j["outcome"] = r.outcome;
  j["cancelled"] = r.cancelled;
  j["fault"] = r.fault;
  j["host"] = r.host;
  nlohmann::ordered_json headers = nlohmann::ordered_json::object();
  for (const auto& [name, value] : r.headers)
    headers[name] = value;
  j["headers"] = headers;
  return j.dump();
}

std::string call_json(const CallRecord& call) {
  nlohmann::ordered_json j;
  j["method"] = call.method;
  j["path"] = call.path;
  j["model"] = call.model;
  nlohmann::ordered_json headers = nlohmann::ordered_json::object();
  for (const auto& [name, value] : call.headers)
    headers[name] = value;
  j["headers"] = headers;
  return j.dump();
}

}  // namespace sluice::sim
