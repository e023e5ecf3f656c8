// End-to-end tests of the proxy data path: a Proxy in this process in front of a real
// sluice-sim process, both on loopback port 0, driven by the blocking test HTTP client.
// Every test is bounded (small num_predict, --time-scale) and cleans up what it starts.
#include <doctest/doctest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cctype>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
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

std::string chat_body(const std::string& content, int num_predict, bool stream = true) {
  return json{{"model", "mistral"},
              {"messages", json::array({{{"role", "user"}, {"content", content}}})},
              {"stream", stream},
              {"options", {{"num_predict", num_predict}}}}
      .dump();
}

/// A body with the fields that legitimately differ between two runs (wall-clock times, measured
/// durations, random ids) removed; everything else must be identical.
std::vector<json> masked(const std::string& body) {
  std::vector<json> out;
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    if (line.rfind("data: ", 0) == 0) line = line.substr(6);
    json value = json::parse(line, nullptr, false);
    if (value.is_discarded()) {
      out.push_back(line);
      continue;
    }
    if (value.is_object()) {
      for (const char* key : {"created_at", "created", "total_duration", "load_duration",
                              "prompt_eval_duration", "eval_duration", "id"})
        value.erase(key);
    }
    out.push_back(value);
  }
  return out;
}

bool is_hop_by_hop(std::string name) {
  for (char& c : name)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* h :
       {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "date"}) {
    if (name == h) return true;
  }
  return false;
}

/// Every end-to-end header of `direct` (apart from hop-by-hop ones and Date) has the same value
/// in `via`. Content-Length only when the two bodies are the same bytes (a generation carries
/// timestamps and durations, so its length varies, and the simulator switches to chunked
/// framing above a size threshold).
void check_same_headers(const HttpResponse& direct, const HttpResponse& via,
                        bool same_body = true) {
  for (const auto& header : direct.headers) {
    if (is_hop_by_hop(header.name)) continue;
    if (!same_body && (header.name == "Content-Length" || header.name == "content-length"))
      continue;
    INFO("header " << header.name);
    CHECK(via.header(header.name) == header.value);
  }
}

std::uint16_t closed_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();  // closed again when acceptor goes
}

long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
}

/// Sends `request` on its own connection from another thread.
std::future<HttpResponse> send_async(std::uint16_t port, HttpRequest request,
                                     milliseconds timeout = milliseconds(15000)) {
  return std::async(std::launch::async,
                    [port, request, timeout] { return http_request(port, request, timeout); });
}

/// Sim records (arrival order) of GPU routes.
std::vector<json> gpu_records(const Simulator& sim) {
  json stats = sim.stats();
  return stats["records"].get<std::vector<json>>();
}

}  // namespace

TEST_CASE("scheduled responses arrive as the upstream sent them: NDJSON, JSON, SSE") {
  Simulator sim({"--parallel", "4", "--time-scale", "50"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 4})"));

  std::vector<HttpRequest> requests = {
      post_json("/api/generate", generate_body("Why is the sky blue?", 12)),
      post_json("/api/chat", chat_body("Tell me a story", 12)),
      post_json("/api/generate", generate_body("Non-streamed please", 9, false)),
      post_json("/api/chat", chat_body("Non-streamed chat", 9, false)),
      post_json("/v1/chat/completions",
                json{{"model", "mistral"},
                     {"stream", true},
                     {"max_tokens", 10},
                     {"stream_options", {{"include_usage", true}}},
                     {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}}
                    .dump()),
      post_json("/v1/chat/completions",
                json{{"model", "mistral"},
                     {"max_tokens", 10},
                     {"messages", json::array({{{"role", "user"}, {"content", "hello"}}})}}
                    .dump()),
      post_json("/api/embed", R"({"model":"mistral","input":["a","b"]})"),
  };
  for (const auto& request : requests) {
    INFO(request.target << " " << request.body);
    HttpResponse direct = http_request(sim.port(), request);
    HttpResponse via = http_request(proxy.port(), request);
    REQUIRE(direct.status == 200);
    CHECK(via.status == direct.status);
    CHECK(via.complete);
    CHECK(masked(via.body) == masked(direct.body));
    check_same_headers(direct, via, false);
    CHECK(via.header("X-Sluice-Workload") == "default");
    CHECK(via.header("X-Sluice-Backend") == "127.0.0.1:" + std::to_string(sim.port()));
    CHECK(via.header("X-Sluice-Queue-Ms").has_value());
    CHECK(via.header("X-Request-Id").value_or("").size() == 32);
  }
  // The upstream saw its own Host (not the client's) and sluice's request id.
  json last = gpu_records(sim).back();
  CHECK(last["host"] == "127.0.0.1:" + std::to_string(sim.port()));
  CHECK(last["headers"].contains("x-request-id"));

  // A client's request id is kept and echoed.
  HttpRequest tagged = post_json("/api/generate", generate_body("id", 3, false),
                                 {{"X-Request-Id", "my-request-42"}});
  CHECK(http_request(proxy.port(), tagged).header("X-Request-Id") == "my-request-42");
  CHECK(gpu_records(sim).back()["headers"]["x-request-id"] == "my-request-42");
}

