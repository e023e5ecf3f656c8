// End-to-end tests of what waiting clients see (docs/waiting-clients.md): GET
// /sluice/requests/{id} (position, ETA, state, the access rule) and /admin/state's parked
// requests, against a Proxy in this process in front of sluice-sim.
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy_harness.hpp"
#include "sluice/auth/auth.hpp"

using namespace sluice;
using namespace sluice::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

std::string generate_body(const std::string& prompt, int num_predict, bool stream = true) {
  return json{{"model", "mistral"},
              {"prompt", prompt},
              {"stream", stream},
              {"options", {{"num_predict", num_predict}}}}
      .dump();
}

std::future<HttpResponse> send_async(std::uint16_t port, HttpRequest request,
                                     milliseconds timeout = milliseconds(20000)) {
  return std::async(std::launch::async,
                    [port, request, timeout] { return http_request(port, request, timeout); });
}

HttpResponse status_of(std::uint16_t port, const std::string& id,
                       std::vector<Header> headers = {}) {
  return http_request(port, HttpRequest{.target = "/sluice/requests/" + id, .headers = headers});
}

/// Holds the only slot with a long generation until released (the client leaves).
struct Blocker {
  Blocker(ProxyUnderTest& proxy, std::vector<Header> headers = {})
      : client("127.0.0.1", proxy.port()) {
    headers.push_back({"X-Request-Id", "blocker"});
    client.send(post_json("/api/generate", generate_body("blocker", 4000), headers));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  }
  void release() { client.abort(); }
  HttpClient client;
};

const char* kTiers = R"({
    "max_concurrency": 1,
    "workloads": [
      {"name": "paid", "match": {"tier": "paid"}, "priority": 8},
      {"name": "free", "match": {"tier": "free"}, "priority": 1}
    ]})";

}  // namespace

TEST_CASE("GET /sluice/requests/{id}: a paid request parked after ten free ones is ahead") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kTiers));
  Blocker blocker(proxy, {{"X-Tier", "free"}, {"X-User-Id", "b"}});
  std::vector<std::future<HttpResponse>> parked;
  for (int i = 0; i < 10; ++i) {
    parked.push_back(
        send_async(proxy.port(), post_json("/api/generate", generate_body("free", 2),
                                           {{"X-Tier", "free"},
                                            {"X-User-Id", "f" + std::to_string(i)},
                                            {"X-Request-Id", "free-" + std::to_string(i)}})));
    const std::int64_t n = i + 1;
    REQUIRE(proxy.wait_for([n](const core::Snapshot& s) { return s.parked == n; }));
  }
  parked.push_back(
      send_async(proxy.port(),
                 post_json("/api/generate", generate_body("paid", 2),
                           {{"X-Tier", "paid"}, {"X-User-Id", "p"}, {"X-Request-Id", "paid-1"}})));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 11; }));

  const HttpResponse paid = status_of(proxy.port(), "paid-1");
  REQUIRE(paid.status == 200);
  CHECK(paid.header("Content-Type") == "application/json; charset=utf-8");
  const json p = json::parse(paid.body);
  CHECK(p["id"] == "paid-1");
  CHECK(p["state"] == "parked");
  CHECK(p["workload"] == "paid");
  CHECK(p["position"] == 0);
  CHECK(p["position_exact"] == true);
  CHECK(p["queued_ms"].get<std::int64_t>() >= 0);
  CHECK(p["eta_ms"].is_null());  // nothing has completed yet: no estimate
  const json last = json::parse(status_of(proxy.port(), "free-9").body);
  CHECK(last["position"] == 10);
  CHECK(last["workload"] == "free");
  const json first_free = json::parse(status_of(proxy.port(), "free-0").body);
  CHECK(first_free["position"].get<int>() >= 0);
  CHECK(first_free["position"].get<int>() < 10);

  // The blocker runs: position 0, state running.
  const json running = json::parse(status_of(proxy.port(), "blocker").body);
  CHECK(running["state"] == "running");
  CHECK(running["position"] == 0);

  // /admin/state lists the parked requests per workload, in order.
  const core::Snapshot snapshot = proxy.snapshot();
  CHECK(snapshot.waiting.size() == 11);
  CHECK(snapshot.waiting.front().workload == "free");
  bool saw_paid = false;
  for (const core::WaitingView& view : snapshot.waiting) {
    if (view.id == "paid-1") {
      saw_paid = true;
      CHECK(view.position == 0);
      CHECK(view.exact);
    }
  }
  CHECK(saw_paid);

  blocker.release();
  for (auto& f : parked)
    CHECK(f.get().status == 200);
  // Finished requests stay known for a while.
  const json done = json::parse(status_of(proxy.port(), "paid-1").body);
  CHECK(done["state"] == "finished");
  CHECK(done["position"] == 0);
  CHECK(done["eta_ms"] == 0);
}

