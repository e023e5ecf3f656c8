// End-to-end tests of sluice-sim: the real binary on 127.0.0.1:0, driven over HTTP. Timing
// tests run the simulated clock faster (--time-scale) and assert lower bounds on real time
// (timers never fire early) with generous upper bounds, so they stay deterministic on a busy
// machine.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.hpp"
#include "http_client.hpp"
#include "sluice/sim/model.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Sim {
  explicit Sim(std::vector<std::string> args = {}) : proc(SLUICE_SIM_PATH, with_defaults(args)) {
    port = proc.wait_for_port();
  }
  static std::vector<std::string> with_defaults(std::vector<std::string> args) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0", "--log-level", "warn"});
    return args;
  }
  HttpResponse request(const HttpRequest& req, milliseconds timeout = 10000ms) {
    return http_request(port, req, timeout);
  }
  HttpResponse generate(const json& body, std::vector<Header> headers = {},
                        std::string route = "/api/generate") {
    return request(post_json(route, body.dump(), std::move(headers)));
  }
  json stats(const std::string& query = "") {
    auto r = request(HttpRequest{"GET", "/sim/stats" + query, {}, ""});
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  // Polls /sim/stats until `pred` holds (bounded); returns the last stats.
  template <typename Pred>
  json wait_stats(Pred pred, milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    json s = stats();
    while (!pred(s) && Clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
      s = stats();
    }
    return s;
  }
  ChildProcess proc;
  std::uint16_t port = 0;
};

