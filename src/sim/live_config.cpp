// GET/POST /sim/config: validation and JSON of the live settings (see live_config.hpp).
#include "live_config.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "duration.hpp"

namespace sluice::sim {
namespace {

using json = nlohmann::json;

std::string must(const std::string& key, const char* what) {
  return "field \"" + key + "\" must be " + what;
}

// An integer in [lo, hi], given as 3 or 3.0.
std::optional<std::string> get_int(const json& v, const std::string& key, std::int64_t lo,
                                   std::int64_t hi, std::int64_t& out) {
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!v.is_number()) return must(key, range.c_str());
  const double d = v.get<double>();
  if (d != std::floor(d) || d < double(lo) || d > double(hi)) return must(key, range.c_str());
  out = std::int64_t(d);
  return std::nullopt;
}

std::optional<std::string> get_duration(const json& v, const std::string& key, bool allow_negative,
                                        std::int64_t& out) {
  if (v.is_number()) {
    out = seconds_to_ns(v.get<double>());
  } else if (v.is_string()) {
    auto parsed = parse_go_duration(v.get<std::string>());
    if (auto* why = std::get_if<std::string>(&parsed)) return "field \"" + key + "\": " + *why;
    out = std::get<std::int64_t>(parsed);
  } else {
    return must(key, "a duration string (\"300ms\") or a number of seconds");
  }
  if (out < 0 && !allow_negative) return must(key, "zero or positive");
  return std::nullopt;
}

std::optional<std::string> apply_one(const std::string& key, const json& v, LiveSettings& s) {
  std::int64_t n = 0;
  if (key == "parallel") {
    if (auto e = get_int(v, key, 1, 1024, n)) return e;
    s.parallel = int(n);
  } else if (key == "max_queue") {
    if (auto e = get_int(v, key, 0, 10'000'000, n)) return e;
    s.max_queue = std::size_t(n);
  } else if (key == "max_loaded") {
    if (auto e = get_int(v, key, 1, 1024, n)) return e;
    s.max_loaded = int(n);
  } else if (key == "external_streams") {
    if (auto e = get_int(v, key, 0, 1024, n)) return e;
    s.external_streams = int(n);
  } else if (key == "decode_rate" || key == "prefill_rate") {
    if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
      return must(key, "a positive number (tokens per second)");
    (key == "decode_rate" ? s.gpu.decode_tokens_per_second : s.gpu.prefill_tokens_per_second) =
        v.get<double>();
  } else if (key == "decode_scaling") {
    if (!v.is_string()) return must(key, "a string like \"1:1,2:0.7,4:0.37\"");
    std::string why;
    auto points = parse_scaling(v.get<std::string>(), &why);
    if (!points) return "field \"decode_scaling\": " + why;
    s.gpu.scaling = *points;
  } else if (key == "load_time") {
    if (auto e = get_duration(v, key, false, n)) return e;
    s.load_ns = n;
  } else if (key == "keep_alive") {
    if (auto e = get_duration(v, key, true, n)) return e;
    s.keep_alive_ns = n < 0 ? kForever : n;
  } else {
    return "unknown field \"" + key +
           "\" (known: parallel, max_queue, decode_rate, prefill_rate, decode_scaling, "
           "max_loaded, load_time, keep_alive, external_streams)";
  }
  return std::nullopt;
}

}  // namespace

std::string live_settings_json(const LiveSettings& s) {
  nlohmann::ordered_json j;
  j["parallel"] = s.parallel;
  j["max_queue"] = s.max_queue;
  j["decode_rate"] = s.gpu.decode_tokens_per_second;
  j["prefill_rate"] = s.gpu.prefill_tokens_per_second;
  j["decode_scaling"] = format_scaling(s.gpu.scaling);
  j["max_loaded"] = s.max_loaded;
  j["load_time"] = double(s.load_ns) / 1e9;
  j["keep_alive"] = s.keep_alive_ns < 0 ? -1.0 : double(s.keep_alive_ns) / 1e9;
  j["external_streams"] = s.external_streams;
  return j.dump();
}

std::variant<LiveSettings, std::string> apply_live_changes(const LiveSettings& current,
                                                           std::string_view body) {
  json obj;
  try {
    obj = json::parse(body);
  } catch (const json::parse_error& e) {
    return "invalid JSON in request body at byte " + std::to_string(e.byte);
  }
  if (!obj.is_object()) return std::string("request body must be a JSON object");
  LiveSettings next = current;
  for (const auto& [key, value] : obj.items())
    if (auto e = apply_one(key, value, next)) return *e;
  if (auto why = validate(next.gpu)) return *why;
  return next;
}

}  // namespace sluice::sim