TEST_CASE("pass-through routes are proxied unchanged and never queued") {
  Simulator sim({"--time-scale", "50"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  std::vector<HttpRequest> requests = {
      {.method = "GET", .target = "/"},
      {.method = "HEAD", .target = "/"},
      {.method = "GET", .target = "/api/tags"},
      {.method = "GET", .target = "/api/version"},
      post_json("/api/show", R"({"model":"mistral"})"),
      {.method = "GET", .target = "/no/such/path"},
      {.method = "GET", .target = "/api/generate"},  // wrong method: Ollama's 405, not queued
      {.method = "GET", .target = "/v1/models"},
  };
  for (const auto& request : requests) {
    INFO(request.method << " " << request.target);
    HttpResponse direct = http_request(sim.port(), request);
    HttpResponse via = http_request(proxy.port(), request);
    CHECK(via.status == direct.status);
    CHECK(via.body == direct.body);
    check_same_headers(direct, via);
    CHECK_FALSE(via.header("X-Sluice-Workload").has_value());
    CHECK(via.header("X-Sluice-Backend") == "127.0.0.1:" + std::to_string(sim.port()));
    CHECK(via.header("X-Request-Id").has_value());
  }
  CHECK(proxy.snapshot().parked == 0);
}

TEST_CASE("requests arriving in pieces, and pipelined requests, are served in order") {
  Simulator sim({"--time-scale", "50"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  const std::string body = generate_body("pieces", 2, false);
  const std::string scheduled_head =
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n";

  SUBCASE("a header and a body split across several writes") {
    HttpClient client("127.0.0.1", proxy.port());
    const std::vector<std::string> pieces = {
        "POST /api/gen", "erate HTTP/1.1\r\nHost: x\r\nX-Request-Id: pieces-1\r\n",
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body.substr(0, 5),
        body.substr(5)};
    for (const auto& piece : pieces) {
      client.send_raw(piece);
      std::this_thread::sleep_for(milliseconds(30));
    }
    REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
    CHECK(client.response().status == 200);
    CHECK(client.response().header("X-Request-Id") == "pieces-1");
    REQUIRE(client.read_to_end(milliseconds(5000)) == ReadStatus::end);
    CHECK(json::parse(client.response().body)["done"] == true);

    client.next_response();
    client.send_raw("GET /api/ver");
    std::this_thread::sleep_for(milliseconds(30));
    client.send_raw("sion HTTP/1.1\r\nHost: x\r\nX-Request-Id: pieces-2\r\n\r\n");
    REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
    CHECK(client.response().status == 200);
    CHECK(client.response().header("X-Request-Id") == "pieces-2");
    REQUIRE(client.read_to_end(milliseconds(5000)) == ReadStatus::end);
    CHECK(client.response().body == http_request(sim.port(), {.target = "/api/version"}).body);
  }

  SUBCASE("three requests in one write: three answers, in order, on the same connection") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw("GET /api/version HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-1\r\n\r\n" +
                    scheduled_head + "X-Request-Id: pipe-2\r\n\r\n" + body +
                    "GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-3\r\n\r\n");
    for (const char* id : {"pipe-1", "pipe-2", "pipe-3"}) {
      INFO(id);
      if (std::string_view(id) != "pipe-1") client.next_response();
      REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
      CHECK(client.response().status == 200);
      CHECK(client.response().header("X-Request-Id") == id);
      REQUIRE(client.read_to_end(milliseconds(5000)) == ReadStatus::end);
      CHECK_FALSE(client.response().body.empty());
    }
  }
  CHECK(proxy.snapshot().parked == 0);
}

TEST_CASE("streaming is real: chunks reach the client while the upstream generates") {
  Simulator sim({"--time-scale", "1"});  // 60 tokens/s: 30 tokens take ~0.5 s
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  HttpClient client("127.0.0.1", proxy.port());
  client.send(post_json("/api/generate", generate_body("stream me", 30)));
  REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
  const auto head_at = Clock::now();
  std::vector<BodyChunk> chunks;
  for (;;) {
    BodyChunk chunk;
    ReadStatus status = client.read_chunk(chunk, milliseconds(5000));
    if (status == ReadStatus::end) break;
    REQUIRE(status == ReadStatus::ok);
    chunks.push_back(chunk);
  }
  REQUIRE(chunks.size() >= 10);
  const auto spread =
      std::chrono::duration_cast<milliseconds>(chunks.back().at - chunks.front().at);
  CHECK(spread.count() >= 250);  // not buffered into one burst
  CHECK(std::chrono::duration_cast<milliseconds>(chunks.back().at - head_at).count() >= 250);
  CHECK(client.response().body.find("\"done\":true") != std::string::npos);
}

TEST_CASE("max_concurrency 2: the upstream never sees more than 2, every request completes") {
  Simulator sim({"--parallel", "8", "--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 2})"));
  std::vector<std::future<HttpResponse>> responses;
  for (int i = 0; i < 20; ++i) {
    responses.push_back(send_async(
        proxy.port(), post_json("/api/generate", generate_body("req " + std::to_string(i), 8),
                                {{"X-User-Id", "user" + std::to_string(i % 5)}})));
  }
  for (auto& response : responses) {
    HttpResponse r = response.get();
    CHECK(r.status == 200);
    CHECK(r.complete);
    CHECK(r.body.find("\"done\":true") != std::string::npos);
  }
  json stats = sim.stats();
  CHECK(stats["peak_active"] == 2);
  CHECK(stats["completed"] == 20);
  CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  // Token counts from the final objects reached the metrics.
  std::string metrics = proxy.metrics_text();
  CHECK(metrics.find("sluice_tokens_total{kind=\"output\",workload=\"default\"} 160") !=
        std::string::npos);
}

namespace {

/// Holds the single slot with a long request so that later requests park.
struct Blocker {
  Blocker(ProxyUnderTest& proxy, std::vector<Header> headers = {})
      : client("127.0.0.1", proxy.port()) {
    headers.push_back({"X-Tokens", "100"});
    client.send(post_json("/api/generate", generate_body("blocker", 4000), headers));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  }
  void release() { client.abort(); }
  HttpClient client;
};

/// Sends requests one at a time, each once the previous one is parked, so that their arrival
/// order is known; returns their futures.
std::vector<std::future<HttpResponse>> park_in_order(ProxyUnderTest& proxy,
                                                     const std::vector<HttpRequest>& requests) {
  std::vector<std::future<HttpResponse>> out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    out.push_back(send_async(proxy.port(), requests[i]));
    const auto parked = static_cast<std::int64_t>(i + 1);
    REQUIRE(proxy.wait_for([parked](const core::Snapshot& s) { return s.parked == parked; }));
  }
  return out;
}

}  // namespace

TEST_CASE("priority: paid (8) is admitted ahead of free (1) in proportion; users share fairly") {
  Simulator sim({"--parallel", "4", "--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({
      "max_concurrency": 1,
      "workloads": [
        {"name": "paid", "match": {"tier": "paid"}, "priority": 8},
        {"name": "free", "match": {"tier": "free"}, "priority": 1}
      ]})"));

  SUBCASE("weighted fair queuing between tiers") {
    Blocker blocker(proxy, {{"X-Tier", "free"}, {"X-User-Id", "b"}});
    std::vector<HttpRequest> requests;
    for (int i = 0; i < 9; ++i) {
      requests.push_back(post_json(
          "/api/generate", generate_body("free " + std::to_string(i), 2),
          {{"X-Tier", "free"}, {"X-User-Id", "f" + std::to_string(i)}, {"X-Tokens", "100"}}));
    }
    for (int i = 0; i < 9; ++i) {
      requests.push_back(post_json(
          "/api/generate", generate_body("paid " + std::to_string(i), 2),
          {{"X-Tier", "paid"}, {"X-User-Id", "p" + std::to_string(i)}, {"X-Tokens", "100"}}));
    }
    auto responses = park_in_order(proxy, requests);
    blocker.release();
    for (auto& r : responses) {
      HttpResponse response = r.get();
      CHECK(response.status == 200);
    }
    // Admission order = the order the upstream received them (one slot).
    std::vector<std::string> order;
    for (const auto& record : gpu_records(sim)) {
      if (record["headers"].contains("x-tier")) order.push_back(record["headers"]["x-tier"]);
    }
    REQUIRE(order.size() == 19);
    order.erase(order.begin());  // the blocker
    int paid_in_first_nine = 0;
    for (int i = 0; i < 9; ++i)
      paid_in_first_nine += order[static_cast<std::size_t>(i)] == "paid";
    INFO("order after the blocker: " << json(order).dump());
    CHECK(paid_in_first_nine >= 8);  // 8:1 while both are backlogged
  }

  SUBCASE("fairness between users inside a tier") {
    Blocker blocker(proxy, {{"X-Tier", "free"}, {"X-User-Id", "b"}});
    std::vector<HttpRequest> requests;
    for (int i = 0; i < 6; ++i) {
      requests.push_back(post_json("/api/generate", generate_body("flood " + std::to_string(i), 2),
                                   {{"X-Tier", "free"}, {"X-User-Id", "alice"}}));
    }
    requests.push_back(post_json("/api/generate", generate_body("single", 2),
                                 {{"X-Tier", "free"}, {"X-User-Id", "bob"}}));
    auto responses = park_in_order(proxy, requests);
    blocker.release();
    for (auto& r : responses)
      CHECK(r.get().status == 200);
    std::vector<std::string> users;
    for (const auto& record : gpu_records(sim)) {
      if (record["headers"].contains("x-user-id")) users.push_back(record["headers"]["x-user-id"]);
    }
    REQUIRE(users.size() == 8);
    auto bob = std::find(users.begin(), users.end(), "bob") - users.begin();
    INFO("order: " << json(users).dump());
    CHECK(bob <= 2);  // blocker, at most one of alice's, then bob
  }
}

TEST_CASE("queue timeout answers 503 at the deadline; a full queue answers 429") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1, "max_queue": 1})"));
  Blocker blocker(proxy);

  SUBCASE("queue timeout") {
    const auto start = Clock::now();
    HttpResponse r = http_request(proxy.port(), post_json("/api/generate", generate_body("late", 2),
                                                          {{"X-Queue-Timeout", "300ms"}}));
    const long waited = elapsed_ms(start);
    CHECK(r.status == 503);
    CHECK(waited >= 290);
    CHECK(waited <= 700);
    CHECK(r.header("X-Sluice-Reason") == "queue_timeout");
    CHECK(std::stoll(r.header("Retry-After").value_or("0")) >= 1);
    CHECK(json::parse(r.body)["error"].is_string());
    CHECK(r.header("X-Sluice-Workload") == "default");
  }

  SUBCASE("queue full, in both dialects") {
    auto parked = send_async(proxy.port(), post_json("/api/generate", generate_body("parked", 2),
                                                     {{"X-Queue-Timeout", "5s"}}));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));
    const auto start = Clock::now();
    HttpResponse native =
        http_request(proxy.port(), post_json("/api/generate", generate_body("one more", 2)));
    CHECK(elapsed_ms(start) < 500);
    CHECK(native.status == 429);
    CHECK(native.header("X-Sluice-Reason") == "queue_full");
    CHECK(native.header("Retry-After").has_value());
    CHECK(json::parse(native.body)["error"].is_string());

    HttpResponse openai = http_request(
        proxy.port(),
        post_json("/v1/chat/completions",
                  R"({"model":"mistral","messages":[{"role":"user","content":"x"}]})"));
    CHECK(openai.status == 429);
    json error = json::parse(openai.body)["error"];
    CHECK(error["message"].is_string());
    CHECK(error.contains("type"));
    CHECK(error["param"].is_null());
    blocker.release();
    CHECK(parked.get().status == 200);
  }
}