std::vector<json> ndjson_lines(const HttpResponse& r) {
  std::vector<json> out;
  std::size_t pos = 0;
  while (pos < r.body.size()) {
    const auto nl = r.body.find('\n', pos);
    REQUIRE(nl != std::string::npos);
    out.push_back(json::parse(r.body.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return out;
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

json record_by_id(const json& stats, std::uint64_t id) {
  for (const auto& r : stats["records"])
    if (r["id"] == id) return r;
  FAIL("no record " << id);
  return {};
}

const json kGen = {{"model", "mistral"}, {"prompt", "Why is the sky blue?"}};

json gen(int num_predict, std::string prompt = "Why is the sky blue?") {
  return json{
      {"model", "mistral"}, {"prompt", prompt}, {"options", {{"num_predict", num_predict}}}};
}

}  // namespace

TEST_CASE("--help documents every flag") {
  ChildProcess help(SLUICE_SIM_PATH, {"--help"});
  REQUIRE(help.wait_exit(5000ms) == 0);
  const auto text = help.stdout_text();
  for (const char* flag : {"--listen",
                           "--parallel",
                           "--max-queue",
                           "--time-scale",
                           "--seed",
                           "--models",
                           "--max-loaded",
                           "--load-time",
                           "--keep-alive",
                           "--external-streams",
                           "--decode-rate",
                           "--prefill-rate",
                           "--decode-scaling",
                           "--mean-output-tokens",
                           "--output-sigma",
                           "--max-output-tokens",
                           "--embedding-dims",
                           "--fault-rate",
                           "--fault-mix",
                           "--max-records",
                           "--max-body-bytes",
                           "--max-header-bytes",
                           "--max-connections",
                           "--read-timeout",
                           "--idle-timeout",
                           "--write-timeout",
                           "--hang-limit",
                           "--allow-any-host",
                           "--log-level"}) {
    CAPTURE(flag);
    CHECK(text.find(flag) != std::string::npos);
  }
  ChildProcess bad(SLUICE_SIM_PATH, {"--decode-scaling", "4:2"});
  CHECK(bad.wait_exit(5000ms) == 2);
  CHECK(bad.stderr_text().find("retention") != std::string::npos);
}

TEST_CASE("a streamed /api/generate has Ollama's exact shape") {
  Sim sim({"--time-scale", "50"});
  const auto r = sim.generate(gen(5));
  CHECK(r.status == 200);
  CHECK(r.header("Content-Type") == "application/x-ndjson");
  CHECK(r.header("Transfer-Encoding") == "chunked");
  CHECK_FALSE(r.header("Content-Length"));
  CHECK(r.header("Date"));
  REQUIRE(r.chunks.size() == 6);  // 5 tokens + the final object, one HTTP chunk each
  std::string text;
  for (std::size_t i = 0; i < r.chunks.size(); ++i) {
    const auto& data = r.chunks[i].data;
    CAPTURE(data);
    REQUIRE(data.back() == '\n');
    CHECK(data.find('\n') == data.size() - 1);  // exactly one line per chunk
    const auto obj = json::parse(data);
    CHECK(obj["model"] == "mistral");
    CHECK(obj["created_at"].get<std::string>().back() == 'Z');
    if (i < 5) {
      CHECK(obj["done"] == false);
      CHECK(obj.size() == 4);
      text += obj["response"].get<std::string>();
    }
  }
  const auto fin = json::parse(r.chunks.back().data);
  CHECK(fin["done"] == true);
  CHECK(fin["done_reason"] == "length");
  CHECK(fin["response"] == "");
  CHECK(fin["eval_count"] == 5);
  CHECK(fin["prompt_eval_count"] == 5);  // 20 characters / 4
  CHECK(fin["context"].size() == 10);
  const auto total = fin["total_duration"].get<std::int64_t>();
  CHECK(total >=
        fin["prompt_eval_duration"].get<std::int64_t>() + fin["eval_duration"].get<std::int64_t>());
  // 5 tokens at 60 tok/s take at least 5/60 s of simulated time.
  CHECK(fin["eval_duration"].get<std::int64_t>() >= 5 * 1'000'000'000LL / 60);

  SUBCASE("the same prompt gives the same text without streaming, as one JSON object") {
    auto body = gen(5);
    body["stream"] = false;
    const auto whole = sim.generate(body);
    CHECK(whole.status == 200);
    CHECK(whole.header("Content-Type") == "application/json; charset=utf-8");
    CHECK(whole.header("Content-Length") == std::to_string(whole.body.size()));
    const auto obj = json::parse(whole.body);
    CHECK(obj["response"] == text);
    CHECK(obj["done"] == true);
    CHECK(obj["eval_count"] == 5);
    auto other = gen(5, "Why is the grass green?");
    other["stream"] = false;
    CHECK(json::parse(sim.generate(other).body)["response"] != text);
  }
  SUBCASE("a large non-streamed answer is sent chunked, as Go does") {
    auto body = gen(600);
    body["stream"] = false;
    const auto big = sim.generate(body);
    CHECK(big.status == 200);
    CHECK(big.header("Transfer-Encoding") == "chunked");
    CHECK(json::parse(big.body)["eval_count"] == 600);
  }
}

TEST_CASE("chat streams carry messages; output length is drawn when num_predict is absent") {
  Sim sim({"--time-scale", "200", "--mean-output-tokens", "20"});
  const json body = {{"model", "mistral:latest"},
                     {"messages", {{{"role", "user"}, {"content", "hello there"}}}}};
  const auto r = sim.generate(body, {}, "/api/chat");
  REQUIRE(r.status == 200);
  const auto lines = ndjson_lines(r);
  REQUIRE(lines.size() >= 2);
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    CHECK(lines[i]["message"]["role"] == "assistant");
    CHECK(lines[i]["done"] == false);
  }
  const auto& fin = lines.back();
  CHECK(fin["done"] == true);
  CHECK(fin["done_reason"] == "stop");
  CHECK_FALSE(fin.contains("context"));
  CHECK(fin["eval_count"] == int(lines.size()) - 1);
  // Same request, same length and text.
  CHECK(ndjson_lines(sim.generate(body, {}, "/api/chat")).back()["eval_count"] ==
        fin["eval_count"]);
  // An empty prompt only "loads the model".
  const auto load = sim.generate({{"model", "mistral"}});
  CHECK(json::parse(load.body)["done_reason"] == "load");
}

TEST_CASE("OpenAI-compatible routes: SSE streams and whole completions with usage") {
  Sim sim({"--time-scale", "100"});
  const json chat = {{"model", "mistral"},
                     {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                     {"max_tokens", 4},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}}};
  const auto r = sim.generate(chat, {}, "/v1/chat/completions");
  CHECK(r.status == 200);
  CHECK(r.header("Content-Type") == "text/event-stream");
  std::vector<std::string> events;
  for (const auto& c : r.chunks) {
    CAPTURE(c.data);
    REQUIRE(c.data.rfind("data: ", 0) == 0);
    REQUIRE(c.data.size() > 8);
    CHECK(c.data.substr(c.data.size() - 2) == "\n\n");
  }
  // Events, in order: 4 tokens, the finishing chunk, usage, [DONE].
  std::size_t pos = 0;
  while ((pos = r.body.find("data: ", pos)) != std::string::npos) {
    const auto end = r.body.find("\n\n", pos);
    events.push_back(r.body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  REQUIRE(events.size() == 7);
  CHECK(events.back() == "[DONE]");
  const auto first = json::parse(events[0]);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["finish_reason"].is_null());
  CHECK(json::parse(events[4])["choices"][0]["finish_reason"] == "length");
  const auto usage = json::parse(events[5]);
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["completion_tokens"] == 4);
  CHECK(usage["usage"]["total_tokens"] == 5);

  auto whole = chat;
  whole.erase("stream");
  const auto w = sim.generate(whole, {}, "/v1/chat/completions");
  CHECK(w.header("Content-Type") == "application/json");
  const auto obj = json::parse(w.body);
  CHECK(obj["object"] == "chat.completion");
  CHECK(obj["choices"][0]["message"]["role"] == "assistant");
  CHECK(obj["usage"]["prompt_tokens"] == 1);
  CHECK(obj["usage"]["completion_tokens"] == 4);

  const auto comp = sim.generate({{"model", "mistral"}, {"prompt", "once upon"}, {"max_tokens", 3}},
                                 {}, "/v1/completions");
  const auto cobj = json::parse(comp.body);
  CHECK(cobj["object"] == "text_completion");
  CHECK(cobj["usage"]["completion_tokens"] == 3);
  const auto cs = sim.generate(
      {{"model", "mistral"}, {"prompt", "once upon"}, {"max_tokens", 3}, {"stream", true}}, {},
      "/v1/completions");
  CHECK(cs.header("Content-Type") == "text/event-stream");
  CHECK(cs.body.find("\"object\":\"text_completion\"") != std::string::npos);
  CHECK(cs.body.substr(cs.body.size() - 14) == "data: [DONE]\n\n");
}

TEST_CASE("embeddings are scheduled and shaped like Ollama's") {
  Sim sim({"--time-scale", "100", "--embedding-dims", "8"});
  const auto e = json::parse(
      sim.generate({{"model", "mistral"}, {"input", {"a b c d", "e f"}}}, {}, "/api/embed").body);
  REQUIRE(e["embeddings"].size() == 2);
  REQUIRE(e["embeddings"][0].size() == 8);
  double norm = 0;
  for (double x : e["embeddings"][0])
    norm += x * x;
  CHECK(std::sqrt(norm) == doctest::Approx(1.0).epsilon(1e-4));
  CHECK(e["prompt_eval_count"] == 3);
  const auto legacy = json::parse(
      sim.generate({{"model", "mistral"}, {"prompt", "a b c d"}}, {}, "/api/embeddings").body);
  CHECK(legacy["embedding"].size() == 8);
  const auto v1 = json::parse(
      sim.generate({{"model", "mistral"}, {"input", "a b c d"}}, {}, "/v1/embeddings").body);
  CHECK(v1["object"] == "list");
  CHECK(v1["data"][0]["object"] == "embedding");
  CHECK(v1["usage"]["prompt_tokens"] == 2);
  const auto s = sim.stats();
  CHECK(s["completed"] == 3);
  for (const auto& rec : s["records"])
    CHECK_FALSE(rec["start_ns"].is_null());  // took a slot
}

TEST_CASE("cheap routes answer like Ollama") {
  Sim sim;
  auto get = [&](const char* path) { return sim.request(HttpRequest{"GET", path, {}, ""}); };
  const auto root = get("/");
  CHECK(root.body == "Ollama is running");
  CHECK(root.header("Content-Type") == "text/plain; charset=utf-8");
  const auto head = sim.request(HttpRequest{"HEAD", "/", {}, ""});
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.header("Content-Length") == "17");
  CHECK(json::parse(get("/api/version").body).contains("version"));
  const auto tags = json::parse(get("/api/tags").body);
  CHECK(tags["models"][0]["name"] == "mistral:latest");
  CHECK(tags["models"][0]["details"]["parameter_size"] == "7.2B");
  CHECK(json::parse(get("/api/ps").body)["models"][0]["model"] == "mistral:latest");
  const auto show = sim.request(post_json("/api/show", R"({"model":"mistral"})"));
  CHECK(show.status == 200);
  CHECK(json::parse(show.body).contains("modelfile"));
  CHECK(sim.request(post_json("/api/show", R"({"model":"nope"})")).status == 404);
  const auto models = json::parse(get("/v1/models").body);
  CHECK(models["object"] == "list");
  CHECK(models["data"][0]["id"] == "mistral:latest");
  CHECK(json::parse(get("/v1/models/mistral").body)["id"] == "mistral");
  const auto missing = get("/v1/models/nope");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["error"]["type"] == "not_found_error");
  CHECK(sim.stats()["total"] == 0);  // none of these touched the GPU
}