TEST_CASE("GET /sluice/requests/{id}: ETA from the drain once requests have completed") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1, "eta_header": true})"));
  // Four completions teach the estimators (fewer give no ETA).
  for (int i = 0; i < 4; ++i)
    REQUIRE(
        http_request(proxy.port(), post_json("/api/generate", generate_body("warm", 20))).status ==
        200);
  Blocker blocker(proxy);
  auto parked = send_async(proxy.port(), post_json("/api/generate", generate_body("next", 20),
                                                   {{"X-Request-Id", "next-1"}}));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));
  const json status = json::parse(status_of(proxy.port(), "next-1").body);
  CHECK(status["position"] == 0);
  REQUIRE(status["eta_ms"].is_number_integer());
  CHECK(status["eta_ms"].get<std::int64_t>() >= 0);
  blocker.release();
  const HttpResponse answer = parked.get();
  CHECK(answer.status == 200);
  // scheduler.eta_header: the ETAs given when it parked come back on the answer.
  CHECK(answer.header("X-Sluice-Eta-Ms").has_value());
  CHECK(answer.header("X-Sluice-Eta-Rate-Ms").has_value());
  CHECK(answer.header("X-Sluice-Queue-Ms").has_value());
}

TEST_CASE("eta_header: a request parked before any completion gets the first ETA there is") {
  // Real time: each answer takes ~0.4 s, long enough for the others to park before it ends.
  Simulator sim({"--time-scale", "1"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1, "eta_header": true})"));
  // Cold: nothing has completed when these park, so no ETA exists at parking; one exists from
  // the fourth completion on.
  auto first = send_async(proxy.port(), post_json("/api/generate", generate_body("one", 20)));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  std::vector<std::future<HttpResponse>> parked;
  for (int i = 1; i <= 5; ++i) {
    parked.push_back(send_async(
        proxy.port(), post_json("/api/generate", generate_body("n" + std::to_string(i), 20),
                                {{"X-Request-Id", "parked-" + std::to_string(i)}})));
    REQUIRE(proxy.wait_for([i](const core::Snapshot& s) { return s.parked == i; }));
  }
  CHECK(json::parse(status_of(proxy.port(), "parked-5").body)["eta_ms"].is_null());
  CHECK(first.get().status == 200);
  // The first four parked were admitted at the first four completions: none waited with an ETA.
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    const HttpResponse answer = parked[static_cast<std::size_t>(i)].get();
    CHECK(answer.status == 200);
    CHECK_FALSE(answer.header("X-Sluice-Eta-Ms").has_value());
  }
  // The last got one at the fourth completion, some time after it parked, before it was admitted.
  const HttpResponse last = parked[4].get();
  CHECK(last.status == 200);
  REQUIRE(last.header("X-Sluice-Eta-Ms").has_value());
  REQUIRE(last.header("X-Sluice-Eta-After-Ms").has_value());
  REQUIRE(last.header("X-Sluice-Queue-Ms").has_value());
  const double after = std::stod(std::string(*last.header("X-Sluice-Eta-After-Ms")));
  const double queued = std::stod(std::string(*last.header("X-Sluice-Queue-Ms")));
  CHECK(after > 0);
  CHECK(after < queued);
}

TEST_CASE("GET /sluice/requests/{id}: bad input and unknown ids answer JSON errors") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  const HttpResponse unknown = status_of(proxy.port(), "nobody");
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body)["error"].get<std::string>().find("nobody") != std::string::npos);
  const HttpResponse empty = status_of(proxy.port(), "");
  CHECK(empty.status == 400);
  CHECK(json::parse(empty.body)["error"].get<std::string>().find("request id") !=
        std::string::npos);
  const HttpResponse post = http_request(
      proxy.port(), HttpRequest{.method = "POST", .target = "/sluice/requests/x", .body = "{}"});
  CHECK(post.status == 405);
  CHECK(json::parse(post.body)["error"].is_string());
  CHECK(sim.stats()["total"] == 0);  // sluice answered itself, nothing went upstream
}

