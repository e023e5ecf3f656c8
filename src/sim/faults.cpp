// Parsing of X-Sim-Fault and --fault-mix (see faults.hpp). Bounded input, no allocation beyond
// the result.
#include "faults.hpp"

#include <cctype>
#include <charconv>

namespace sluice::sim {
namespace {

constexpr std::size_t kMaxFaultText = 1024;
constexpr int kMaxAfterTokens = 1'000'000;
constexpr long kMaxSlowMs = 3'600'000;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

template <typename Int>
bool parse_uint(std::string_view s, Int& out, Int max) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && out >= 0 && out <= max;
}

// Applies one item to `plan`; returns an error message or empty.
std::string apply_item(std::string_view item, FaultPlan& plan) {
  const auto eq = item.find('=');
  const auto name = trim(item.substr(0, eq));
  const bool has_arg = eq != std::string_view::npos;
  const auto arg = has_arg ? trim(item.substr(eq + 1)) : std::string_view{};
  auto no_arg = [&]() -> std::string {
    return has_arg ? "fault '" + std::string(name) + "' takes no value" : "";
  };
  auto after = [&](std::optional<int>& slot) -> std::string {
    if (plan.mid_stream_after()) return "at most one mid-stream fault per request";
    int n = kDefaultFaultAfterTokens;
    if (has_arg && !parse_uint(arg, n, kMaxAfterTokens))
      return "fault '" + std::string(name) + "' needs a token count, got '" + std::string(arg) +
             "'";
    slot = n;
    return "";
  };
  if (name == "error-500") {
    plan.error_500 = true;
    return no_arg();
  }
  if (name == "refuse") {
    plan.refuse = true;
    return no_arg();
  }
  if (name == "hang-before-headers") {
    plan.hang_before_headers = true;
    return no_arg();
  }
  if (name == "hang-mid-stream") return after(plan.hang_mid_stream);
  if (name == "reset-mid-stream") return after(plan.reset_mid_stream);
  if (name == "error-line") return after(plan.error_line);
  if (name == "slow-first-token") {
    long ms = 0;
    if (!has_arg || !parse_uint(arg, ms, kMaxSlowMs))
      return "fault 'slow-first-token' needs milliseconds (0-3600000), e.g. slow-first-token=500";
    plan.slow_first_token = std::chrono::milliseconds(ms);
    return "";
  }
  return "unknown fault '" + std::string(name) +
         "' (known: error-500, refuse, hang-before-headers, hang-mid-stream[=N], "
         "reset-mid-stream[=N], error-line[=N], slow-first-token=MS)";
}

}  // namespace

bool FaultPlan::any() const {
  return error_500 || refuse || hang_before_headers || mid_stream_after() ||
         slow_first_token.count() > 0;
}

std::optional<int> FaultPlan::mid_stream_after() const {
  if (hang_mid_stream) return hang_mid_stream;
  if (reset_mid_stream) return reset_mid_stream;
  return error_line;
}

std::string FaultPlan::text() const {
  std::string out;
  auto add = [&](std::string item) {
    if (!out.empty()) out += ',';
    out += item;
  };
  if (error_500) add("error-500");
  if (refuse) add("refuse");
  if (hang_before_headers) add("hang-before-headers");
  if (slow_first_token.count() > 0)
    add("slow-first-token=" + std::to_string(slow_first_token.count()));
  if (hang_mid_stream) add("hang-mid-stream=" + std::to_string(*hang_mid_stream));
  if (reset_mid_stream) add("reset-mid-stream=" + std::to_string(*reset_mid_stream));
  if (error_line) add("error-line=" + std::to_string(*error_line));
  return out;
}

std::optional<FaultPlan> parse_faults(std::string_view text, std::string* error) {
  if (text.size() > kMaxFaultText) {
    if (error) *error = "X-Sim-Fault value too long";
    return std::nullopt;
  }
  FaultPlan plan;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (item.empty()) continue;
    if (auto why = apply_item(item, plan); !why.empty()) {
      if (error) *error = std::move(why);
      return std::nullopt;
    }
  }
  return plan;
}

std::optional<std::vector<FaultPlan>> parse_fault_mix(std::string_view text, std::string* error) {
  if (text.size() > kMaxFaultText) {
    if (error) *error = "fault mix too long";
    return std::nullopt;
  }
  std::vector<FaultPlan> mix;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (item.empty()) continue;
    FaultPlan plan;
    if (auto why = apply_item(item, plan); !why.empty()) {
      if (error) *error = std::move(why);
      return std::nullopt;
    }
    mix.push_back(plan);
  }
  if (mix.empty()) {
    if (error) *error = "fault mix is empty";
    return std::nullopt;
  }
  return mix;
}

std::vector<FaultPlan> default_fault_mix() {
  return *parse_fault_mix("error-500,refuse,reset-mid-stream,error-line,slow-first-token=2000");
}

}  // namespace sluice::sim
