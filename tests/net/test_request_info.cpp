// Label headers, scheduled-body inspection, error bodies and token accounting of the proxy
// (src/net/request_info.*, src/net/usage_scanner.*): pure functions, no sockets.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "request_info.hpp"
#include "usage_scanner.hpp"

using namespace sluice;
using namespace sluice::net;
using nlohmann::json;

namespace {

std::string labels_error(LabelHeaderValues values, RequestLabels* out = nullptr) {
  RequestLabels labels;
  std::string error = parse_label_headers(config::HeaderNames{}, values, labels);
  if (out) *out = labels;
  return error;
}

}  // namespace

TEST_CASE("dialect follows the path and error bodies follow the dialect") {
  CHECK(dialect_for("/v1/chat/completions") == Dialect::openai);
  CHECK(dialect_for("/api/chat") == Dialect::ollama);
  CHECK(dialect_for("/v1") == Dialect::ollama);

  json native = json::parse(error_body(Dialect::ollama, "bad \"x\""));
  CHECK(native == json{{"error", "bad \"x\""}});
  json openai = json::parse(error_body(Dialect::openai, "nope"));
  CHECK(openai["error"]["message"] == "nope");
  CHECK(openai["error"]["type"] == "invalid_request_error");
  CHECK(openai["error"]["param"].is_null());
  CHECK(openai["error"]["code"].is_null());
  // Invalid UTF-8 in a message (it may echo a header) still gives valid JSON.
  CHECK_NOTHROW(json::parse(error_body(Dialect::ollama, "\xff\xfe")));
}

TEST_CASE("mid-stream error chunks: one NDJSON line, or one SSE event") {
  std::string line = stream_error_chunk(false, Dialect::ollama, "upstream lost");
  CHECK(line == "{\"error\":\"upstream lost\"}\n");
  std::string event = stream_error_chunk(true, Dialect::openai, "upstream lost");
  REQUIRE(event.substr(0, 6) == "data: ");
  REQUIRE(event.substr(event.size() - 2) == "\n\n");
  json body = json::parse(event.substr(6, event.size() - 8));
  CHECK(body["error"]["message"] == "upstream lost");
}

TEST_CASE("label headers: valid values become labels and typed overrides") {
  RequestLabels labels;
  CHECK(labels_error({.user = "alice",
                      .tier = "paid",
                      .priority = "8",
                      .workload = "batch",
                      .tokens = "1200",
                      .queue_timeout = "250ms",
                      .request_id = "req-1"},
                     &labels) == "");
  CHECK(labels.labels.value_or_empty("user") == "alice");
  CHECK(labels.labels.value_or_empty("tier") == "paid");
  CHECK(labels.labels.value_or_empty("priority") == "8");
  CHECK(labels.priority == doctest::Approx(8.0));
  CHECK(labels.tokens == 1200);
  CHECK(labels.queue_timeout == std::chrono::milliseconds(250));
  CHECK(labels.workload == "batch");
  CHECK(labels.request_id == "req-1");

  RequestLabels none;
  CHECK(labels_error({}, &none) == "");
  CHECK(none.labels.empty());
  CHECK_FALSE(none.priority);
  CHECK(none.request_id.empty());
}

TEST_CASE("label headers: every invalid value is an error naming its header") {
  CHECK(labels_error({.priority = "abc"}).find("X-Priority") != std::string::npos);
  CHECK(labels_error({.priority = "-3"}).find("X-Priority") != std::string::npos);
  CHECK(labels_error({.priority = "1e999"}).find("X-Priority") != std::string::npos);
  CHECK(labels_error({.priority = "0"}).find("X-Priority") != std::string::npos);
  CHECK(labels_error({.queue_timeout = "soon"}).find("X-Queue-Timeout") != std::string::npos);
  CHECK(labels_error({.tokens = "0"}).find("X-Tokens") != std::string::npos);
  CHECK(labels_error({.tokens = "12abc"}).find("X-Tokens") != std::string::npos);
  CHECK(labels_error({.user = ""}).find("X-User-Id") != std::string::npos);
  CHECK(labels_error({.user = std::string(300, 'a')}).find("X-User-Id") != std::string::npos);
  CHECK(labels_error({.tier = "a\tb"}).find("X-Tier") != std::string::npos);
  CHECK(labels_error({.request_id = ""}).find("X-Request-Id") != std::string::npos);

  // Configured names are the ones reported.
  config::HeaderNames names;
  names.priority = "X-Urgency";
  RequestLabels labels;
  std::string error = parse_label_headers(names, {.priority = "high"}, labels);
  CHECK(error.find("X-Urgency") != std::string::npos);
  CHECK(error.rfind("invalid X-Urgency header: ", 0) == 0);
}

