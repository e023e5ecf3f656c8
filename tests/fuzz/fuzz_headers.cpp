// Fuzzes what sluice reads from a client before admitting a request: the label headers and the
// JSON body of a scheduled route. The input is split on '\n' into the seven header values and
// the body. Promises checked: no crash or UB; an accepted request has only valid label values and
// in-range numbers; a refused one gets a message that names the header or the body problem.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "request_info.hpp"

using namespace sluice;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() < 7) {
    std::size_t nl = input.find('\n');
    if (nl == std::string_view::npos) break;
    parts.push_back(input.substr(0, nl));
    input.remove_prefix(nl + 1);
  }
  auto part = [&](std::size_t i) -> std::optional<std::string_view> {
    if (i >= parts.size() || parts[i] == "-") return std::nullopt;  // "-" = header absent
    return parts[i];
  };
  config::HeaderNames names;
  net::LabelHeaderValues values{part(0), part(1), part(2), part(3), part(4), part(5), part(6)};
  net::RequestLabels labels;
  std::string error = net::parse_label_headers(names, values, labels);
  if (error.empty()) {
    for (const auto& [name, value] : labels.labels) {
      if (!core::valid_label_value(value)) std::abort();
    }
    if (labels.priority && !(std::isfinite(*labels.priority) && *labels.priority > 0 &&
                             *labels.priority <= core::kMaxPriority)) {
      std::abort();
    }
    if (labels.tokens && (*labels.tokens < 1 || *labels.tokens > core::kMaxTokens)) std::abort();
    if (labels.queue_timeout && labels.queue_timeout->count() < 0) std::abort();
  } else if (error.find("X-") == std::string::npos) {
    std::abort();  // the message must name the header
  }

  // The rest is a body, tried on every scheduled route shape.
  for (std::string_view path : {"/api/generate", "/api/chat", "/api/embed", "/v1/chat/completions",
                                "/v1/completions", "/v1/embeddings"}) {
    net::BodyInfo info;
    std::string body_error = net::inspect_body(path, input, info);
    if (body_error.empty()) {
      if (info.prompt_chars < 0) std::abort();
      if (info.num_predict && *info.num_predict <= 0) std::abort();
    }
  }
  // Error bodies built from arbitrary text stay valid JSON-ish (no crash on any bytes).
  (void)net::error_body(net::Dialect::openai, input);
  (void)net::stream_error_chunk(true, net::Dialect::ollama, input);
  return 0;
}
