// Requests the hardening tests (test_faults.cpp, test_limits.cpp) send through sluice to
// sluice-sim: /api/generate for model "mistral" with a given options.num_predict, tagged with an
// X-Request-Id so the test can find the request's access-log line.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "http_client.hpp"

namespace sluice::test {

/// /api/generate requests with one prompt and one default for "stream". Each test file makes
/// one, e.g. `const GenerateRequests generate{.prompt = "limits", .stream = false};`, and calls
/// `generate("id", num_predict, {headers...})`.
struct GenerateRequests {
  std::string prompt;
  bool stream = false;

  /// The JSON body.
  std::string body(int num_predict) const { return body(num_predict, stream); }
  std::string body(int num_predict, bool stream_response) const {
    return nlohmann::json{{"model", "mistral"},
                          {"prompt", prompt},
                          {"stream", stream_response},
                          {"options", {{"num_predict", num_predict}}}}
        .dump();
  }

  /// POST /api/generate with `headers` and then X-Request-Id: id.
  HttpRequest operator()(const std::string& id, int num_predict,
                         std::vector<Header> headers = {}) const {
    return (*this)(id, num_predict, std::move(headers), stream);
  }
  HttpRequest operator()(const std::string& id, int num_predict, std::vector<Header> headers,
                         bool stream_response) const {
    headers.push_back({"X-Request-Id", id});
    return post_json("/api/generate", body(num_predict, stream_response), std::move(headers));
  }
};

/// Milliseconds of wall time since `since`.
inline long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

}  // namespace sluice::test