TEST_CASE("scheduled bodies: model, prompt length, num_predict, stream") {
  BodyInfo info;
  REQUIRE(inspect_body("/api/generate",
                       R"({"model":"mistral","prompt":"12345678","system":"abcd",)"
                       R"("options":{"num_predict":64}})",
                       info) == "");
  CHECK(info.model == "mistral");
  CHECK(info.prompt_chars == 12);
  CHECK(info.num_predict == 64);
  CHECK(info.stream);  // native default
  CHECK_FALSE(info.embedding);

  REQUIRE(inspect_body("/api/chat",
                       R"({"model":"m","stream":false,"messages":[{"role":"user","content":"hey"},)"
                       R"({"role":"assistant","content":null,"tool_calls":[]}]})",
                       info) == "");
  CHECK(info.prompt_chars == 3);
  CHECK_FALSE(info.stream);
  CHECK_FALSE(info.num_predict);

  // OpenAI: content parts, max_tokens, stream defaults to false.
  REQUIRE(
      inspect_body("/v1/chat/completions",
                   R"({"model":"m","max_tokens":10,"messages":[{"role":"user","content":)"
                   R"([{"type":"text","text":"abcdef"},{"type":"image_url","image_url":{}}]}]})",
                   info) == "");
  CHECK(info.prompt_chars == 6);
  CHECK(info.num_predict == 10);
  CHECK_FALSE(info.stream);

  // Unlimited generation (-1) is no bound.
  REQUIRE(inspect_body("/api/generate", R"({"model":"m","options":{"num_predict":-1}})", info) ==
          "");
  CHECK_FALSE(info.num_predict);

  // Embeddings: input as a string or a list; token ids count as 4 characters each.
  REQUIRE(inspect_body("/api/embed", R"({"model":"e","input":["ab","cde"]})", info) == "");
  CHECK(info.embedding);
  CHECK(info.prompt_chars == 5);
  REQUIRE(inspect_body("/v1/embeddings", R"({"model":"e","input":[[1,2,3]]})", info) == "");
  CHECK(info.prompt_chars == 12);
}

TEST_CASE("scheduled bodies: malformed or wrongly typed bodies are errors naming the field") {
  BodyInfo info;
  CHECK(inspect_body("/api/generate", "not json", info).find("not valid JSON") !=
        std::string::npos);
  CHECK(inspect_body("/api/generate", "", info).find("not valid JSON") != std::string::npos);
  CHECK(inspect_body("/api/generate", "[1,2]", info).find("JSON object") != std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"model":5})", info).find("'model'") != std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"stream":"yes"})", info).find("'stream'") !=
        std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"prompt":{"a":1}})", info).find("'prompt'") !=
        std::string::npos);
  CHECK(inspect_body("/api/chat", R"({"messages":"hi"})", info).find("'messages'") !=
        std::string::npos);
  CHECK(inspect_body("/api/chat", R"({"messages":[{"content":5}]})", info)
            .find("'messages[].content'") != std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"options":[]})", info).find("'options'") !=
        std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"options":{"num_predict":"many"}})", info)
            .find("'options.num_predict'") != std::string::npos);
  CHECK(inspect_body("/api/generate", R"({"options":{"num_predict":1.5}})", info)
            .find("'options.num_predict'") != std::string::npos);
  CHECK(inspect_body("/v1/completions", R"({"max_tokens":"x"})", info).find("'max_tokens'") !=
        std::string::npos);
  // A zero bound means "no bound", whichever JSON number type carries it (found by fuzz_headers).
  for (const char* body : {R"({"max_tokens":0})", R"({"max_completion_tokens":0})",
                           R"({"max_tokens":-3})", R"({"max_tokens":0.0})"}) {
    BodyInfo zero;
    CAPTURE(body);
    CHECK(inspect_body("/v1/completions", body, zero) == "");
    CHECK_FALSE(zero.num_predict.has_value());
  }
  BodyInfo native_zero;
  CHECK(inspect_body("/api/generate", R"({"options":{"num_predict":0}})", native_zero) == "");
  CHECK_FALSE(native_zero.num_predict.has_value());
  // Hostile nesting is refused before parsing.
  std::string deep(10000, '[');
  CHECK(inspect_body("/api/generate", deep, info).find("nested too deeply") != std::string::npos);
  // ...but brackets inside strings do not count.
  CHECK(inspect_body("/api/generate", R"({"prompt":")" + std::string(200, '[') + R"("})", info) ==
        "");
}