TEST_CASE("GET /sluice/requests/{id} with API keys: only the sending key or the admin token") {
  Simulator sim({"--time-scale", "20"});
  const std::string alice = "sk-alice-0123456789";
  const std::string bob = "sk-bob-0123456789";
  const std::string admin = "admin-token-0123456789";
  ProxyUnderTest proxy(proxy_config(
      sim.url(), R"({"max_concurrency": 1})", "",
      R"("auth": {"admin_token_sha256": ")" + auth::sha256_hex(admin) +
          R"(", "keys": [{"name": "alice-key", "sha256": ")" + auth::sha256_hex(alice) +
          R"(", "user": "alice"}, {"name": "bob-key", "sha256": ")" + auth::sha256_hex(bob) +
          R"(", "user": "bob"}]})"));
  Blocker blocker(proxy, {{"Authorization", "Bearer " + alice}});
  auto parked = send_async(
      proxy.port(), post_json("/api/generate", generate_body("mine", 2),
                              {{"Authorization", "Bearer " + alice}, {"X-Request-Id", "a-1"}}));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));

  const HttpResponse own = status_of(proxy.port(), "a-1", {{"X-Api-Key", alice}});
  CHECK(own.status == 200);
  CHECK(json::parse(own.body)["state"] == "parked");
  const HttpResponse other = status_of(proxy.port(), "a-1", {{"Authorization", "Bearer " + bob}});
  CHECK(other.status == 403);
  CHECK(json::parse(other.body)["error"].is_string());
  const HttpResponse none = status_of(proxy.port(), "a-1");
  CHECK(none.status == 401);
  CHECK(none.header("WWW-Authenticate").has_value());
  CHECK(json::parse(none.body)["error"].is_string());
  const HttpResponse wrong = status_of(proxy.port(), "a-1", {{"X-Api-Key", "sk-nobody"}});
  CHECK(wrong.status == 401);
  const HttpResponse by_admin =
      status_of(proxy.port(), "a-1", {{"Authorization", "Bearer " + admin}});
  CHECK(by_admin.status == 200);
  CHECK(json::parse(by_admin.body)["id"] == "a-1");
  // Bob's own request of the same id is his, and does not hide Alice's from her.
  blocker.release();
  CHECK(parked.get().status == 200);
  CHECK(status_of(proxy.port(), "a-1", {{"X-Api-Key", alice}}).status == 200);
}

// ---- progress while parked -------------------------------------------------------------------

