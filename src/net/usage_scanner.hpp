// Reads token counts out of a response body while it is relayed, without holding the body.
//
// The body is split on '\n' (never on chunk boundaries: a line may arrive in many chunks and a
// chunk may hold many lines). Only lines that can carry counts are parsed as JSON: Ollama's final
// object (`"done":true` with prompt_eval_count / eval_count; /api/embed's prompt_eval_count) and
// OpenAI's `usage` object (prompt_tokens / completion_tokens), in NDJSON, in SSE `data:` lines or
// in a single JSON body (which ends without '\n': finish() handles the last line).
//
// Bounds (util::LineSplitter): a line that is completely inside one fed chunk is inspected in
// place; only a line that spans chunks is copied, into at most max_line_bytes. A longer line is
// skipped (its counts stay unknown). Memory is therefore O(max_line_bytes) per response at worst,
// O(1) for the usual short NDJSON lines.
//
// Later counts replace earlier ones; -1 means "not seen".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/core/fleet.hpp"
#include "sluice/util/line_splitter.hpp"

namespace sluice::net {

class UsageScanner {
 public:
  static constexpr std::size_t kDefaultMaxLineBytes = 1024 * 1024;

  explicit UsageScanner(std::size_t max_line_bytes = kDefaultMaxLineBytes)
      : lines_(max_line_bytes) {}

  /// Feeds the next piece of the body.
  void feed(std::string_view bytes);
  /// The body ended: inspects a last line that had no '\n'.
  void finish();

  std::int64_t prompt_tokens() const { return prompt_tokens_; }
  std::int64_t output_tokens() const { return output_tokens_; }
  /// Ollama's final object (`"done":true`) was seen.
  bool saw_done() const { return saw_done_; }
  /// A line was an error object ({"error": ...}).
  bool saw_error() const { return saw_error_; }
  /// The durations of Ollama's final object (load_duration, prompt_eval_duration, eval_count,
  /// eval_duration; ns), for placement and the adaptive limit. OpenAI-compatible answers carry
  /// no durations: only eval_count, from usage.completion_tokens.
  const core::Timings& timings() const { return timings_; }

 private:
  void inspect_line(std::string_view line);

  util::LineSplitter lines_;
  std::int64_t prompt_tokens_ = -1;
  std::int64_t output_tokens_ = -1;
  bool saw_done_ = false;
  bool saw_error_ = false;
  core::Timings timings_;
};

}  // namespace sluice::net
