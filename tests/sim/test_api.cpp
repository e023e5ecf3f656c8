// Unit tests of sluice-sim's Ollama request validation, response shapes, faults and records.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "api.hpp"
#include "faults.hpp"
#include "stats.hpp"

using namespace sluice::sim;
using nlohmann::json;

namespace {

Catalog catalog() {
  return Catalog({"mistral:latest", "llama3.2"});
}

ApiError error_of(Route route, std::string_view body) {
  auto r = parse_request(route, body, catalog());
  REQUIRE(std::holds_alternative<ApiError>(r));
  return std::get<ApiError>(r);
}

SimRequest ok(Route route, std::string_view body) {
  auto r = parse_request(route, body, catalog());
  if (auto* e = std::get_if<ApiError>(&r)) FAIL("unexpected error: " << e->message);
  return std::get<SimRequest>(r);
}

}  // namespace

TEST_CASE("model names resolve as Ollama resolves them") {
  const auto c = catalog();
  CHECK(c.resolve("mistral") == "mistral:latest");
  CHECK(c.resolve("Mistral:Latest") == "mistral:latest");
  CHECK(c.resolve("library/mistral") == "mistral:latest");
  CHECK(c.resolve("registry.ollama.ai/library/mistral:latest") == "mistral:latest");
  CHECK(c.resolve("llama3.2:latest") == "llama3.2:latest");
  CHECK_FALSE(c.resolve("mistral:7b"));
  CHECK_FALSE(c.resolve("mixtral"));
  CHECK_FALSE(c.resolve(""));
}

TEST_CASE("request errors carry Ollama's status and message") {
  CHECK(error_of(Route::generate, "").message == "missing request body");
  auto bad_json = error_of(Route::generate, "{\"model\":");
  CHECK(bad_json.status == 400);
  CHECK(bad_json.message.find("invalid JSON") != std::string::npos);
  CHECK(error_of(Route::generate, "[1,2]").message.find("JSON object") != std::string::npos);
  auto no_model = error_of(Route::generate, R"({"prompt":"x"})");
  CHECK(no_model.status == 400);
  CHECK(no_model.message == "model is required");
  auto unknown = error_of(Route::chat, R"({"model":"nope","messages":[]})");
  CHECK(unknown.status == 404);
  CHECK(unknown.message == "model 'nope' not found");
  CHECK(error_of(Route::generate, R"({"model":"mistral","stream":"yes"})").message.find("stream") !=
        std::string::npos);
  CHECK(error_of(Route::generate, R"({"model":"mistral","prompt":5})").message.find("prompt") !=
        std::string::npos);
  CHECK(error_of(Route::generate, R"({"model":"mistral","options":{"num_predict":"ten"}})")
            .message.find("num_predict") != std::string::npos);
  CHECK(error_of(Route::v1_chat, R"({"model":"mistral","messages":[]})").message ==
        "[] is too short - 'messages'");
  CHECK(error_of(Route::v1_embeddings, R"({"model":"mistral"})").message == "invalid input");
  CHECK(error_of(Route::embed, R"({"model":"mistral","input":[1]})").message.find("input") !=
        std::string::npos);
}

TEST_CASE("requests parse into what the GPU model needs") {
  auto g = ok(
      Route::generate,
      R"({"model":"mistral","prompt":"abcdefgh","system":"xy","options":{"num_predict":12.0,"seed":3}})");
  CHECK(g.stream);  // native default
  CHECK(g.resolved == "mistral:latest");
  CHECK(g.model == "mistral");
  CHECK(g.prompt_chars == 10);
  CHECK(g.num_predict == 12);
  CHECK(g.seed == 3);
  CHECK_FALSE(g.load_only);

  CHECK_FALSE(
      ok(Route::generate, R"({"model":"mistral","prompt":"x","options":{"num_predict":-1}})")
          .num_predict);
  auto load = ok(Route::generate, R"({"model":"mistral","keep_alive":0})");
  CHECK(load.load_only);
  CHECK(load.unload);

  auto v1 = ok(
      Route::v1_chat,
      R"({"model":"mistral","messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}],"max_tokens":7,"stream_options":{"include_usage":true}})");
  CHECK_FALSE(v1.stream);  // /v1 default
  CHECK(v1.num_predict == 7);
  CHECK(v1.include_usage);
  CHECK(v1.prompt_chars == 5);

  auto e = ok(Route::embed, R"({"model":"mistral","input":["ab","cd"]})");
  CHECK(e.inputs.size() == 2);
  CHECK(ok(Route::embeddings, R"({"model":"mistral","prompt":""})").load_only);
  CHECK(ok(Route::v1_embeddings, R"({"model":"mistral","input":""})").inputs.size() == 1);
}