namespace {

const char* kProgressScheduler = R"({"max_concurrency": 1, "progress_interval": "1s"})";

/// The lines of an NDJSON body.
std::vector<json> ndjson_lines(const std::string& body) {
  std::vector<json> lines;
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    if (end > start) lines.push_back(json::parse(body.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

bool is_keepalive(const json& line) {
  return line.contains("sluice");
}

/// Waits until the metrics text contains `line` (a request is counted just after its answer).
bool counted(ProxyUnderTest& proxy, const std::string& line) {
  for (int i = 0; i < 200; ++i) {
    if (proxy.metrics_text().find(line) != std::string::npos) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

/// Sends `request` with progress on and reads its head while it is parked.
struct ProgressClient {
  ProgressClient(ProxyUnderTest& proxy, HttpRequest request) : client("127.0.0.1", proxy.port()) {
    request.headers.push_back({"X-Sluice-Progress", "1"});
    client.send(request);
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
  }
  const HttpResponse& finish() {
    REQUIRE(client.read_to_end(milliseconds(15000)) == ReadStatus::end);
    return client.response();
  }
  HttpClient client;
};

}  // namespace

TEST_CASE(
    "progress, NDJSON: headers while parked, keep-alives with the position, then the answer") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kProgressScheduler));
  for (const bool chat : {false, true}) {
    CAPTURE(chat);
    std::optional<Blocker> blocker;
    blocker.emplace(proxy);
    const std::string body =
        chat ? json{{"model", "mistral"},
                    {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                    {"options", {{"num_predict", 5}}}}
                   .dump()
             : generate_body("hello", 5);
    ProgressClient waiting(proxy, post_json(chat ? "/api/chat" : "/api/generate", body));
    const HttpResponse& head = waiting.client.response();
    CHECK(head.status == 200);
    CHECK(head.header("Content-Type") == "application/x-ndjson");
    CHECK(head.header("X-Sluice-Progress") == "1");
    CHECK(head.header("X-Sluice-Workload") == "default");
    CHECK(proxy.snapshot().parked == 1);  // the head came while it was parked
    // The first keep-alive at once, the next about a second later.
    BodyChunk first;
    REQUIRE(waiting.client.read_chunk(first, milliseconds(2000)) == ReadStatus::ok);
    BodyChunk second;
    REQUIRE(waiting.client.read_chunk(second, milliseconds(2500)) == ReadStatus::ok);
    const auto gap = std::chrono::duration_cast<milliseconds>(second.at - first.at).count();
    CHECK(gap >= 800);
    CHECK(gap <= 1800);
    for (const BodyChunk* chunk : {&first, &second}) {
      const json line = json::parse(chunk->data);
      CHECK(line["model"] == "mistral");
      CHECK(line["done"] == false);
      CHECK(line["created_at"].get<std::string>().size() >= 20);
      CHECK(line["sluice"]["queue_position"] == 0);
      CHECK(line["sluice"].contains("eta_ms"));
      if (chat) {
        CHECK(line["message"] == json{{"role", "assistant"}, {"content", ""}});
      } else {
        CHECK(line["response"] == "");
      }
    }
    // Its place: GET /sluice/requests/{id} agrees.
    const std::string id = head.header("X-Request-Id").value_or("");
    CHECK(json::parse(status_of(proxy.port(), id).body)["state"] == "parked");
    blocker->release();
    const HttpResponse& done = waiting.finish();
    const std::vector<json> lines = ndjson_lines(done.body);
    REQUIRE(lines.size() >= 3);
    CHECK(lines.back()["done"] == true);
    CHECK(lines.back()["eval_count"] == 5);
    int tokens = 0;
    for (const json& line : lines) {
      if (is_keepalive(line)) continue;
      if (line["done"] == false) ++tokens;
    }
    CHECK(tokens == 5);
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  }
}

TEST_CASE("progress, SSE and non-streamed answers: comments, whitespace, then the answer") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kProgressScheduler));
  SUBCASE("SSE comments before the events") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/v1/chat/completions",
                                            R"({"model":"mistral","stream":true,"max_tokens":4,)"
                                            R"("messages":[{"role":"user","content":"hi"}]})"));
    CHECK(waiting.client.response().header("Content-Type") == "text/event-stream");
    BodyChunk first;
    REQUIRE(waiting.client.read_chunk(first, milliseconds(2000)) == ReadStatus::ok);
    CHECK(first.data == ": sluice queue_position=0 eta_ms=null\n\n");
    blocker.release();
    const HttpResponse& done = waiting.finish();
    CHECK(done.body.rfind(": sluice queue_position=0 ", 0) == 0);
    CHECK(done.body.find("data: [DONE]") != std::string::npos);
    int events = 0;
    for (std::size_t at = done.body.find("data: {"); at != std::string::npos;
         at = done.body.find("data: {", at + 1)) {
      const std::size_t end = done.body.find('\n', at);
      CHECK(json::parse(done.body.substr(at + 6, end - at - 6)).contains("choices"));
      ++events;
    }
    CHECK(events >= 4);
  }
  SUBCASE("whitespace before a JSON body") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/api/generate", generate_body("hi", 4, false)));
    CHECK(waiting.client.response().header("Content-Type") == "application/json; charset=utf-8");
    BodyChunk first;
    REQUIRE(waiting.client.read_chunk(first, milliseconds(2000)) == ReadStatus::ok);
    CHECK(first.data == " ");
    blocker.release();
    const HttpResponse& done = waiting.finish();
    const json answer = json::parse(done.body);  // leading whitespace is valid JSON
    CHECK(answer["done"] == true);
    CHECK(answer["eval_count"] == 4);
  }
  SUBCASE("admitted at once: an ordinary answer, no progress framing") {
    HttpResponse r = http_request(proxy.port(), post_json("/api/generate", generate_body("hi", 3),
                                                          {{"X-Sluice-Progress", "1"}}));
    CHECK(r.status == 200);
    CHECK_FALSE(r.header("X-Sluice-Progress").has_value());
    for (const json& line : ndjson_lines(r.body))
      CHECK_FALSE(is_keepalive(line));
  }
  SUBCASE("a bad header value is 400 naming it") {
    HttpResponse r = http_request(proxy.port(), post_json("/api/generate", generate_body("hi", 3),
                                                          {{"X-Sluice-Progress", "maybe"}}));
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("X-Sluice-Progress") !=
          std::string::npos);
  }
}