TEST_CASE("errors are sent as Ollama sends them") {
  Sim sim({"--max-body-bytes", "2048"});
  struct Case {
    std::string route, body;
    int status;
    std::string message;
  };
  for (const auto& c : std::vector<Case>{
           {"/api/generate", "{bad", 400, "invalid JSON in request body at byte 2"},
           {"/api/generate", "", 400, "missing request body"},
           {"/api/generate", R"({"prompt":"x"})", 400, "model is required"},
           {"/api/chat", R"({"model":"nope","messages":[]})", 404, "model 'nope' not found"},
           {"/api/generate", R"({"model":"mistral","stream":1})", 400,
            "field \"stream\" must be a boolean"},
       }) {
    CAPTURE(c.route);
    CAPTURE(c.body);
    const auto r = sim.request(post_json(c.route, c.body));
    CHECK(r.status == c.status);
    CHECK(r.header("Content-Type") == "application/json; charset=utf-8");
    CHECK(json::parse(r.body) == json{{"error", c.message}});
  }
  const auto v1 = sim.request(post_json(
      "/v1/chat/completions", R"({"model":"gone","messages":[{"role":"user","content":"x"}]})"));
  CHECK(v1.status == 404);
  const auto err = json::parse(v1.body)["error"];
  CHECK(err["message"] == "model 'gone' not found");
  CHECK(err["type"] == "not_found_error");
  CHECK(err["code"].is_null());
  CHECK(json::parse(sim.request(post_json("/v1/completions", "{")).body)["error"]["type"] ==
        "invalid_request_error");

  const auto unknown = sim.request(HttpRequest{"GET", "/api/nothing", {}, ""});
  CHECK(unknown.status == 404);
  CHECK(unknown.body == "404 page not found");
  const auto wrong = sim.request(HttpRequest{"GET", "/api/generate", {}, ""});
  CHECK(wrong.status == 405);
  CHECK(wrong.header("Allow") == "POST");

  const auto big = sim.request(post_json("/api/generate", std::string(4096, ' ')));
  CHECK(big.status == 413);
  CHECK(json::parse(big.body)["error"].get<std::string>().find("too large") != std::string::npos);

  HttpClient raw("127.0.0.1", sim.port);
  raw.send_raw("THIS IS NOT HTTP\r\n\r\n");
  REQUIRE(raw.read_head(2000ms) == ReadStatus::ok);
  CHECK(raw.response().status == 400);

  const auto foreign = sim.request(HttpRequest{"GET", "/", {{"Host", "evil.example.com"}}, ""});
  CHECK(foreign.status == 403);
  CHECK(sim.request(HttpRequest{"GET", "/", {{"Host", "ollama.internal:11434"}}, ""}).status ==
        200);
  CHECK(sim.stats()["total"] == 0);  // rejected before reaching the GPU
}

