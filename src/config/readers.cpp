// The scalar readers and the ObjectReader (see readers.hpp). Each reader records at most one
// error and never changes its output on failure.
#include "readers.hpp"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <charconv>

#include "sluice/core/duration.hpp"

namespace sluice::config::detail {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

constexpr std::size_t kMaxLabelNameBytes = 64;

}  // namespace

std::string type_name(const json& value) {
  if (value.is_number_float()) return "a fractional number";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_null()) return "null";
  if (value.is_object()) return "an object";
  return "an array";
}

ObjectReader::ObjectReader(Context& ctx, const json& node, Path path)
    : ctx_(ctx), node_(node), path_(std::move(path)), valid_(node.is_object()) {
  if (!valid_) ctx_.error(path_, "must be an object, not " + type_name(node));
}

bool ObjectReader::failed(std::string_view key) const {
  return std::find(failed_.begin(), failed_.end(), key) != failed_.end();
}

void ObjectReader::finish() {
  if (!valid_ || finished_) return;
  finished_ = true;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    ctx_.error(path_ / it.key(), "unknown key; " + suggestion(it.key()));
  }
}

std::string ObjectReader::suggestion(std::string_view key) const {
  std::string best;
  std::size_t best_distance = 3;  // suggest only close matches
  for (const std::string& k : known_) {
    std::size_t d = edit_distance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  if (!best.empty()) return "did you mean \"" + best + "\"?";
  std::string list;
  for (const std::string& k : known_)
    list += (list.empty() ? "" : ", ") + k;
  return "expected one of: " + list;
}

bool read_int(Context& ctx, const json& v, const Path& p, std::int64_t min, std::int64_t max,
              std::int64_t& out) {
  auto range = [&] {
    return "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  };
  if (!v.is_number_integer()) {
    ctx.error(p, range() + ", not " + (v.is_number_float() ? v.dump() : type_name(v)));
    return false;
  }
  bool in_range;
  std::int64_t value = 0;
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    in_range = u <= static_cast<std::uint64_t>(max);
    value = in_range ? static_cast<std::int64_t>(u) : 0;
    in_range = in_range && value >= min;
  } else {
    value = v.get<std::int64_t>();
    in_range = value >= min && value <= max;
  }
  if (!in_range) {
    ctx.error(p, range() + ", not " + v.dump());
    return false;
  }
  out = value;
  return true;
}

bool read_bool(Context& ctx, const json& v, const Path& p, bool& out) {
  if (!v.is_boolean()) {
    ctx.error(p, "must be true or false, not " + type_name(v));
    return false;
  }
  out = v.get<bool>();
  return true;
}

bool read_string(Context& ctx, const json& v, const Path& p, std::string& out) {
  if (!v.is_string()) {
    ctx.error(p, "must be a string, not " + type_name(v));
    return false;
  }
  out = v.get<std::string>();
  return true;
}

bool read_duration(Context& ctx, const json& v, const Path& p, Duration min, Duration max,
                   Duration& out, std::string_view why_max) {
  Duration value{};
  if (v.is_string()) {
    std::string reason;
    auto parsed = core::parse_duration(v.get<std::string>(), &reason);
    if (!parsed) {
      ctx.error(p, "bad duration " + v.dump(-1, ' ', true, json::error_handler_t::replace) + ": " +
                       reason + " (write e.g. \"250ms\", \"30s\", \"5m\")");
      return false;
    }
    value = *parsed;
  } else if (v.is_number_integer()) {
    std::int64_t ms = 0;
    const std::int64_t max_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(core::kMaxDuration).count();
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_ms)
                               : (v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > max_ms)) {
      ctx.error(p, "must be a duration from 0 to 30 days, not " + v.dump());
      return false;
    }
    ms = v.get<std::int64_t>();
    value = std::chrono::milliseconds(ms);
  } else {
    ctx.error(
        p, "must be a duration such as \"30s\" or an integer of milliseconds, not " + type_name(v));
    return false;
  }
  if (value < min) {
    ctx.error(p, min == Duration::zero() ? "must not be negative"
                 : min == Duration(1)    ? "must be greater than 0"
                                         : "must be at least " + core::format_duration(min));
    return false;
  }
  if (value > max) {
    std::string message = "must be at most " + core::format_duration(max);
    if (!why_max.empty()) message = std::string(why_max);
    ctx.error(p, message);
    return false;
  }
  out = value;
  return true;
}

bool check_label_name(Context& ctx, const Path& p, std::string& name) {
  if (name.empty() || name.size() > kMaxLabelNameBytes) {
    ctx.error(p, "label name must be 1 to " + std::to_string(kMaxLabelNameBytes) + " characters");
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) {
      ctx.error(
          p, "label name \"" + name + "\" may only contain lowercase letters, digits, '_' and '-'");
      return false;
    }
  }
  if (std::find(std::begin(kKnownLabels), std::end(kKnownLabels), name) == std::end(kKnownLabels)) {
    ctx.warning(p, "label \"" + name +
                       "\" is not one sluice sets (user, tier, priority, workload, tokens, "
                       "model); it is never present on a request");
  }
  return true;
}

bool read_label_name(Context& ctx, const json& v, const Path& p, std::string& out) {
  std::string name;
  if (!read_string(ctx, v, p, name)) return false;
  if (!check_label_name(ctx, p, name)) return false;
  out = std::move(name);
  return true;
}

std::optional<HostPort> parse_host_port(Context& ctx, const std::string& text, const Path& p) {
  auto parsed = boost::urls::parse_authority(text);
  if (!parsed) {
    ctx.error(p, "must be \"host:port\" (IPv6 as \"[::1]:port\"), not \"" + text + "\"");
    return std::nullopt;
  }
  const boost::urls::authority_view& authority = *parsed;
  if (authority.has_userinfo()) {
    ctx.error(p, "must be \"host:port\" without user information");
    return std::nullopt;
  }
  if (authority.host_type() == boost::urls::host_type::ipvfuture) {
    ctx.error(p, "unsupported address \"" + std::string(authority.encoded_host()) + "\"");
    return std::nullopt;
  }
  std::string host = authority.host_address();
  if (host.empty()) {
    ctx.error(p, "host required (write \"0.0.0.0:PORT\" to listen on every interface)");
    return std::nullopt;
  }
  if (!authority.has_port() || authority.port().empty()) {
    ctx.error(p, "port required (\"" + text + ":PORT\"; 0 picks a free port)");
    return std::nullopt;
  }
  std::string_view port_text = authority.port();
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port > 65535) {
    ctx.error(p, "port must be from 0 to 65535, not " + std::string(port_text));
    return std::nullopt;
  }
  return HostPort{std::move(host), static_cast<std::uint16_t>(port)};
}

bool check_array(Context& ctx, const json& v, const Path& p, std::string_view noun,
                 std::size_t max_items) {
  if (!v.is_array()) {
    ctx.error(p, "must be an array of " + std::string(noun) + ", not " + type_name(v));
    return false;
  }
  if (v.size() > max_items) {
    ctx.error(p, "at most " + std::to_string(max_items) + " " + std::string(noun));
    return false;
  }
  return true;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace sluice::config::detail
