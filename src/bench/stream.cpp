// NDJSON scanning and /sim/stats parsing (see include/sluice/bench/stream.hpp).
#include "sluice/bench/stream.hpp"

#include <nlohmann/json.hpp>

namespace sluice::bench {

using nlohmann::json;

void NdjsonScanner::feed(std::string_view bytes) {
  splitter_.feed(
      bytes, [this](std::string_view text) { line(text); },
      [this] {
        if (error_.empty()) error_ = "response line longer than 1 MiB";
      });
}

void NdjsonScanner::finish() {
  splitter_.finish([this](std::string_view text) { line(text); });
}

void NdjsonScanner::line(std::string_view text) {
  while (!text.empty() && (text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  if (text.empty()) return;
  ++lines_;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    if (error_.empty()) error_ = "malformed response line";
    return;
  }
  if (auto it = j.find("error"); it != j.end()) {
    if (error_.empty()) error_ = it->is_string() ? it->get<std::string>() : it->dump();
    return;
  }
  auto it = j.find("done");
  if (it == j.end() || !it->is_boolean() || !it->get<bool>()) return;
  done_ = true;
  if (auto p = j.find("prompt_eval_count"); p != j.end() && p->is_number_integer())
    prompt_tokens_ = p->get<long>();
  if (auto e = j.find("eval_count"); e != j.end() && e->is_number_integer())
    output_tokens_ = e->get<long>();
  if (auto r = j.find("done_reason"); r != j.end() && r->is_string())
    done_reason_ = r->get<std::string>();
}

std::optional<SimStats> parse_sim_stats(std::string_view json_text, std::string_view run_id,
                                        std::string* why) {
  auto fail = [&](const std::string& reason) -> std::optional<SimStats> {
    if (why) *why = reason;
    return std::nullopt;
  };
  const json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("/sim/stats: not a JSON object");
  try {
    SimStats s;
    s.time_scale = j.at("time_scale").get<double>();
    s.now_ns = j.at("now_ns").get<std::int64_t>();
    s.parallel = j.value("parallel", 0);
    if (auto it = j.find("loads"); it != j.end() && it->is_number_unsigned())
      s.loads = it->get<std::uint64_t>();
    if (auto it = j.find("load_ns_total"); it != j.end() && it->is_number_integer())
      s.load_ns_total = it->get<std::int64_t>();
    for (const auto& r : j.at("records")) {
      const auto id = r.at("id").get<std::uint64_t>();
      s.last_id = std::max(s.last_id, id);
      if (!run_id.empty()) {
        const auto& headers = r.value("headers", json::object());
        auto h = headers.find("x-bench-run");
        if (h == headers.end() || !h->is_string() || h->get<std::string>() != run_id) continue;
      }
      const auto& start = r.at("start_ns");
      if (start.is_null()) continue;
      SimStats::Interval in;
      in.id = id;
      in.start_ns = start.get<std::int64_t>();
      const auto& end = r.at("end_ns");
      in.end_ns = end.is_null() ? s.now_ns : end.get<std::int64_t>();
      in.arrival_ns = r.value("arrival_ns", in.start_ns);
      s.generation.push_back(in);
    }
    if (!(s.time_scale > 0)) return fail("/sim/stats: time_scale must be positive");
    return s;
  } catch (const json::exception& e) {
    return fail(std::string("/sim/stats: ") + e.what());
  }
}

std::vector<UpstreamInterval> to_run_time(const SimStats& stats, std::int64_t anchor_ns,
                                          double anchor_run_s) {
  std::vector<UpstreamInterval> out;
  out.reserve(stats.generation.size());
  for (const auto& g : stats.generation)
    out.push_back({anchor_run_s + double(g.start_ns - anchor_ns) / 1e9,
                   anchor_run_s + double(g.end_ns - anchor_ns) / 1e9,
                   anchor_run_s + double(g.arrival_ns - anchor_ns) / 1e9});
  return out;
}

}  // namespace sluice::bench