TEST_CASE("request ids: 32 hex characters, unique") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = generate_request_id();
    CHECK(id.size() == 32);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("usage scanner: Ollama's final NDJSON object, split anywhere") {
  const std::string stream =
      R"({"model":"m","response":"Hi","done":false})"
      "\n"
      R"({"model":"m","response":" there \"done\":true","done":false})"
      "\n"
      R"({"model":"m","response":"","done":true,"done_reason":"stop","context":[1,2,3],)"
      R"("prompt_eval_count":26,"prompt_eval_duration":5,"eval_count":298,"eval_duration":9})"
      "\n";
  // Every split point of the stream into two pieces, and byte-by-byte.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    UsageScanner scanner;
    scanner.feed(std::string_view(stream).substr(0, cut));
    scanner.feed(std::string_view(stream).substr(cut));
    scanner.finish();
    CHECK(scanner.saw_done());
    CHECK(scanner.prompt_tokens() == 26);
    CHECK(scanner.output_tokens() == 298);
    CHECK(scanner.timings().eval_count == 298);
    CHECK(scanner.timings().eval_duration == std::chrono::nanoseconds(9));
    CHECK(scanner.timings().load_duration == std::chrono::nanoseconds(0));  // omitted: zero
  }
  UsageScanner loaded;
  loaded.feed(R"({"done":true,"load_duration":3000000000,"eval_count":4,"eval_duration":80})");
  loaded.finish();
  CHECK(loaded.timings().load_duration == std::chrono::seconds(3));
  UsageScanner bytewise;
  for (char c : stream)
    bytewise.feed(std::string_view(&c, 1));
  CHECK(bytewise.output_tokens() == 298);

  // Token chunks alone carry no counts.
  UsageScanner partial;
  partial.feed(stream.substr(0, stream.find('\n') + 1));
  CHECK_FALSE(partial.saw_done());
  CHECK(partial.prompt_tokens() == -1);
  CHECK(partial.output_tokens() == -1);
}

TEST_CASE("usage scanner: zero counts omitted by Ollama read as 0; errors are noticed") {
  UsageScanner scanner;
  scanner.feed("{\"done\":true,\"eval_count\":5}\n");
  CHECK(scanner.prompt_tokens() == 0);
  CHECK(scanner.output_tokens() == 5);

  UsageScanner error;
  error.feed("{\"response\":\"a\",\"done\":false}\n{\"error\":\"boom\"}\n");
  CHECK(error.saw_error());
  CHECK_FALSE(error.saw_done());
}

TEST_CASE("usage scanner: a non-streamed JSON body without a final newline") {
  UsageScanner scanner;
  scanner.feed(R"({"model":"m","response":"x","done":true,"prompt_eval_count":3,)");
  scanner.feed(R"("eval_count":4})");
  CHECK(scanner.output_tokens() == -1);  // not yet: the line has not ended
  scanner.finish();
  CHECK(scanner.prompt_tokens() == 3);
  CHECK(scanner.output_tokens() == 4);

  UsageScanner embed;
  embed.feed(R"({"model":"e","embeddings":[[0.1,0.2]],"prompt_eval_count":7})");
  embed.finish();
  CHECK(embed.prompt_tokens() == 7);
}

TEST_CASE("usage scanner: OpenAI usage in SSE and in JSON") {
  UsageScanner sse;
  sse.feed("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
  sse.feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":");
  sse.feed("22,\"total_tokens\":33}}\n\ndata: [DONE]\n\n");
  sse.finish();
  CHECK(sse.prompt_tokens() == 11);
  CHECK(sse.output_tokens() == 22);

  UsageScanner embeddings;
  embeddings.feed(R"({"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}})");
  embeddings.finish();
  CHECK(embeddings.prompt_tokens() == 4);
  CHECK(embeddings.output_tokens() == 0);
}

TEST_CASE("usage scanner: lines beyond the bound are skipped, not buffered") {
  UsageScanner scanner(64);
  std::string big = R"({"done":true,"context":[)" + std::string(100, '1') +
                    R"(],"prompt_eval_count":1,"eval_count":2})";
  scanner.feed(big.substr(0, 40));
  scanner.feed(big.substr(40));
  scanner.feed("\n");
  CHECK(scanner.output_tokens() == -1);
  // The next line is read normally.
  scanner.feed("{\"done\":true,\"eval_count\":9}\n");
  CHECK(scanner.output_tokens() == 9);
}

TEST_CASE("usage scanner: wrongly typed fields from an upstream are ignored, never thrown") {
  // Found by tests/fuzz/fuzz_stream: a string "done" used to make nlohmann::json::value() throw
  // out of the relay.
  UsageScanner scanner;
  CHECK_NOTHROW(scanner.feed(
      "{\"done\":\"a\",\"eval_count\":\"x\",\"prompt_eval_count\":-4}\n{\"done\":true,"
      "\"eval_count\":1.5}\n{\"usage\":\"none\"}\n{\"usage\":{\"prompt_tokens\":\"7\"}}\n"));
  scanner.finish();
  CHECK(scanner.saw_done());
  CHECK(scanner.output_tokens() == 0);  // 1.5 is not a count; the final object implies 0
  CHECK(scanner.prompt_tokens() == 0);
}
