// sluice-sim's own routes and the ones that describe the GPU: /api/ps (models resident now),
// GET /sim/stats (counters, per-model state and load counts, request records), POST /sim/reset,
// GET/POST /sim/config (live settings; see live_config.hpp).
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "server_impl.hpp"

namespace sluice::sim {
namespace {

constexpr std::size_t kMaxStatsRecords = 1'000'000;

const char* phase_name(Residency::Phase phase) {
  switch (phase) {
    case Residency::Phase::unloaded:
      return "unloaded";
    case Residency::Phase::loading:
      return "loading";
    case Residency::Phase::resident:
      return "resident";
  }
  return "";
}

}  // namespace

std::string SimServer::Impl::ps_json() const {
  // Ollama lists loading and loaded runners, the one expiring last first.
  struct Row {
    std::int64_t sort_key;
    PsEntry entry;
  };
  const std::int64_t now = clock.now_ns();
  std::vector<Row> rows;
  for (std::size_t i = 0; i < catalog.names().size(); ++i) {
    if (residency.model(i).phase == Residency::Phase::unloaded) continue;
    const auto expires = residency.expires_ns(i, now);
    rows.push_back(Row{expires.value_or(INT64_MAX),
                       PsEntry{catalog.names()[i], expires ? rfc3339(clock.wall_at(*expires))
                                                           : rfc3339_forever(clock.wall_at(now))}});
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.sort_key > b.sort_key; });
  std::vector<PsEntry> entries;
  for (auto& row : rows)
    entries.push_back(std::move(row.entry));
  return ps_body(entries);
}

std::string SimServer::Impl::stats_json(std::string_view query) const {
  const auto since = query_uint(query, "since").value_or(0);
  const auto limit = query_uint(query, "limit").value_or(kMaxStatsRecords);
  const auto& counters = log.counters();
  nlohmann::ordered_json head;
  head["parallel"] = cfg.parallel;
  head["max_loaded"] = residency.config().max_loaded;
  head["time_scale"] = cfg.time_scale;
  head["now_ns"] = clock.now_ns();
  head["active"] = gpu.active;
  head["waiting"] = gpu.waiting;
  head["peak_active"] = gpu.peak_active;
  head["peak_waiting"] = gpu.peak_waiting;
  head["total"] = counters.total;
  head["completed"] = counters.completed;
  head["cancelled"] = counters.cancelled;
  head["errors"] = counters.errors;
  head["rejected"] = counters.rejected;
  head["waiting_for_model"] = residency.waiting();
  head["loads"] = residency.total_loads();
  std::int64_t load_ns_total = 0;
  for (std::size_t i = 0; i < residency.models(); ++i)
    load_ns_total += residency.model(i).load_ns_total;
  head["load_ns_total"] = load_ns_total;
  nlohmann::ordered_json per_model = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < catalog.names().size(); ++i) {
    const auto& name = catalog.names()[i];
    const SlotPool& pool = *pools.at(name);
    const auto resident = residency.model(i);
    per_model[name] = {{"active", pool.active()},
                       {"waiting", pool.waiting()},
                       {"peak_active", pool.peak_active()},
                       {"state", phase_name(resident.phase)},
                       {"refs", resident.refs},
                       {"loads", resident.loads},
                       {"load_ns_total", resident.load_ns_total}};
  }
  head["models"] = per_model;
  std::string out = head.dump();
  out.pop_back();  // reopen the object to append the calls and records arrays
  out += ",\"calls\":[";
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) out += ',';
    out += call_json(calls[i]);
  }
  out += ']';
  out += ",\"records\":[";
  const auto& records = log.records();
  std::vector<const Record*> picked;
  for (const auto& r : records)
    if (r->id > since) picked.push_back(r.get());
  const std::size_t skip = picked.size() > limit ? picked.size() - limit : 0;
  for (std::size_t i = skip; i < picked.size(); ++i) {
    if (i > skip) out += ',';
    out += record_json(*picked[i]);
  }
  out += "]}";
  return out;
}

void SimServer::Impl::note_call(const Request& req, std::string model) {
  if (calls.size() >= kMaxCalls) calls.pop_front();
  calls.push_back(CallRecord{.method = std::string(req.method_string()),
                             .path = std::string(req.target().substr(0, req.target().find('?'))),
                             .model = std::move(model),
                             .headers = recorded_headers(req)});
}

void SimServer::Impl::reset_stats() {
  calls.clear();
  log.reset();
  gpu.reset_peaks();
  for (auto& [name, pool] : pools)
    pool->reset_peak();
  residency.reset_counters();
}

LiveSettings SimServer::Impl::live_settings() const {
  LiveSettings s;
  s.parallel = cfg.parallel;
  s.max_queue = cfg.max_queue;
  s.gpu = model.params();
  s.max_loaded = residency.config().max_loaded;
  s.load_ns = residency.config().load_ns;
  s.keep_alive_ns = residency.config().keep_alive_ns;
  s.external_streams = cfg.external_streams;
  return s;
}

void SimServer::Impl::apply(const LiveSettings& s) {
  cfg.parallel = s.parallel;
  cfg.max_queue = s.max_queue;
  cfg.gpu = s.gpu;
  cfg.external_streams = s.external_streams;
  model = GpuModel(s.gpu);
  for (auto& [name, pool] : pools)
    pool->set_capacity(s.parallel);
  residency.set_config(ResidencyConfig{s.max_loaded, s.load_ns, s.keep_alive_ns}, clock.now_ns());
  pump_residency();
}

}  // namespace sluice::sim