TEST_CASE("a client that leaves while parked leaves the queue; the upstream never sees it") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  Blocker blocker(proxy);
  HttpClient parked("127.0.0.1", proxy.port());
  parked.send(post_json("/api/generate", generate_body("impatient", 2)));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));
  parked.abort();
  CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 0; }, milliseconds(1000)));
  blocker.release();
  CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  CHECK(sim.stats()["total"] == 1);  // only the blocker
}

TEST_CASE("a client that leaves mid-stream is cancelled upstream and frees its slot at once") {
  Simulator sim({"--time-scale", "1"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  HttpClient client("127.0.0.1", proxy.port());
  client.send(post_json("/api/generate", generate_body("long story", 2000)));
  REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
  BodyChunk chunk;
  REQUIRE(client.read_chunk(chunk, milliseconds(5000)) == ReadStatus::ok);
  const auto left = Clock::now();
  client.abort();
  CHECK(
      proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }, milliseconds(1000)));
  CHECK(elapsed_ms(left) < 500);
  bool cancelled = false;
  for (int i = 0; i < 100 && !cancelled; ++i) {
    json stats = sim.stats();
    json records = stats["records"];
    cancelled = !records.empty() && records.back()["cancelled"] == true;
    if (!cancelled) std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(cancelled);
  // The slot is free: the next request runs at once.
  HttpResponse next =
      http_request(proxy.port(), post_json("/api/generate", generate_body("next", 2, false)));
  CHECK(next.status == 200);
}

TEST_CASE("upstream failures: down 502, hang 504, reset mid-stream, 500 passed through") {
  SUBCASE("upstream down: 502 fast, in the route's dialect") {
    ProxyUnderTest proxy(proxy_config("http://127.0.0.1:" + std::to_string(closed_port()),
                                      R"({"max_concurrency": 1})"));
    const auto start = Clock::now();
    HttpResponse r = http_request(proxy.port(), post_json("/api/generate", generate_body("x", 2)));
    CHECK(elapsed_ms(start) < 1000);
    CHECK(r.status == 502);
    CHECK(json::parse(r.body)["error"].is_string());
    HttpResponse tags = http_request(proxy.port(), HttpRequest{.target = "/api/tags"});
    CHECK(tags.status == 502);
    HttpResponse openai = http_request(
        proxy.port(), post_json("/v1/completions", R"({"model":"mistral","prompt":"x"})"));
    CHECK(openai.status == 502);
    CHECK(json::parse(openai.body)["error"]["message"].is_string());
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  }

  Simulator sim({"--time-scale", "10", "--hang-limit", "5"});
  SUBCASE("no headers within header_timeout: 504") {
    ProxyUnderTest proxy(
        proxy_config(sim.url(), R"({"max_concurrency": 1})", R"("header_timeout": "300ms")"));
    const auto start = Clock::now();
    HttpResponse r =
        http_request(proxy.port(), post_json("/api/generate", generate_body("x", 2),
                                             {{"X-Sim-Fault", "hang-before-headers"}}));
    const long waited = elapsed_ms(start);
    CHECK(r.status == 504);
    CHECK(waited >= 290);
    CHECK(waited < 1500);
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  }

  SUBCASE("reset mid-stream: one error line, then the connection closes") {
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
    HttpClient client("127.0.0.1", proxy.port());
    client.send(post_json("/api/generate", generate_body("x", 20),
                          {{"X-Sim-Fault", "reset-mid-stream=3"}}));
    REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
    CHECK(client.response().status == 200);
    client.read_to_end(milliseconds(5000));
    CHECK(client.wait_closed(milliseconds(2000)));
    const std::string& body = client.response().body;
    REQUIRE(body.size() > 2);
    std::string last_line = body.substr(body.rfind('\n', body.size() - 2) + 1);
    INFO(body);
    CHECK(json::parse(last_line)["error"].is_string());
    CHECK(body.find("\"done\":true") == std::string::npos);
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  }

  SUBCASE("an upstream 500 is passed through as it is") {
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
    HttpRequest request =
        post_json("/api/generate", generate_body("x", 2), {{"X-Sim-Fault", "error-500"}});
    HttpResponse direct = http_request(sim.port(), request);
    HttpResponse via = http_request(proxy.port(), request);
    CHECK(direct.status == 500);
    CHECK(via.status == 500);
    CHECK(via.body == direct.body);
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; }));
  }
}

