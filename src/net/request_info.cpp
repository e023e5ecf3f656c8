// Label headers, scheduled-body inspection and error bodies (see request_info.hpp).
#include "request_info.hpp"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "sluice/core/duration.hpp"
#include "sluice/core/splitmix.hpp"

namespace sluice::net {
namespace {

using nlohmann::json;

/// Deepest JSON nesting accepted in a scheduled body. Real requests nest 4-5 levels; the bound
/// keeps a hostile `[[[[...` from costing stack or time.
constexpr int kMaxBodyDepth = 64;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string header_error(std::string_view header, std::string_view why) {
  std::string message = "invalid ";
  message.append(header).append(" header: ").append(why);
  return message;
}

/// Checks that brackets outside strings nest at most kMaxBodyDepth deep.
bool depth_within_bound(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxBodyDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string field_error(std::string_view field, std::string_view expected) {
  std::string message = "invalid request body: field '";
  message.append(field).append("' must be ").append(expected);
  return message;
}

/// Text length of a prompt-like value: a string, or an array of strings / token ids (a token id
/// counts as 4 characters, the inverse of the cost model's chars-per-token), or arrays of those.
bool add_text_length(const json& value, std::int64_t& chars, int depth = 0) {
  if (value.is_null()) return true;
  if (value.is_string()) {
    chars += static_cast<std::int64_t>(value.get_ref<const json::string_t&>().size());
    return true;
  }
  if (value.is_number_integer() || value.is_number_unsigned()) {
    chars += 4;
    return true;
  }
  if (value.is_array() && depth < 2) {
    for (const json& item : value) {
      if (!add_text_length(item, chars, depth + 1)) return false;
    }
    return true;
  }
  return false;
}

/// A chat message's content: a string, null, or an array of parts whose "text" counts
/// (OpenAI's [{"type":"text","text":"..."}, {"type":"image_url",...}]).
bool add_content_length(const json& content, std::int64_t& chars) {
  if (content.is_null()) return true;
  if (content.is_string()) {
    chars += static_cast<std::int64_t>(content.get_ref<const json::string_t&>().size());
    return true;
  }
  if (!content.is_array()) return false;
  for (const json& part : content) {
    if (!part.is_object()) return false;
    auto text = part.find("text");
    if (text != part.end()) {
      if (!text->is_string()) return false;
      chars += static_cast<std::int64_t>(text->get_ref<const json::string_t&>().size());
    }
  }
  return true;
}

/// An optional positive token bound: absent/null/<= 0 mean "none" (Ollama: -1 = unlimited,
/// -2 = fill the context). Non-integers are an error.
bool read_token_bound(const json& object, const char* key, std::optional<std::int64_t>& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return true;
  if (it->is_number_unsigned()) {
    auto value = it->get<std::uint64_t>();  // JSON's 0 is unsigned too: 0 sets no bound
    if (value > 0) out = static_cast<std::int64_t>(std::min<std::uint64_t>(value, INT64_MAX));
    return true;
  }
  if (it->is_number_integer()) {
    auto value = it->get<std::int64_t>();
    if (value > 0) out = value;
    return true;
  }
  if (it->is_number_float()) {
    double value = it->get<double>();
    if (!std::isfinite(value) || value != std::floor(value)) return false;
    if (value > 0) out = static_cast<std::int64_t>(std::min(value, 9.0e18));
    return true;
  }
  return false;
}

}  // namespace

Dialect dialect_for(std::string_view path) {
  return starts_with(path, "/v1/") ? Dialect::openai : Dialect::ollama;
}

std::string error_body(Dialect dialect, std::string_view message, std::string_view openai_type) {
  json body;
  if (dialect == Dialect::openai) {
    body["error"] = {
        {"message", message}, {"type", openai_type}, {"param", nullptr}, {"code", nullptr}};
  } else {
    body["error"] = message;
  }
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string stream_error_chunk(bool sse, Dialect dialect, std::string_view message) {
  if (sse) {
    std::string chunk = "data: ";
    chunk += error_body(dialect, message, "api_error");
    chunk += "\n\n";
    return chunk;
  }
  std::string chunk = error_body(Dialect::ollama, message);
  chunk += '\n';
  return chunk;
}

std::string parse_label_headers(const config::HeaderNames& names, const LabelHeaderValues& values,
                                RequestLabels& out) {
  std::string why;
  auto plain_label = [&](const std::optional<std::string_view>& value, std::string_view header,
                         std::string_view label) -> bool {
    if (!value) return true;
    if (!core::valid_label_value(*value, &why)) {
      why = header_error(header, why);
      return false;
    }
    out.labels.set(label, *value);
    return true;
  };

  if (!plain_label(values.user, names.user, "user")) return why;
  if (!plain_label(values.tier, names.tier, "tier")) return why;
  if (values.priority) {
    auto priority = core::parse_priority(*values.priority, &why);
    if (!priority) return header_error(names.priority, why);
    out.priority = *priority;
    out.labels.set("priority", *values.priority);
  }
  if (values.workload) {
    if (!plain_label(values.workload, names.workload, "workload")) return why;
    out.workload = std::string(*values.workload);
  }
  if (values.tokens) {
    auto tokens = core::parse_tokens(*values.tokens, &why);
    if (!tokens) return header_error(names.tokens, why);
    out.tokens = *tokens;
    out.labels.set("tokens", *values.tokens);
  }
  if (values.queue_timeout) {
    auto timeout = core::parse_duration(*values.queue_timeout, &why);
    if (!timeout) return header_error(names.queue_timeout, why);
    out.queue_timeout = *timeout;
  }
  if (values.request_id) {
    if (!core::valid_label_value(*values.request_id, &why))
      return header_error(names.request_id, why);
    out.request_id = std::string(*values.request_id);
  }
  return {};
}

std::string inspect_body(std::string_view path, std::string_view body, BodyInfo& out) {
  const Dialect dialect = dialect_for(path);
  out = BodyInfo{};
  out.stream = dialect == Dialect::ollama;
  out.embedding = path.find("embed") != std::string_view::npos;

  if (!depth_within_bound(body)) return "invalid request body: JSON nested too deeply";
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return "invalid request body: not valid JSON";
  if (!doc.is_object()) return "invalid request body: must be a JSON object";

  if (auto it = doc.find("model"); it != doc.end() && !it->is_null()) {
    if (!it->is_string()) return field_error("model", "a string");
    out.model = it->get<std::string>();
  }
  if (auto it = doc.find("stream"); it != doc.end() && !it->is_null()) {
    if (!it->is_boolean()) return field_error("stream", "a boolean");
    out.stream = it->get<bool>();
  }
  for (const char* key : {"prompt", "system", "suffix", "input"}) {
    auto it = doc.find(key);
    if (it != doc.end() && !add_text_length(*it, out.prompt_chars)) {
      return field_error(key, "a string or an array of strings");
    }
  }
  if (auto it = doc.find("messages"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return field_error("messages", "an array");
    for (const json& message : *it) {
      if (!message.is_object()) return field_error("messages", "an array of objects");
      auto content = message.find("content");
      if (content != message.end() && !add_content_length(*content, out.prompt_chars)) {
        return field_error("messages[].content", "a string or an array of content parts");
      }
    }
  }
  if (auto it = doc.find("options"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) return field_error("options", "an object");
    if (!read_token_bound(*it, "num_predict", out.num_predict))
      return field_error("options.num_predict", "an integer");
  }
  if (!read_token_bound(doc, "max_tokens", out.num_predict))
    return field_error("max_tokens", "an integer");
  if (!read_token_bound(doc, "max_completion_tokens", out.num_predict))
    return field_error("max_completion_tokens", "an integer");
  return {};
}

std::string generate_request_id() {
  // splitmix64 over a per-thread counter seeded once from the OS: unique within the process,
  // unpredictable enough across processes; not for anything secret.
  thread_local std::uint64_t state = [] {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = core::splitmix64(state);
    for (int i = 15; i >= 0; --i, v >>= 4)
      text[static_cast<std::size_t>(half * 16 + i)] = kHex[v & 0xf];
  }
  return text;  // (not snprintf: this runs for every request and showed up in profiles)
}

}  // namespace sluice::net
