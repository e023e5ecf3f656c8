// Access-log line formatting (text/logfmt and JSON). Pure; see access_log.hpp for the format and
// the escaping rules.
#include "sluice/obs/access_log.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string_view>

namespace sluice::obs {
namespace {

std::string bounded(std::string_view value) {
  if (value.size() <= kMaxAccessFieldBytes) return std::string(value);
  return std::string(value.substr(0, kMaxAccessFieldBytes)) + "...";
}

double rounded_ms(core::Duration d) {
  return std::round(std::chrono::duration<double, std::milli>(d).count() * 1000.0) / 1000.0;
}

bool plain_text_char(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

// Appends `key=value`, quoting and escaping the value when needed. An empty value is written as
// "" (quoted) so it cannot be mistaken for the "-" that marks an unknown value; a value that is
// literally "-" is quoted for the same reason.
void text_field(std::string& out, std::string_view key, std::string_view raw) {
  if (!out.empty()) out += ' ';
  out += key;
  out += '=';
  const std::string value = bounded(raw);
  bool quote = value.empty() || value == "-";
  for (unsigned char c : value)
    quote = quote || !plain_text_char(c);
  if (!quote) {
    out += value;
    return;
  }
  out += '"';
  for (unsigned char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// A field sluice itself produced (numbers, enum names): never needs escaping.
void text_raw(std::string& out, std::string_view key, std::string_view value) {
  out += ' ';
  out += key;
  out += '=';
  out += value;
}

std::string ms_text(std::optional<core::Duration> d) {
  if (!d) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f",
                std::chrono::duration<double, std::milli>(*d).count());
  return buffer;
}

std::string count_text(std::int64_t n) {
  return n < 0 ? "-" : std::to_string(n);
}

}  // namespace

std::string format_utc(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto since_epoch = time.time_since_epoch();
  auto secs = duration_cast<seconds>(since_epoch);
  auto millis = duration_cast<milliseconds>(since_epoch - secs).count();
  if (millis < 0) {  // before 1970: keep the fraction positive
    secs -= seconds(1);
    millis += 1000;
  }
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buffer;
}

std::string format_access_line(const AccessRecord& r, config::LogFormat format) {
  if (format == config::LogFormat::json) {
    using json = nlohmann::ordered_json;
    auto string_or_null = [](const std::string& s) -> json {
      return s.empty() ? json(nullptr) : json(bounded(s));
    };
    json line = json::object();
    line["time"] = format_utc(r.time);
    line["type"] = "access";
    line["request_id"] = string_or_null(r.request_id);
    line["method"] = string_or_null(r.method);
    line["path"] = string_or_null(r.path);
    line["user"] = string_or_null(r.user);
    line["workload"] = string_or_null(r.workload);
    line["backend"] = string_or_null(r.backend);
    line["status"] = r.status > 0 ? json(r.status) : json(nullptr);
    line["outcome"] = name(r.outcome);
    line["queue_ms"] = r.queue ? json(rounded_ms(*r.queue)) : json(nullptr);
    line["ttfb_ms"] = r.ttfb ? json(rounded_ms(*r.ttfb)) : json(nullptr);
    line["total_ms"] = rounded_ms(r.total);
    line["prompt_tokens"] = r.prompt_tokens >= 0 ? json(r.prompt_tokens) : json(nullptr);
    line["output_tokens"] = r.output_tokens >= 0 ? json(r.output_tokens) : json(nullptr);
    line["upstream_error"] = r.upstream_error ? json(name(*r.upstream_error)) : json(nullptr);
    return line.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  std::string out;
  out.reserve(256);
  out += "time=";
  out += format_utc(r.time);
  auto client_field = [&](std::string_view key, const std::string& value) {
    if (value.empty()) {
      text_raw(out, key, "-");
    } else {
      text_field(out, key, value);
    }
  };
  client_field("request_id", r.request_id);
  client_field("method", r.method);
  client_field("path", r.path);
  client_field("user", r.user);
  client_field("workload", r.workload);
  client_field("backend", r.backend);
  text_raw(out, "status", r.status > 0 ? std::to_string(r.status) : "-");
  text_raw(out, "outcome", name(r.outcome));
  text_raw(out, "queue_ms", ms_text(r.queue));
  text_raw(out, "ttfb_ms", ms_text(r.ttfb));
  text_raw(out, "total_ms", ms_text(r.total));
  text_raw(out, "prompt_tokens", count_text(r.prompt_tokens));
  text_raw(out, "output_tokens", count_text(r.output_tokens));
  text_raw(out, "upstream_error", r.upstream_error ? name(*r.upstream_error) : "-");
  return out;
}

}  // namespace sluice::obs