TEST_CASE("bound to a non-loopback address (a container), any Host is accepted, as Ollama does") {
  // What sluice sends as Host to `http://sim:11434` on a container network.
  ChildProcess proc(SLUICE_SIM_PATH, {"--listen", "0.0.0.0:0", "--log-level", "warn"});
  const std::uint16_t port = proc.wait_for_port("listening on http://0.0.0.0:");
  CHECK(http_request(port, HttpRequest{"GET", "/", {{"Host", "sim:11434"}}, ""}).status == 200);
}

TEST_CASE("--allow-any-host turns the Host check off") {
  Sim sim({"--allow-any-host"});
  CHECK(sim.request(HttpRequest{"GET", "/", {{"Host", "evil.example.com"}}, ""}).status == 200);
}

TEST_CASE("keep-alive and Expect: 100-continue work") {
  Sim sim({"--time-scale", "100"});
  HttpClient client("127.0.0.1", sim.port);
  CHECK(client.request(HttpRequest{"GET", "/api/version", {}, ""}).status == 200);
  CHECK(client.request(post_json("/api/generate", gen(2).dump())).status == 200);
  CHECK(client.request(HttpRequest{"GET", "/", {}, ""}).body == "Ollama is running");

  HttpClient expect("127.0.0.1", sim.port);
  const std::string body = gen(2).dump();
  expect.send_raw(
      "POST /api/generate HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  CHECK(expect.read_head(300ms) == ReadStatus::timeout);  // waits for the body after the 100
  CHECK(expect.response().interim_status == 100);
  expect.send_raw(body);
  CHECK(expect.read_to_end(5000ms) == ReadStatus::end);
  CHECK(expect.response().status == 200);
}

TEST_CASE("--parallel is honoured: at most P generate, the rest wait first come first served") {
  // The demonstration run of docs/simulator.md: 8 concurrent streams at --parallel 2.
  const double scale = 10;
  Sim sim({"--parallel", "2", "--time-scale", "10"});
  const std::string prompt(400, 'x');  // 100 prompt tokens
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<HttpClient>("127.0.0.1", sim.port));
    clients.back()->send(post_json("/api/generate", gen(40, prompt + std::to_string(i)).dump(),
                                   {{"X-Request-Id", "req-" + std::to_string(i)}}));
  }
  const auto mid = sim.wait_stats([](const json& s) { return s["waiting"] == 6; });
  CHECK(mid["active"] == 2);
  CHECK(mid["waiting"] == 6);
  for (auto& c : clients)
    REQUIRE(c->read_to_end(20000ms) == ReadStatus::end);
  const auto s = sim.stats();
  CHECK(s["peak_active"] == 2);
  CHECK(s["peak_waiting"] == 6);
  CHECK(s["completed"] == 8);
  auto recs = s["records"];
  REQUIRE(recs.size() == 8);
  std::sort(recs.begin(), recs.end(),
            [](const json& a, const json& b) { return a["arrival_ns"] < b["arrival_ns"]; });
  // FIFO: start order equals arrival order; never more than 2 slots held at once.
  for (std::size_t i = 1; i < recs.size(); ++i)
    CHECK(recs[i - 1]["start_ns"].get<std::int64_t>() <= recs[i]["start_ns"].get<std::int64_t>());
  for (const auto& r : recs) {
    const auto t = r["start_ns"].get<std::int64_t>();
    int holding = 0;
    for (const auto& o : recs)
      holding += o["start_ns"].get<std::int64_t>() <= t && t < o["end_ns"].get<std::int64_t>();
    CHECK(holding <= 2);
  }

  // Compare with the model's prediction (same arrivals, same rules).
  sluice::sim::GpuModel model{sluice::sim::GpuParams{}};
  std::vector<sluice::sim::PlannedRequest> plan;
  const auto t0 = recs[0]["arrival_ns"].get<std::int64_t>();
  for (const auto& r : recs)
    plan.push_back({std::chrono::nanoseconds(r["arrival_ns"].get<std::int64_t>() - t0),
                    r["prompt_tokens"].get<int>(), 40});
  const auto predicted = sluice::sim::predict_fifo(model, 2, plan);
  std::string table =
      "request   arrival   start(meas/pred)   first token(meas/pred)   end(meas/pred)   [ms, "
      "simulated]\n";
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const auto& r = recs[i];
    auto ms = [&](const char* f) { return (r[f].get<std::int64_t>() - t0) / 1e6; };
    auto pms = [](std::chrono::nanoseconds d) { return d.count() / 1e6; };
    char line[256];
    std::snprintf(line, sizeof line, "%-8s %8.1f %9.1f / %7.1f %12.1f / %7.1f %11.1f / %7.1f\n",
                  r["headers"]["x-request-id"].get<std::string>().c_str(), ms("arrival_ns"),
                  ms("start_ns"), pms(predicted[i].start), ms("first_token_ns"),
                  pms(predicted[i].first_token), ms("end_ns"), pms(predicted[i].end));
    table += line;
    // Timers never fire early, so nothing happens before the model says (a simulator that
    // ignored the slowdown of shared decoding would finish early and fail here). Lateness only
    // comes from a busy machine (timer latency x scale), so it is reported, not asserted.
    CHECK(ms("start_ns") >= pms(predicted[i].start) - 1);
    CHECK(ms("end_ns") >= pms(predicted[i].end) - 1);
  }
  MESSAGE("8 streams, --parallel 2, --time-scale " << scale
                                                   << ", prompt 100 tokens, 40 output "
                                                      "tokens each\n"
                                                   << table);
}