TEST_CASE("progress: failures after the head end the body with one error in the dialect") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kProgressScheduler));
  // The last line's error; before it only keep-alives (and `tokens` answer lines).
  auto error_line = [](const HttpResponse& r, std::size_t tokens = 0) {
    const std::vector<json> lines = ndjson_lines(r.body);
    REQUIRE_FALSE(lines.empty());
    std::size_t answered = 0;
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
      if (!is_keepalive(lines[i])) ++answered;
    }
    CHECK(answered == tokens);
    CHECK(lines.back().size() == 1);
    return lines.back()["error"].get<std::string>();
  };
  SUBCASE("queue timeout") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/api/generate", generate_body("late", 2),
                                            {{"X-Queue-Timeout", "1200ms"}}));
    const HttpResponse& r = waiting.finish();
    CHECK(r.status == 200);
    CHECK(error_line(r).find("timed out waiting in the queue") != std::string::npos);
    CHECK(counted(proxy, R"(sluice_requests_total{outcome="queue_timeout",workload="default"} 1)"));
  }
  SUBCASE("upstream error status") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/api/generate", generate_body("boom", 2),
                                            {{"X-Sim-Fault", "error-500"}}));
    blocker.release();
    const HttpResponse& r = waiting.finish();
    CHECK(error_line(r).find("simulated failure") != std::string::npos);
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
    CHECK(counted(proxy, R"(sluice_requests_total{outcome="upstream_5xx",workload="default"} 1)"));
  }
  SUBCASE("reset mid-stream") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/api/generate", generate_body("cut", 6),
                                            {{"X-Sim-Fault", "reset-mid-stream=2"}}));
    blocker.release();
    const HttpResponse& r = waiting.finish();
    CHECK(error_line(r, 2).size() > 0);  // two tokens, then the error line
  }
  SUBCASE("SSE: the error is an event") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/v1/chat/completions",
                                            R"({"model":"mistral","stream":true,"max_tokens":4,)"
                                            R"("messages":[{"role":"user","content":"hi"}]})",
                                            {{"X-Sim-Fault", "error-500"}}));
    blocker.release();
    const HttpResponse& r = waiting.finish();
    const std::size_t at = r.body.find("data: ");
    REQUIRE(at != std::string::npos);
    const json event = json::parse(r.body.substr(at + 6));
    CHECK(event["error"]["message"].get<std::string>().find("simulated failure") !=
          std::string::npos);
  }
  SUBCASE("shutdown") {
    Blocker blocker(proxy);
    ProgressClient waiting(proxy, post_json("/api/generate", generate_body("bye", 2)));
    proxy.on_io([&] {
      proxy.proxy().begin_shutdown();
      return 0;
    });
    const HttpResponse& r = waiting.finish();
    CHECK(error_line(r).find("shutting down") != std::string::npos);
    CHECK(counted(proxy, R"(sluice_requests_total{outcome="shutting_down",workload="default"} 1)"));
  }
}

TEST_CASE("progress: progress_queue_timeout_cap, not queue_timeout_cap, bounds the wait") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1,
      "queue_timeout_cap": "1s", "progress_queue_timeout_cap": "10s",
      "default_workload": {"queue_timeout": "10s", "progress": true}})"));
  Blocker blocker(proxy);
  const auto start = Clock::now();
  // The workload turns progress on; the header turns it off for this one.
  HttpResponse plain = http_request(proxy.port(), post_json("/api/generate", generate_body("a", 2),
                                                            {{"X-Sluice-Progress", "0"}}));
  CHECK(plain.status == 503);
  CHECK(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count() < 2000);
  HttpClient waiting("127.0.0.1", proxy.port());
  waiting.send(post_json("/api/generate", generate_body("b", 2)));
  REQUIRE(waiting.read_head(milliseconds(3000)) == ReadStatus::ok);
  CHECK(waiting.response().header("X-Sluice-Progress") == "1");
  std::this_thread::sleep_for(milliseconds(1500));
  CHECK(proxy.snapshot().parked == 1);  // past queue_timeout_cap, still waiting
  blocker.release();
  REQUIRE(waiting.read_to_end(milliseconds(10000)) == ReadStatus::end);
  CHECK(ndjson_lines(waiting.response().body).back()["done"] == true);
}
