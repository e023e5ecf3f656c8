// Ollama's wire formats as sluice-sim speaks them: request parsing and validation (with
// Ollama's status codes and messages), model-name resolution, and the JSON objects of every
// response (native NDJSON chunks and final objects, OpenAI-compatible chunks and completions,
// errors). Pure: no sockets and no clock (times are parameters). Field order follows Ollama's
// Go structs so captured bytes look like Ollama's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::sim {

enum class Route { generate, chat, embed, embeddings, v1_chat, v1_completions, v1_embeddings };

std::string_view route_path(Route route);
bool is_openai(Route route);
bool is_embedding(Route route);

/// The models the simulator serves (catalog.cpp). Names are canonical ("mistral:latest").
class Catalog {
 public:
  explicit Catalog(std::vector<std::string> names);
  /// Resolves a name as Ollama does: case-insensitive, default tag "latest", optional
  /// "registry.ollama.ai/" and "library/" prefixes. Returns the canonical name.
  std::optional<std::string> resolve(std::string_view name) const;
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
};

/// Canonical form of a model name (lowercase, tag defaulted); empty if malformed.
std::string canonical_model_name(std::string_view name);

struct ApiError {
  int status = 400;
  std::string message;
};

/// A validated GPU request.
struct SimRequest {
  Route route = Route::generate;
  std::string model;     ///< as the client wrote it; echoed in responses, as Ollama does
  std::string resolved;  ///< canonical catalog name
  bool stream = true;
  std::size_t prompt_chars = 0;
  std::string seed_text;             ///< what output text and length are derived from
  std::optional<int> num_predict;    ///< > 0 when the client set it
  std::optional<std::int64_t> seed;  ///< options.seed / seed
  bool load_only = false;            ///< empty prompt/messages: answer done_reason "load"
  bool unload = false;               ///< ... and keep_alive 0: "unload"
  /// keep_alive when set: ns, kForever (< 0) for a negative value (sluice/sim duration.hpp)
  std::optional<std::int64_t> keep_alive_ns;
  bool include_usage = false;       ///< /v1 stream_options.include_usage
  std::vector<std::string> inputs;  ///< embeddings: one entry per input text
};

/// Parses and validates a request body for `route` against `catalog`.
std::variant<SimRequest, ApiError> parse_request(Route route, std::string_view body,
                                                 const Catalog& catalog);

/// Body of an error response: {"error":"..."} on native routes, the OpenAI error object on /v1.
std::string error_body(Route route, int status, std::string_view message);
std::string native_error_body(std::string_view message);
std::string openai_error_body(int status, std::string_view message);

/// RFC 3339 with nanoseconds and trailing zeros trimmed, UTC ("2025-06-01T12:00:00.41Z"), as
/// Go's time.Time marshals.
std::string rfc3339(std::chrono::system_clock::time_point t);
/// The same for `secs` seconds and `nanos` nanoseconds since the Unix epoch (any year).
std::string rfc3339_at(std::int64_t secs, std::int64_t nanos);
/// What Go prints for now.Add(math.MaxInt64): Ollama's expires_at of a model kept forever.
std::string rfc3339_forever(std::chrono::system_clock::time_point now);
/// HTTP date ("Sun, 01 Jun 2025 12:00:00 GMT").
std::string http_date(std::chrono::system_clock::time_point t);

/// Simulated measurements reported in a final object (all in simulated nanoseconds).
struct Metrics {
  std::int64_t total_ns = 0;
  std::int64_t load_ns = 0;
  int prompt_eval_count = 0;
  std::int64_t prompt_eval_ns = 0;
  int eval_count = 0;
  std::int64_t eval_ns = 0;
};

/// Everything a response builder needs to know about the request being answered.
struct ResponseContext {
  const SimRequest* request = nullptr;
  std::string openai_id;                          ///< "chatcmpl-N" / "cmpl-N"
  std::chrono::system_clock::time_point created;  ///< simulated wall time of the request
};

/// One streamed token: an NDJSON line (native) or an SSE event (/v1), newline(s) included.
std::string stream_chunk(const ResponseContext& ctx, std::string_view text,
                         std::chrono::system_clock::time_point at);
/// The end of a stream: the done object (native) or the finishing chunk, optional usage chunk
/// and "data: [DONE]" (/v1).
std::string stream_final(const ResponseContext& ctx, std::string_view done_reason,
                         const Metrics& metrics, std::chrono::system_clock::time_point at,
                         std::uint64_t context_seed);
/// A mid-stream error: {"error":...} line (native) or an SSE error event (/v1).
std::string stream_error(const ResponseContext& ctx, std::string_view message);
/// A whole non-streamed response body.
std::string complete_body(const ResponseContext& ctx, std::string_view text,
                          std::string_view done_reason, const Metrics& metrics,
                          std::chrono::system_clock::time_point at, std::uint64_t context_seed);
/// The immediate answer to an empty prompt (done_reason "load" or "unload").
std::string load_body(const ResponseContext& ctx, std::chrono::system_clock::time_point at);
/// An embeddings response; `vectors` holds one vector per input.
std::string embedding_body(const ResponseContext& ctx,
                           const std::vector<std::vector<float>>& vectors, const Metrics& metrics);

/// Content-Type of streamed and non-streamed answers on this route.
std::string_view stream_content_type(Route route);
std::string_view complete_content_type(Route route);

/// Cheap routes (catalog.cpp).
std::string tags_body(const Catalog& catalog);
/// One model resident on the GPU, for /api/ps.
struct PsEntry {
  std::string name;        ///< canonical name
  std::string expires_at;  ///< RFC 3339
};
std::string ps_body(const std::vector<PsEntry>& resident);
std::string show_body(std::string_view canonical);
std::string openai_models_body(const Catalog& catalog);
std::string openai_model_body(std::string_view name);
/// Parses /api/show's body ({"model":...} or the older {"name":...}).
/// POST /api/pull: the model it names ("model", or "name") and "stream" (default true). The
/// simulator cannot download anything: a pull of a model it serves succeeds at once, any other
/// fails as a registry miss does in Ollama.
struct PullRequest {
  std::string name;
  std::optional<std::string> resolved;  ///< the catalog's name, when it serves the model
  bool stream = true;
};
std::variant<PullRequest, ApiError> parse_pull_request(std::string_view body,
                                                       const Catalog& catalog);

std::variant<std::string, ApiError> parse_show_request(std::string_view body,
                                                       const Catalog& catalog);

inline constexpr std::string_view kOllamaVersion = "0.9.6";
inline constexpr std::string_view kBusyMessage =
    "server busy, please try again.  maximum pending requests exceeded";

}  // namespace sluice::sim