TEST_CASE("no headers until the first token; tokens are streamed, not buffered") {
  Sim sim({"--parallel", "1", "--time-scale", "4"});
  HttpClient a("127.0.0.1", sim.port), b("127.0.0.1", sim.port);
  a.send(post_json("/api/generate", gen(40).dump()));  // 40/60 s sim = 167 ms real
  REQUIRE(a.read_head(5000ms) == ReadStatus::ok);
  b.send(post_json("/api/generate", gen(3).dump()));
  BodyChunk chunk;
  for (int i = 0; i < 41; ++i) {
    REQUIRE(a.read_chunk(chunk, 5000ms) == ReadStatus::ok);
    if (i == 6) CHECK(b.read_head(1ms) == ReadStatus::timeout);  // queued: zero bytes yet
  }
  CHECK(a.read_chunk(chunk, 5000ms) == ReadStatus::end);
  REQUIRE(b.read_head(5000ms) == ReadStatus::ok);
  CHECK(b.read_to_end(5000ms) == ReadStatus::end);
  const auto& chunks = a.response().chunks;
  REQUIRE(chunks.size() == 41);
  // 30 token intervals of 1/60 s simulated, 1/240 s real each, between chunks 1 and 31 (125 ms
  // nominal): the tokens arrive spread out as they are produced, where a buffered body would
  // arrive at once. A quarter of the nominal spread leaves room for a late wake-up on a loaded
  // machine (later deadlines catch up, compressing the gaps), while buffering gives ~0.
  CHECK(ms_between(chunks[1].at, chunks[31].at) >= 30 * 1000.0 / 240 * 0.25);

  // A long prompt delays the head by its prefill time (4000 tokens / 1500 per s / 4).
  HttpClient c("127.0.0.1", sim.port);
  c.send(post_json("/api/generate", gen(1, std::string(16000, 'p')).dump()));
  REQUIRE(c.read_head(5000ms) == ReadStatus::ok);
  CHECK(ms_between(c.response().sent_at, c.response().head_at) >= 4000.0 / 1500 / 4 * 1000 * 0.95);
}

