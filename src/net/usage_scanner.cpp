// Token counts from relayed response bodies (see usage_scanner.hpp).
#include "usage_scanner.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace sluice::net {
namespace {

using nlohmann::json;

bool contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

std::int64_t count_field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return -1;
  if (it->is_number_unsigned() || it->is_number_integer()) {
    auto value = it->get<std::int64_t>();
    return value >= 0 ? value : -1;
  }
  return -1;
}

}  // namespace

void UsageScanner::feed(std::string_view bytes) {
  lines_.feed(
      bytes, [this](std::string_view line) { inspect_line(line); }, [] {});
}

void UsageScanner::finish() {
  lines_.finish([this](std::string_view line) { inspect_line(line); });
}

void UsageScanner::inspect_line(std::string_view line) {
  if (line.size() > 5 && line.substr(0, 5) == "data:") {
    line.remove_prefix(5);  // SSE event line
  }
  // Cheap filters first: most lines are token chunks that carry no counts.
  // (A quote inside a JSON string is escaped, so `"done":true` cannot match inside a value.)
  const bool native = contains(line, "\"done\":true") || contains(line, "eval_count\"");
  const bool openai = contains(line, "\"usage\"");
  const bool error = contains(line, "\"error\"");
  if (!native && !openai && !error) return;

  json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return;
  if (doc.contains("error")) saw_error_ = true;
  if (native) {
    // Not doc.value("done", false): that throws when an upstream sends a non-boolean "done".
    auto done_field = doc.find("done");
    const bool done =
        done_field != doc.end() && done_field->is_boolean() && done_field->get<bool>();
    if (done) saw_done_ = true;
    std::int64_t prompt = count_field(doc, "prompt_eval_count");
    std::int64_t output = count_field(doc, "eval_count");
    // Ollama omits zero-valued fields from the final object (e.g. a fully cached prompt).
    if (done) {
      if (prompt < 0) prompt = 0;
      if (output < 0) output = 0;
    }
    if (prompt >= 0) prompt_tokens_ = prompt;
    if (output >= 0) output_tokens_ = output;
    if (done) {
      const std::int64_t load = count_field(doc, "load_duration");
      const std::int64_t eval = count_field(doc, "eval_duration");
      const std::int64_t prompt_eval = count_field(doc, "prompt_eval_duration");
      timings_.load_duration = std::chrono::nanoseconds(std::max<std::int64_t>(load, 0));
      timings_.eval_count = std::max<std::int64_t>(output, 0);
      if (eval > 0) timings_.eval_duration = std::chrono::nanoseconds(eval);
      // Omitted when zero (a fully cached prompt).
      timings_.prompt_eval_duration =
          std::chrono::nanoseconds(std::max<std::int64_t>(prompt_eval, 0));
    }
  }
  if (openai) {
    auto usage = doc.find("usage");
    if (usage != doc.end() && usage->is_object()) {
      std::int64_t prompt = count_field(*usage, "prompt_tokens");
      std::int64_t output = count_field(*usage, "completion_tokens");
      if (prompt >= 0) {
        prompt_tokens_ = prompt;
        output_tokens_ = output >= 0 ? output : 0;  // embeddings report no completion tokens
        timings_.eval_count = output_tokens_;       // without durations (the adaptive limit's)
      }
    }
  }
}

}  // namespace sluice::net