TEST_CASE("invalid headers and bodies: 400 naming what was wrong, in the route's dialect") {
  Simulator sim({"--time-scale", "50"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  struct Case {
    std::string target;
    std::vector<Header> headers;
    std::string body;
    std::string expect;  // in the message
  };
  const std::string ok_native = generate_body("x", 2);
  const std::string ok_openai = R"({"model":"mistral","messages":[{"role":"user","content":"x"}]})";
  std::vector<Case> cases = {
      {"/api/generate", {{"X-Priority", "abc"}}, ok_native, "X-Priority"},
      {"/api/generate", {{"X-Priority", "-3"}}, ok_native, "X-Priority"},
      {"/api/generate", {{"X-Priority", "1e999"}}, ok_native, "X-Priority"},
      {"/api/generate", {{"X-Queue-Timeout", "soon"}}, ok_native, "X-Queue-Timeout"},
      {"/api/generate", {{"X-Tokens", "many"}}, ok_native, "X-Tokens"},
      {"/api/generate", {{"X-Workload", "nope"}}, ok_native, "X-Workload"},
      {"/api/generate", {{"X-User-Id", "a"}, {"X-User-Id", "b"}}, ok_native, "X-User-Id"},
      {"/api/generate", {}, "{not json", "JSON"},
      {"/api/generate",
       {},
       R"({"model":"mistral","options":{"num_predict":"x"}})",
       "options.num_predict"},
      {"/v1/chat/completions", {{"X-Priority", "abc"}}, ok_openai, "X-Priority"},
      {"/v1/chat/completions", {}, R"({"model":"mistral","max_tokens":"x"})", "max_tokens"},
  };
  HttpClient client("127.0.0.1", proxy.port());  // errors keep the connection alive
  for (const auto& c : cases) {
    INFO(c.target << " " << c.expect);
    HttpResponse r = client.request(post_json(c.target, c.body, c.headers));
    CHECK(r.status == 400);
    json body = json::parse(r.body);
    std::string message = c.target.rfind("/v1/", 0) == 0
                              ? body["error"]["message"].get<std::string>()
                              : body["error"].get<std::string>();
    CHECK(message.find(c.expect) != std::string::npos);
    if (c.target.rfind("/v1/", 0) == 0) CHECK(body["error"]["type"] == "invalid_request_error");
  }
  CHECK(sim.stats()["total"] == 0);  // none reached the upstream
}

TEST_CASE("API keys: 401 without a valid key; the key decides who it is; never forwarded") {
  Simulator sim({"--time-scale", "1"});
  const std::string key = "sk-test-alice";
  ProxyUnderTest proxy(
      proxy_config(sim.url(), R"({"max_concurrency": 1, "workloads": [{"name": "paid",
                     "match": {"tier": "paid"}, "priority": 8}]})",
                   "",
                   R"("auth": {"keys": [{"name": "alice-key", "sha256": ")" +
                       auth::sha256_hex(key) + R"(", "user": "alice", "tier": "paid"}]})"));
  const std::string body = generate_body("x", 2, false);

  HttpResponse missing = http_request(proxy.port(), post_json("/api/generate", body));
  CHECK(missing.status == 401);
  CHECK(missing.header("WWW-Authenticate").has_value());
  CHECK(json::parse(missing.body)["error"].get<std::string>().find("API key") != std::string::npos);
  HttpResponse wrong = http_request(
      proxy.port(), post_json("/v1/chat/completions", R"({"model":"mistral","messages":[]})",
                              {{"Authorization", "Bearer sk-nope"}}));
  CHECK(wrong.status == 401);
  CHECK(json::parse(wrong.body)["error"]["message"] == "invalid API key");
  HttpResponse tags = http_request(proxy.port(), HttpRequest{.target = "/api/tags"});
  CHECK(tags.status == 401);  // pass-through routes are protected too
  CHECK(sim.stats()["total"] == 0);

  // A valid key: its user and tier apply, whatever the client claims.
  HttpClient client("127.0.0.1", proxy.port());
  client.send(post_json(
      "/api/generate", generate_body("long", 2000),
      {{"Authorization", "Bearer " + key}, {"X-User-Id", "mallory"}, {"X-Tier", "free"}}));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  core::Snapshot snapshot = proxy.snapshot();
  bool alice = false, mallory = false;
  for (const auto& k : snapshot.keys) {
    alice = alice || (k.label == "user" && k.value == "alice" && k.in_flight == 1);
    mallory = mallory || k.value == "mallory";
  }
  CHECK(alice);
  CHECK_FALSE(mallory);
  for (const auto& w : snapshot.workloads) {
    if (w.name == "paid") CHECK(w.in_flight == 1);
  }
  REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
  CHECK(client.response().status == 200);
  client.abort();

  HttpResponse with_header =
      http_request(proxy.port(), post_json("/api/generate", body, {{"X-Api-Key", key}}));
  CHECK(with_header.status == 200);
  for (const auto& record : gpu_records(sim)) {
    CHECK_FALSE(record["headers"].contains("authorization"));
    CHECK_FALSE(record["headers"].contains("x-api-key"));
  }
}