TEST_CASE("response objects have Ollama's shapes") {
  auto req = ok(Route::generate, R"({"model":"mistral","prompt":"hi"})");
  ResponseContext ctx{&req, "", {}};
  const auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1748779200)) +
                  std::chrono::milliseconds(410);
  const auto line = stream_chunk(ctx, " The", at);
  REQUIRE(line.back() == '\n');
  CHECK(
      line ==
      R"({"model":"mistral","created_at":"2025-06-01T12:00:00.41Z","response":" The","done":false})"
      "\n");
  Metrics m{1000, 0, 3, 200, 5, 800};
  auto fin = json::parse(stream_final(ctx, "stop", m, at, 9));
  CHECK(fin["done"] == true);
  CHECK(fin["done_reason"] == "stop");
  CHECK(fin["eval_count"] == 5);
  CHECK(fin["prompt_eval_count"] == 3);
  CHECK(fin["total_duration"] == 1000);
  CHECK_FALSE(fin.contains("load_duration"));  // zero fields are omitted
  CHECK(fin["context"].size() == 8);

  auto chat = ok(Route::chat, R"({"model":"mistral","messages":[{"role":"user","content":"hi"}]})");
  ResponseContext cctx{&chat, "", {}};
  auto c = json::parse(stream_chunk(cctx, "x", at));
  CHECK(c["message"]["role"] == "assistant");
  CHECK(c["message"]["content"] == "x");
  CHECK_FALSE(json::parse(stream_final(cctx, "stop", m, at, 1)).contains("context"));

  auto v1 = ok(
      Route::v1_chat,
      R"({"model":"mistral","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}})");
  ResponseContext vctx{&v1, "chatcmpl-1", at};
  const auto ev = stream_chunk(vctx, "x", at);
  CHECK(ev.rfind("data: ", 0) == 0);
  CHECK(ev.substr(ev.size() - 2) == "\n\n");
  CHECK(json::parse(ev.substr(6))["choices"][0]["delta"]["content"] == "x");
  const auto end = stream_final(vctx, "length", m, at, 1);
  CHECK(end.find("\"finish_reason\":\"length\"") != std::string::npos);
  CHECK(end.find("\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}") !=
        std::string::npos);
  CHECK(end.substr(end.size() - 14) == "data: [DONE]\n\n");

  auto err = json::parse(openai_error_body(404, "model 'x' not found"));
  CHECK(err["error"]["type"] == "not_found_error");
  CHECK(err["error"]["param"].is_null());
  CHECK(json::parse(openai_error_body(400, "bad"))["error"]["type"] == "invalid_request_error");
  CHECK(json::parse(openai_error_body(503, "busy"))["error"]["type"] == "api_error");
}

TEST_CASE("timestamps are formatted as Go formats them") {
  using namespace std::chrono;
  const auto base = system_clock::time_point(seconds(1748779200));
  CHECK(rfc3339(base) == "2025-06-01T12:00:00Z");
  CHECK(rfc3339(base + nanoseconds(123456789)) == "2025-06-01T12:00:00.123456789Z");
  CHECK(rfc3339(base + microseconds(500)) == "2025-06-01T12:00:00.0005Z");
  CHECK(http_date(base) == "Sun, 01 Jun 2025 12:00:00 GMT");
}