TEST_CASE("a client that disconnects is cancelled at once, waiting or generating") {
  Sim sim({"--parallel", "1", "--time-scale", "10"});
  HttpClient a("127.0.0.1", sim.port), b("127.0.0.1", sim.port), c("127.0.0.1", sim.port);
  a.send(post_json("/api/generate", gen(2000).dump()));
  REQUIRE(a.read_head(5000ms) == ReadStatus::ok);
  b.send(post_json("/api/generate", gen(5).dump()));
  sim.wait_stats([](const json& s) { return s["waiting"] == 1; });
  b.abort();
  auto s = sim.wait_stats([](const json& s) { return s["cancelled"] == 1; });
  CHECK(s["waiting"] == 0);
  CHECK(s["active"] == 1);
  const auto rb = record_by_id(s, 2);
  CHECK(rb["cancelled"] == true);
  CHECK(rb["start_ns"].is_null());  // never got a slot

  BodyChunk chunk;
  REQUIRE(a.read_chunk(chunk, 5000ms) == ReadStatus::ok);
  c.send(post_json("/api/generate", gen(3).dump()));
  sim.wait_stats([](const json& s) { return s["waiting"] == 1; });
  a.abort(true);
  CHECK(c.read_to_end(5000ms) == ReadStatus::end);  // a's slot went to c at once
  s = sim.wait_stats([](const json& s) { return s["completed"] == 1; });
  const auto ra = record_by_id(s, 1);
  CHECK(ra["outcome"] == "cancelled");
  CHECK(ra["tokens"].get<int>() < 2000);
  const auto rc = record_by_id(s, 3);
  CHECK(rc["start_ns"].get<std::int64_t>() - ra["end_ns"].get<std::int64_t>() < 200'000'000);
  CHECK(s["active"] == 0);

  SUBCASE("a half-close counts as gone") {
    HttpClient d("127.0.0.1", sim.port);
    d.send(post_json("/api/generate", gen(2000).dump()));
    sim.wait_stats([](const json& s) { return s["active"] == 1; });
    d.half_close();
    s = sim.wait_stats([](const json& s) { return s["cancelled"] == 3; });
    CHECK(s["cancelled"] == 3);
    CHECK(s["active"] == 0);
  }
}

