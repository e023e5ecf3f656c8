// What sluice learns about a request before admitting it, and the error bodies it answers with.
// Pure (no Asio, no Beast, no clock) so every rule here is unit-tested directly.
//
//  * Dialect: a path under /v1/ speaks OpenAI (error object {"error":{"message",...}}, SSE
//    streams); every other path speaks Ollama's native API ({"error":"..."}, NDJSON streams).
//  * Label headers (names from config.headers): every value is validated; the first invalid one
//    gives an error message that names the header as configured. Nothing is silently ignored.
//  * Scheduled bodies: parsed as JSON (bounded by the caller) for model, prompt length,
//    num_predict / max_tokens and stream. Wrong types are errors naming the field; unknown
//    fields are the upstream's business. The body itself is forwarded unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/config/config.hpp"
#include "sluice/core/labels.hpp"
#include "sluice/core/time.hpp"

namespace sluice::net {

enum class Dialect : std::uint8_t { ollama, openai };

/// OpenAI dialect for paths starting with "/v1/", else Ollama's.
Dialect dialect_for(std::string_view path);

/// The JSON error body of `dialect`: {"error":"message"} or
/// {"error":{"message":"...","type":"<type>","param":null,"code":null}}.
std::string error_body(Dialect dialect, std::string_view message,
                       std::string_view openai_type = "invalid_request_error");

/// A mid-stream error, as the last piece of a streamed body: one NDJSON line
/// `{"error":"message"}\n`, or for an SSE stream the event `data: {"error":{...}}\n\n`.
std::string stream_error_chunk(bool sse, Dialect dialect, std::string_view message);

/// Raw values of the label headers, nullopt when absent.
struct LabelHeaderValues {
  std::optional<std::string_view> user, tier, priority, workload, tokens, queue_timeout, request_id;
};

/// The validated result of the label headers.
struct RequestLabels {
  core::Labels labels;                          ///< user, tier, priority, workload, tokens
  std::optional<double> priority;               ///< X-Priority
  std::optional<std::int64_t> tokens;           ///< X-Tokens
  std::optional<core::Duration> queue_timeout;  ///< X-Queue-Timeout
  std::optional<std::string> workload;          ///< X-Workload (existence checked by the caller)
  std::string request_id;                       ///< X-Request-Id, "" when absent
};

/// Validates the label headers. Returns "" on success, else the client-facing message naming
/// the offending header, e.g. "invalid X-Priority header: must be a number > 0 ...".
std::string parse_label_headers(const config::HeaderNames& names, const LabelHeaderValues& values,
                                RequestLabels& out);

/// What the scheduler needs from a scheduled request's JSON body.
struct BodyInfo {
  std::string model;                        ///< "" when absent
  std::int64_t prompt_chars = 0;            ///< prompt + system + messages + input text
  std::optional<std::int64_t> num_predict;  ///< options.num_predict or max_tokens when > 0
  bool stream = true;                       ///< as requested (dialect default when absent)
  bool embedding = false;                   ///< an embeddings route: no output tokens
};

/// Parses `body` of a request to `path`. Returns "" on success, else a client-facing message
/// ("request body is not valid JSON", "field 'model' must be a string", ...).
std::string inspect_body(std::string_view path, std::string_view body, BodyInfo& out);

/// A fresh request id: 32 lowercase hex characters, unique within the process (and random
/// across processes).
std::string generate_request_id();

}  // namespace sluice::net