TEST_CASE("X-Sim-Fault values parse, and bad ones are named") {
  std::string err;
  auto p = parse_faults("slow-first-token=500, error-line=3", &err);
  REQUIRE(p);
  CHECK(p->slow_first_token == std::chrono::milliseconds(500));
  CHECK(p->error_line == 3);
  CHECK(p->mid_stream_after() == 3);
  CHECK(p->text() == "slow-first-token=500,error-line=3");
  CHECK(parse_faults("reset-mid-stream")->reset_mid_stream == kDefaultFaultAfterTokens);
  CHECK(parse_faults("refuse")->refuse);
  CHECK(parse_faults("error-500")->error_500);
  CHECK(parse_faults("hang-before-headers")->hang_before_headers);
  CHECK(parse_faults("hang-mid-stream=0")->hang_mid_stream == 0);
  CHECK_FALSE(parse_faults("")->any());
  CHECK_FALSE(parse_faults("explode", &err));
  CHECK(err.find("explode") != std::string::npos);
  CHECK_FALSE(parse_faults("slow-first-token", &err));
  CHECK(err.find("slow-first-token") != std::string::npos);
  CHECK_FALSE(parse_faults("hang-mid-stream,error-line", &err));
  CHECK(err.find("one mid-stream") != std::string::npos);
  CHECK_FALSE(parse_faults("refuse=1", &err));
  auto mix = parse_fault_mix("error-500,reset-mid-stream=1");
  REQUIRE(mix);
  CHECK(mix->size() == 2);
  CHECK(default_fault_mix().size() == 5);
}

TEST_CASE("the record log is bounded, finishes once and resets only finished records") {
  RecordLog log(3);
  auto a = log.add(Record{});
  auto b = log.add(Record{});
  CHECK(a->id == 1);
  CHECK(b->id == 2);
  log.finish(*a, "completed", 10);
  log.finish(*a, "cancelled", 20);  // ignored: already finished
  CHECK(a->outcome == "completed");
  CHECK(a->end_ns == 10);
  CHECK(log.counters().completed == 1);
  CHECK(log.counters().cancelled == 0);
  for (int i = 0; i < 3; ++i)
    log.add(Record{});
  CHECK(log.records().size() == 3);
  CHECK(log.records().front()->id == 3);
  log.finish(*b, "cancelled", 30);  // dropped from the log but still counted
  CHECK(b->cancelled);
  CHECK(log.counters().cancelled == 1);
  log.finish(*log.records().back(), "completed", 40);
  log.reset();
  CHECK(log.records().size() == 2);
  CHECK(log.counters().completed == 0);
  CHECK(log.counters().total == 0);
  auto j = json::parse(record_json(*a));
  CHECK(j["outcome"] == "completed");
  CHECK(j["start_ns"].is_null());
}

TEST_CASE("api: /api/pull names a model, served or not") {
  const Catalog c = catalog();
  auto served = parse_pull_request(R"({"model":"mistral","stream":false})", c);
  REQUIRE(std::holds_alternative<PullRequest>(served));
  CHECK(std::get<PullRequest>(served).name == "mistral");
  CHECK(std::get<PullRequest>(served).resolved == "mistral:latest");
  CHECK_FALSE(std::get<PullRequest>(served).stream);

  auto other = parse_pull_request(R"({"name":"phi3"})", c);
  REQUIRE(std::holds_alternative<PullRequest>(other));
  CHECK_FALSE(std::get<PullRequest>(other).resolved);
  CHECK(std::get<PullRequest>(other).stream);  // Ollama streams by default

  CHECK(std::get<ApiError>(parse_pull_request("{}", c)).message == "model is required");
  CHECK(std::get<ApiError>(parse_pull_request("nope", c)).status == 400);
  CHECK(std::get<ApiError>(parse_pull_request(R"({"model":"m","stream":"yes"})", c)).message ==
        "field \"stream\" must be a boolean");
}