TEST_CASE("each X-Sim-Fault does what it says") {
  Sim sim({"--time-scale", "10", "--parallel", "4"});
  auto faulty = [](const char* fault, int n = 6, std::string route = "/api/generate") {
    return post_json(route, gen(n).dump(), {{"X-Sim-Fault", fault}});
  };

  SUBCASE("error-500") {
    const auto r = sim.request(faulty("error-500"));
    CHECK(r.status == 500);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("simulated") != std::string::npos);
    const auto v1 = sim.request(post_json(
        "/v1/chat/completions", R"({"model":"mistral","messages":[{"role":"user","content":"x"}]})",
        {{"X-Sim-Fault", "error-500"}}));
    CHECK(v1.status == 500);
    CHECK(json::parse(v1.body)["error"]["type"] == "api_error");
  }
  SUBCASE("refuse closes the connection before any byte") {
    HttpClient c("127.0.0.1", sim.port);
    c.send(faulty("refuse"));
    CHECK(c.read_head(2000ms) == ReadStatus::closed);
    CHECK(c.response().status == 0);
    CHECK(sim.stats()["records"][0]["outcome"] == "fault");
  }
  SUBCASE("hang-before-headers holds a slot and sends nothing until the client leaves") {
    HttpClient c("127.0.0.1", sim.port);
    c.send(faulty("hang-before-headers"));
    CHECK(c.read_head(300ms) == ReadStatus::timeout);
    CHECK(sim.stats()["active"] == 1);
    c.abort();
    const auto s = sim.wait_stats([](const json& s) { return s["cancelled"] == 1; });
    CHECK(s["records"][0]["cancelled"] == true);
    CHECK(s["active"] == 0);
  }
  SUBCASE("hang-mid-stream sends N tokens, then silence") {
    HttpClient c("127.0.0.1", sim.port);
    c.send(faulty("hang-mid-stream=3"));
    BodyChunk chunk;
    for (int i = 0; i < 3; ++i)
      REQUIRE(c.read_chunk(chunk, 2000ms) == ReadStatus::ok);
    CHECK(c.read_chunk(chunk, 300ms) == ReadStatus::timeout);
    c.abort();
    const auto s = sim.wait_stats([](const json& s) { return s["cancelled"] == 1; });
    CHECK(s["records"][0]["tokens"] == 3);
  }
  SUBCASE("reset-mid-stream sends N tokens, then a TCP reset") {
    HttpClient c("127.0.0.1", sim.port);
    c.send(faulty("reset-mid-stream=2"));
    CHECK(c.read_to_end(3000ms) == ReadStatus::closed);
    CHECK(c.response().chunks.size() == 2);
    CHECK_FALSE(c.response().complete);
    CHECK(sim.stats()["records"][0]["outcome"] == "fault");
  }
  SUBCASE("error-line ends the stream with one error object and no done object") {
    const auto r = sim.request(faulty("error-line=2"));
    CHECK(r.status == 200);
    const auto lines = ndjson_lines(r);
    REQUIRE(lines.size() == 3);
    CHECK(lines[2].contains("error"));
    for (const auto& l : lines)
      CHECK_FALSE(l.value("done", false));
    CHECK(sim.stats()["records"][0]["outcome"] == "error");
    auto body = gen(6);
    body["stream"] = false;
    const auto whole =
        sim.request(post_json("/api/generate", body.dump(), {{"X-Sim-Fault", "error-line"}}));
    CHECK(whole.status == 500);
  }
  SUBCASE("slow-first-token delays the first token by simulated milliseconds") {
    HttpClient c("127.0.0.1", sim.port);
    c.send(faulty("slow-first-token=2000", 2));
    REQUIRE(c.read_to_end(5000ms) == ReadStatus::end);
    CHECK(ms_between(c.response().sent_at, c.response().head_at) >= 2000 / 10 * 0.95);
    const auto fin = ndjson_lines(c.response()).back();
    CHECK(fin["prompt_eval_duration"].get<std::int64_t>() >= 2'000'000'000);
  }
  SUBCASE("an unknown fault is a 400 naming it") {
    const auto r = sim.request(faulty("explode"));
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("explode") != std::string::npos);
  }
}

TEST_CASE("--fault-rate injects faults from --fault-mix") {
  Sim sim({"--fault-rate", "1", "--fault-mix", "error-500", "--time-scale", "100"});
  for (int i = 0; i < 3; ++i)
    CHECK(sim.generate(gen(2)).status == 500);
  CHECK(sim.stats()["records"][2]["fault"] == "error-500");
}

TEST_CASE("--time-scale shrinks real time; reported durations stay simulated") {
  auto run = [](const char* scale) {
    Sim sim({"--time-scale", scale});
    const auto start = Clock::now();
    const auto r = sim.generate(gen(30));  // 30 tokens at 60 tok/s: 0.5 s simulated
    const double real_ms = ms_between(start, Clock::now());
    const auto fin = ndjson_lines(r).back();
    return std::pair{real_ms, fin["eval_duration"].get<std::int64_t>() / 1e6};
  };
  const auto [real5, sim5] = run("5");
  const auto [real50, sim50] = run("50");
  CHECK(real5 >= 500.0 / 5 * 0.95);
  CHECK(real50 < real5);
  // Reported durations are simulated (about 500 ms, not the 10-100 ms of real time). Timers never
  // fire early, so 500 ms is a hard floor; late wake-ups on a loaded or sanitizer build are
  // multiplied by the scale, hence the loose ceiling (none at 50x, where a sanitizer build
  // cannot keep up with 0.3 ms token intervals).
  CHECK(sim5 >= 500 * 0.99);
  CHECK(sim5 <= 500 * 1.5);
  CHECK(sim50 >= 500 * 0.99);
}

TEST_CASE("--max-queue answers 503 with Ollama's message") {
  Sim sim({"--parallel", "1", "--max-queue", "1", "--time-scale", "10"});
  HttpClient a("127.0.0.1", sim.port), b("127.0.0.1", sim.port);
  a.send(post_json("/api/generate", gen(500).dump()));
  REQUIRE(a.read_head(5000ms) == ReadStatus::ok);
  b.send(post_json("/api/generate", gen(5).dump()));
  sim.wait_stats([](const json& s) { return s["waiting"] == 1; });
  const auto c = sim.generate(gen(5));
  CHECK(c.status == 503);
  CHECK(json::parse(c.body)["error"] ==
        "server busy, please try again.  maximum pending requests exceeded");
  CHECK(sim.stats()["rejected"] == 1);
}

TEST_CASE("/sim/stats records headers and Host; /sim/reset zeroes peaks and records") {
  Sim sim({"--time-scale", "100", "--parallel", "2"});
  sim.generate(gen(2), {{"X-Request-Id", "abc"}, {"X-User-Id", "alice"}, {"X-Tier", "paid"}});
  auto s = sim.stats();
  REQUIRE(s["records"].size() == 1);
  const auto& r = s["records"][0];
  CHECK(r["headers"]["x-request-id"] == "abc");
  CHECK(r["headers"]["x-user-id"] == "alice");
  CHECK(r["headers"]["x-tier"] == "paid");
  CHECK(r["host"] == "127.0.0.1:" + std::to_string(sim.port));
  CHECK(r["tokens"] == 2);
  CHECK(r["outcome"] == "completed");
  CHECK(s["peak_active"] == 1);
  sim.generate(gen(1));
  CHECK(sim.stats("?since=1")["records"].size() == 1);
  CHECK(sim.stats("?limit=0")["records"].empty());
  CHECK(sim.request(HttpRequest{"POST", "/sim/reset", {}, ""}).status == 200);
  s = sim.stats();
  CHECK(s["records"].empty());
  CHECK(s["peak_active"] == 0);
  CHECK(s["completed"] == 0);
}

TEST_CASE("SIGTERM stops the simulator") {
  Sim sim;
  sim.proc.signal(SIGTERM);
  CHECK(sim.proc.wait_exit(5000ms) == 0);
}
