// Input limits and bad input at the client edge, and the proxy's control calls: header and body
// limits (431, 413 before the body is read), slowloris and idle timeouts, max_connections, the
// per-key parked cap, malformed HTTP, bad JSON bodies, Expect: 100-continue, streamed
// pass-through uploads, the stale pooled-connection retry, probe_upstream(), reconfigure(),
// graceful shutdown, and API keys (priority clamp, trusted gateway, never logged).
//
// For each: what the client sees, the access-log line where there is a request, and that
// everybody else is still served. An in-process Proxy in front of sluice-sim (20x time) or of a
// scripted raw upstream; timeouts in the test configs are a few hundred ms.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "generate_requests.hpp"
#include "hardening_support.hpp"
#include "sluice/auth/auth.hpp"

using namespace sluice;
using namespace sluice::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

const GenerateRequests generate{.prompt = "limits", .stream = false};

std::future<HttpResponse> send_async(std::uint16_t port, HttpRequest request) {
  return std::async(std::launch::async,
                    [port, request] { return http_request(port, request, milliseconds(15000)); });
}

/// A normal request still gets through.
void check_still_serving(ProxyUnderTest& proxy, const std::string& id = "still-serving") {
  HttpResponse r = http_request(proxy.port(), generate(id, 2));
  CHECK(r.status == 200);
}

const char* kLimits = R"("limits": {"max_header_bytes": 1024, "max_body_bytes": 200000,
    "max_scheduled_body_bytes": 2000, "header_read_timeout": "300ms",
    "keepalive_timeout": "400ms", "write_timeout": "2s"})";

}  // namespace

TEST_CASE("header and body limits: 431 and 413 with the limit named, before the body is read") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", kLimits));

  SUBCASE("431: headers above max_header_bytes; the connection closes") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("big-header", 2, {{"X-Filler", std::string(2000, 'a')}}));
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 431);
    CHECK(client.response().header("Connection") == "close");
    CHECK(json::parse(client.response().body)["error"].get<std::string>().find(
              "limits.max_header_bytes") != std::string::npos);
    CHECK(client.wait_closed(milliseconds(3000)));
    // The request id header was never parsed: find the line by its status.
    auto lines = logs.wait_lines([](const json& l) { return l["status"] == 431; }, 1);
    REQUIRE(lines.size() == 1);
    check_access(lines[0], 431, "invalid_request");
    CHECK(lines[0]["workload"] == "unclassified");
  }

  SUBCASE("413 on a scheduled route: Content-Length above max_scheduled_body_bytes") {
    HttpClient client("127.0.0.1", proxy.port());
    // Only the head is sent: the answer must not wait for the body.
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-sched\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 413);
    CHECK(json::parse(client.response().body)["error"].get<std::string>().find(
              "max_scheduled_body_bytes") != std::string::npos);
    check_access(logs.access_line("big-sched"), 413, "invalid_request");
  }

  SUBCASE("413 on a pass-through route: Content-Length above max_body_bytes") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 413);
    CHECK(json::parse(client.response().body)["error"].get<std::string>().find(
              "limits.max_body_bytes") != std::string::npos);
    // A body between the two limits is fine on a pass-through route (the upstream's 404 here).
    HttpResponse mid = http_request(proxy.port(), HttpRequest{.method = "POST",
                                                              .target = "/api/blobs/sha256:00",
                                                              .body = std::string(5000, 'x')});
    CHECK(mid.status == 404);
  }

  SUBCASE("413 for a chunked scheduled body that grows past the limit") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-chunked\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string piece(1000, ' ');
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    for (int i = 0; i < 3; ++i)
      client.send_raw(std::string(size) + piece + "\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 413);
    CHECK(client.response().header("Connection") == "close");
    check_access(logs.access_line("big-chunked"), 413, "invalid_request");
  }

  SUBCASE("413 for a chunked pass-through upload past max_body_bytes") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-upload\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    const std::string piece(50000, 'z');
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    try {
      for (int i = 0; i < 5; ++i)
        client.send_raw(std::string(size) + piece + "\r\n");
    } catch (const std::exception&) {
      // sluice may close while the last piece is in flight
    }
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    CHECK(client.response().status == 413);
    check_access(logs.access_line("big-upload"), 413, "invalid_request");
  }

  expect_idle(proxy);
  check_still_serving(proxy);
}

TEST_CASE("slowloris, silent and idle connections are closed; others are served meanwhile") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", kLimits));

  SUBCASE("headers trickling in slower than header_read_timeout allows: closed, no answer") {
    HttpClient slow("127.0.0.1", proxy.port());
    const auto start = Clock::now();
    slow.send_raw("POST /api/generate HTTP/1.1\r\n");
    bool closed = false;
    for (int i = 0; i < 30 && !closed; ++i) {
      std::this_thread::sleep_for(milliseconds(50));
      try {
        slow.send_raw("X-Slow-" + std::to_string(i) + ": 1\r\n", milliseconds(200));
      } catch (const std::exception&) {
        closed = true;
      }
      if (i == 3) check_still_serving(proxy, "during-slowloris");
    }
    CHECK(slow.wait_closed(milliseconds(2000)));
    const long lasted = elapsed_ms(start);
    CHECK(lasted >= 290);
    CHECK(lasted < 1500);  // header_read_timeout for the first byte, again for the headers
    CHECK(slow.response().status == 0);
  }

  SUBCASE("a connection that sends nothing is closed after header_read_timeout") {
    HttpClient silent("127.0.0.1", proxy.port());
    silent.connect();
    const auto start = Clock::now();
    CHECK(silent.wait_closed(milliseconds(2000)));
    CHECK(elapsed_ms(start) >= 250);
    CHECK(elapsed_ms(start) < 1000);
  }

  SUBCASE("an idle kept-alive connection is closed after keepalive_timeout, not before") {
    HttpClient client("127.0.0.1", proxy.port());
    CHECK(client.request(generate("ka-1", 2)).status == 200);
    std::this_thread::sleep_for(milliseconds(200));
    CHECK(client.request(generate("ka-2", 2)).status == 200);  // still open after 200 ms
    const auto start = Clock::now();
    CHECK(client.wait_closed(milliseconds(2000)));
    CHECK(elapsed_ms(start) >= 350);
    CHECK(elapsed_ms(start) < 1200);
  }

  SUBCASE("a request body that stalls longer than header_read_timeout") {
    HttpClient slow("127.0.0.1", proxy.port());
    slow.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-body\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
    CHECK(slow.wait_closed(milliseconds(2000)));
    check_access(logs.access_line("slow-body"), 0, "client_gone");
  }

  expect_idle(proxy);
  CHECK(proxy.wait_for([&](const core::Snapshot&) { return proxy.connections() == 0; }));
}

TEST_CASE("a client that stops reading is cut off after write_timeout; its slot is freed") {
  LogCapture logs;
  // A fast, long stream: 60 000 tokens/s, up to 200 000 of them (~20 MB of NDJSON).
  Simulator sim({"--time-scale", "1000", "--max-output-tokens", "200000"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "",
                                    R"("limits": {"write_timeout": "300ms"})"));
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket stuck(io);
  stuck.open(asio::ip::tcp::v4());
  stuck.set_option(asio::socket_base::receive_buffer_size(4096));  // a small window, never read
  stuck.connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
  const std::string body = generate.body(200000, true);
  const std::string request =
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: w-stuck\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  asio::write(stuck, asio::buffer(request));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  // Once the socket buffers are full, the next write waits 300 ms, then the slot is freed.
  CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; },
                       milliseconds(10000)));
  check_access(logs.access_line("w-stuck", milliseconds(5000)), 200, "client_gone");
  CHECK(sim_record(sim, "w-stuck")["cancelled"] == true);
  expect_idle(proxy);
  check_still_serving(proxy);
}

TEST_CASE("max_connections: further clients wait in the accept backlog until one closes") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "",
                                    R"("limits": {"max_connections": 2})"));
  HttpClient a("127.0.0.1", proxy.port());
  HttpClient b("127.0.0.1", proxy.port());
  CHECK(a.request(generate("mc-a", 2)).status == 200);
  CHECK(b.request(generate("mc-b", 2)).status == 200);
  CHECK(proxy.connections() == 2);

  HttpClient c("127.0.0.1", proxy.port());
  c.send(generate("mc-c", 2));  // the kernel completes the handshake; sluice does not accept
  CHECK(c.read_head(milliseconds(500)) == ReadStatus::timeout);
  CHECK(proxy.connections() == 2);
  a.abort();
  REQUIRE(c.read_head(milliseconds(3000)) == ReadStatus::ok);
  CHECK(c.response().status == 200);
  CHECK(proxy.connections() <= 2);
}

TEST_CASE("per-key parked cap: 429 user_queue_full for that user only") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(
      sim.url(), R"({"max_concurrency": 1, "per_key": {"label": "user", "max_queue": 2}})"));
  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("pk-blocker", 20000, {{"X-User-Id", "blocker"}}, true));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));

  std::vector<std::future<HttpResponse>> alice;
  for (int i = 0; i < 2; ++i) {
    alice.push_back(send_async(
        proxy.port(), generate("pk-alice-" + std::to_string(i), 2, {{"X-User-Id", "alice"}})));
    const std::int64_t parked = i + 1;
    REQUIRE(proxy.wait_for([parked](const core::Snapshot& s) { return s.parked == parked; }));
  }
  const auto start = Clock::now();
  HttpResponse third =
      http_request(proxy.port(), generate("pk-alice-2", 2, {{"X-User-Id", "alice"}}));
  CHECK(elapsed_ms(start) < 500);
  CHECK(third.status == 429);
  CHECK(third.header("X-Sluice-Reason") == "user_queue_full");
  CHECK(third.header("Retry-After").has_value());
  CHECK(json::parse(third.body)["error"].get<std::string>().find("user") != std::string::npos);
  check_access(logs.access_line("pk-alice-2"), 429, "user_queue_full");

  // Bob is not affected by Alice's cap.
  auto bob = send_async(proxy.port(), generate("pk-bob", 2, {{"X-User-Id", "bob"}}));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 3; }));
  blocker.abort();
  CHECK(bob.get().status == 200);
  for (auto& r : alice)
    CHECK(r.get().status == 200);
  expect_idle(proxy);
}

TEST_CASE("malformed HTTP: 400 with a JSON error, and the connection closes") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", kLimits));
  const std::vector<std::string> inputs = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01z\r\n\r\n",
      "GET / HTTP/7.0\r\nHost: x\r\n\r\n",
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
      std::string("GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a") + '\0' + "b\r\n\r\n",
      // RFC 9112 §6.3: a request Transfer-Encoding whose final coding is not chunked.
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n",
      "POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
  };
  for (const auto& input : inputs) {
    INFO(json(input).dump());
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(input);
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 400);
    CHECK(json::parse(client.response().body)["error"].get<std::string>().find("malformed") !=
          std::string::npos);
    CHECK(client.wait_closed(milliseconds(3000)));
  }
  auto lines = logs.wait_lines([](const json& l) { return l["status"] == 400; }, inputs.size());
  CHECK(lines.size() == inputs.size());
  for (const auto& line : lines)
    check_access(line, 400, "invalid_request");

  SUBCASE("a malformed chunked body on a scheduled route: 400, connection closed") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad-chunk\r\n"
        "Transfer-Encoding: chunked\r\n\r\nZZZ\r\nnot hex\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 400);
    CHECK(client.wait_closed(milliseconds(3000)));
    check_access(logs.access_line("bad-chunk"), 400, "invalid_request");
  }

  SUBCASE("a malformed chunked body on a pass-through route: 400") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad-chunk-pass\r\n"
        "Transfer-Encoding: chunked\r\n\r\nZZZ\r\nnot hex\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 400);
    check_access(logs.access_line("bad-chunk-pass"), 400, "invalid_request");
  }

  SUBCASE("a body behind a non-chunked Transfer-Encoding is never read as the next request") {
    // Without the check, the bytes after the head would be parsed as a second request and
    // forwarded: the shape of request smuggling.
    const std::string smuggled =
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    for (const char* target : {"/api/generate", "/api/blobs/sha256:00"}) {
      INFO(target);
      HttpClient client("127.0.0.1", proxy.port());
      client.send_raw(std::string("POST ") + target +
                      " HTTP/1.1\r\nHost: x\r\nX-Request-Id: te-gzip\r\n"
                      "Transfer-Encoding: gzip\r\n\r\n" +
                      smuggled);
      REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
      client.read_to_end(milliseconds(2000));
      CHECK(client.response().status == 400);
      CHECK(client.response().header("X-Request-Id") == "te-gzip");
      client.next_response();
      CHECK(client.read_head(milliseconds(3000)) == ReadStatus::closed);  // no second answer
    }
  }

  SUBCASE("a transfer coding other than chunked: 501 naming it, connection closed") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: te-501\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().status == 501);
    CHECK(json::parse(client.response().body)["error"].get<std::string>().find("\"gzip\"") !=
          std::string::npos);
    CHECK(client.wait_closed(milliseconds(3000)));
    check_access(logs.access_line("te-501"), 501, "invalid_request");
  }

  SUBCASE("a target that is not a path: 400") {
    HttpResponse r = http_request(proxy.port(), HttpRequest{.target = "http://example.com/"});
    CHECK(r.status == 400);
  }

  CHECK(sim.stats()["total"] == 0);
  expect_idle(proxy);
  check_still_serving(proxy);
}

TEST_CASE("bodies sluice must read: not JSON or wrongly typed is 400 in the route's dialect") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  struct Case {
    std::string target, body, expect;
  };
  const std::vector<Case> cases = {
      {"/api/generate", "", "JSON"},
      {"/api/generate", "[1,2]", "object"},
      {"/api/generate", "\"text\"", "object"},
      {"/api/generate", R"({"model":5})", "model"},
      {"/api/generate", R"({"model":"mistral","stream":"yes"})", "stream"},
      {"/api/generate", R"({"model":"mistral","prompt":7})", "prompt"},
      {"/api/chat", R"({"model":"mistral","messages":"hi"})", "messages"},
      {"/api/chat", R"({"model":"mistral","messages":[{"role":"user","content":5}]})", "content"},
      {"/api/embed", R"({"model":"mistral","input":{"a":1}})", "input"},
      {"/api/generate", std::string(100, '[') + std::string(100, ']'), "nest"},
      {"/v1/chat/completions", "{", "JSON"},
      {"/v1/chat/completions", R"({"model":"mistral","max_completion_tokens":1.5})",
       "max_completion_tokens"},
      {"/v1/embeddings", R"({"model":"mistral","input":[true]})", "input"},
  };
  HttpClient client("127.0.0.1", proxy.port());  // a 400 after the body was read keeps it open
  for (const auto& c : cases) {
    INFO(c.target << " " << c.body.substr(0, 80));
    HttpResponse r = client.request(post_json(c.target, c.body));
    CHECK(r.status == 400);
    json body = json::parse(r.body);
    const bool openai = c.target.rfind("/v1/", 0) == 0;
    std::string message =
        openai ? body["error"]["message"].get<std::string>() : body["error"].get<std::string>();
    CHECK(message.find(c.expect) != std::string::npos);
    if (openai) CHECK(body["error"]["type"] == "invalid_request_error");
  }
  CHECK(sim.stats()["total"] == 0);
  expect_idle(proxy);
}

TEST_CASE("sluice's own errors keep the client's X-Request-Id (answer and access line)") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", kLimits));
  struct Case {
    HttpRequest request;
    int status;
  };
  std::vector<Case> cases = {
      {generate("id-bad-priority", 2, {{"X-Priority", "urgent"}}), 400},
      {generate("id-bad-workload", 2, {{"X-Workload", "nope"}}), 400},
      {post_json("/api/generate", "{", {{"X-Request-Id", "id-bad-json"}}), 400},
      {post_json("/api/generate", std::string(3000, ' '), {{"X-Request-Id", "id-too-big"}}), 413},
      {HttpRequest{.target = "http://x/", .headers = {{"X-Request-Id", "id-bad-target"}}}, 400},
  };
  for (const auto& c : cases) {
    std::string id;
    for (const auto& h : c.request.headers)
      if (h.name == "X-Request-Id") id = h.value;
    INFO(id);
    HttpResponse r = http_request(proxy.port(), c.request);
    CHECK(r.status == c.status);
    CHECK(r.header("X-Request-Id") == id);
    check_access(logs.access_line(id), c.status, "invalid_request");
  }
}

TEST_CASE("Expect: 100-continue is answered; a bad header is refused before the upload") {
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  const std::string body = generate.body(2);

  SUBCASE("scheduled route: 100, then the body, then the answer") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n");
    // Nothing final arrives before the body was sent; the 100 does.
    CHECK(client.read_head(milliseconds(300)) == ReadStatus::timeout);
    CHECK(client.response().interim_status == 100);
    client.send_raw(body);
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(3000));
    CHECK(client.response().status == 200);
    // Expect is not forwarded upstream.
    CHECK_FALSE(sim.stats()["records"].back()["headers"].contains("expect"));
  }

  SUBCASE("scheduled route with a bad label header: 400 without a 100, connection closes") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "X-Priority: lots\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n");
    REQUIRE(client.read_head(milliseconds(2000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(2000));
    CHECK(client.response().interim_status == 0);
    CHECK(client.response().status == 400);
    CHECK(client.wait_closed(milliseconds(4000)));
  }

  SUBCASE("pass-through route: 100, then the body is streamed") {
    HttpClient client("127.0.0.1", proxy.port());
    const std::string show = R"({"model":"mistral"})";
    client.send_raw(
        "POST /api/show HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Length: " +
        std::to_string(show.size()) + "\r\n\r\n");
    CHECK(client.read_head(milliseconds(300)) == ReadStatus::timeout);
    CHECK(client.response().interim_status == 100);
    client.send_raw(show);
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    client.read_to_end(milliseconds(3000));
    CHECK(client.response().status == 200);
  }
  expect_idle(proxy);
}

TEST_CASE("pass-through uploads are streamed to the upstream, not buffered") {
  std::atomic<std::size_t> received{0};
  std::promise<void> let_answer;
  auto answer = let_answer.get_future().share();
  ScriptedUpstream upstream([&](int fd, int) {
    std::string head = ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(5000));
    received = head.size() - (head.find("\r\n\r\n") + 4);
    char buffer[65536];
    while (received < 1'000'000) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return;
      ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return;
      received += static_cast<std::size_t>(n);
    }
    answer.wait_for(std::chrono::seconds(5));
    ScriptedUpstream::send_all(
        fd,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
        "{\"status\":\"success\"}");
  });
  ProxyUnderTest proxy(proxy_config(upstream.url(), R"({"max_concurrency": 1})"));
  HttpClient client("127.0.0.1", proxy.port());
  client.send_raw(
      "POST /api/blobs/sha256:abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
  const std::string half(500'000, 'b');
  client.send_raw(half);
  // The first half reaches the upstream while the client still holds the second.
  const auto until = Clock::now() + milliseconds(5000);
  while (received < 400'000 && Clock::now() < until)
    std::this_thread::sleep_for(milliseconds(5));
  CHECK(received >= 400'000);
  CHECK(received <= 500'000);
  client.send_raw(half);
  let_answer.set_value();
  REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
  client.read_to_end(milliseconds(2000));
  CHECK(client.response().status == 200);
  CHECK(received == 1'000'000);
  expect_idle(proxy);
}

TEST_CASE("a pooled upstream connection closed under a request is retried once on a fresh one") {
  std::atomic<int> answered{0};
  ScriptedUpstream upstream([&](int fd, int index) {
    const std::string ok =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    std::string data = ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(5000));
    if (data.find("\r\n\r\n") == std::string::npos) return;
    ++answered;  // before the answer, so the client cannot see it first
    ScriptedUpstream::send_all(fd, ok);
    if (index == 0) {
      // Keep-alive promised, but the next request on this connection is read and dropped.
      ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(5000));
      return;  // closes the connection without answering
    }
    for (;;) {
      data = ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(5000));
      if (data.find("\r\n\r\n") == std::string::npos) return;
      ++answered;
      ScriptedUpstream::send_all(fd, ok);
    }
  });
  ProxyUnderTest proxy(proxy_config(upstream.url(), R"({"max_concurrency": 1})"));
  HttpResponse first = http_request(proxy.port(), HttpRequest{.target = "/api/tags"});
  CHECK(first.status == 200);
  HttpResponse second = http_request(proxy.port(), HttpRequest{.target = "/api/tags"});
  CHECK(second.status == 200);
  CHECK(upstream.connections() == 2);
  CHECK(answered == 2);
  HttpResponse third = http_request(proxy.port(), post_json("/api/generate", generate.body(2)));
  CHECK(third.status == 200);
  expect_idle(proxy);
}

namespace {

std::string run_probe(ProxyUnderTest& proxy) {
  std::promise<std::string> result;
  auto future = result.get_future();
  proxy.on_io([&] {
    boost::asio::co_spawn(
        proxy.io(),
        [&]() -> boost::asio::awaitable<void> {
          result.set_value(co_await proxy.proxy().probe_upstream());
        },
        boost::asio::detached);
    return 0;
  });
  REQUIRE(future.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  return future.get();
}

}  // namespace

TEST_CASE("probe_upstream: up, refused, silent, 5xx, interim, not HTTP") {
  SUBCASE("up") {
    Simulator sim;
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
    CHECK(run_probe(proxy) == "");
  }
  SUBCASE("refused") {
    std::uint16_t dead = 0;
    {
      ScriptedUpstream gone([](int, int) {});
      dead = gone.port();
    }
    ProxyUnderTest proxy(
        proxy_config("http://127.0.0.1:" + std::to_string(dead), R"({"max_concurrency": 1})"));
    CHECK(run_probe(proxy).rfind("connect: ", 0) == 0);
  }
  SUBCASE("silent: timeout after connect_timeout") {
    ScriptedUpstream silent(
        [](int fd, int) { ScriptedUpstream::read_until(fd, "never", milliseconds(3000)); });
    ProxyUnderTest proxy(
        proxy_config(silent.url(), R"({"max_concurrency": 1})", R"("connect_timeout": "200ms")"));
    const auto start = Clock::now();
    CHECK(run_probe(proxy) == "timeout");
    CHECK(elapsed_ms(start) < 1500);
  }
  SUBCASE("5xx") {
    ScriptedUpstream failing([](int fd, int) {
      ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(3000));
      ScriptedUpstream::send_all(fd,
                                 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    });
    ProxyUnderTest proxy(proxy_config(failing.url(), R"({"max_concurrency": 1})"));
    CHECK(run_probe(proxy) == "status 503");
  }
  SUBCASE("an interim 1xx before the answer is read past (Beast's parser, not atoi)") {
    ScriptedUpstream interim([](int fd, int) {
      ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(3000));
      ScriptedUpstream::send_all(fd,
                                 "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                                 "Content-Length: 2\r\n\r\n{}");
    });
    ProxyUnderTest proxy(proxy_config(interim.url(), R"({"max_concurrency": 1})"));
    CHECK(run_probe(proxy) == "");
  }
  SUBCASE("not HTTP") {
    ScriptedUpstream garbage([](int fd, int) {
      ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(3000));
      ScriptedUpstream::send_all(fd, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    ProxyUnderTest proxy(proxy_config(garbage.url(), R"({"max_concurrency": 1})"));
    CHECK(run_probe(proxy) == "not an HTTP response");
  }
}

TEST_CASE(
    "reconfigure: a higher max_concurrency admits parked requests at once; a restart-only "
    "change is refused") {
  Simulator sim({"--time-scale", "20", "--parallel", "4"});
  const std::string base = proxy_config(sim.url(), R"({"max_concurrency": 1})");
  ProxyUnderTest proxy(base);
  HttpClient blocker("127.0.0.1", proxy.port());
  blocker.send(generate("rc-blocker", 20000, {}, true));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  auto parked = send_async(proxy.port(), generate("rc-parked", 2));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));

  auto load = [](const std::string& text) {
    auto parsed = config::parse_config(text, "test");
    REQUIRE(parsed.ok());
    parsed.config->listen = config::HostPort{"127.0.0.1", 0};
    return std::make_shared<const config::Config>(std::move(*parsed.config));
  };
  auto moved = load(proxy_config("http://127.0.0.1:1", R"({"max_concurrency": 2})"));
  std::string refused = proxy.on_io([&] { return proxy.proxy().reconfigure(moved); });
  CHECK(refused.find("upstream.url") != std::string::npos);
  CHECK(proxy.snapshot().parked == 1);  // nothing changed

  auto wider = load(proxy_config(sim.url(), R"({"max_concurrency": 2})"));
  CHECK(proxy.on_io([&] { return proxy.proxy().reconfigure(wider); }) == "");
  CHECK(parked.get().status == 200);  // admitted without waiting for the blocker
  // (The parked request's slot is released just after its client got the last byte.)
  CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  blocker.abort();
  expect_idle(proxy);
}

TEST_CASE("graceful shutdown: parked get 503 shutting_down, running finish, then close_all cuts") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  HttpClient running("127.0.0.1", proxy.port());
  running.send(generate("sd-running", 20000, {}, true));
  REQUIRE(running.read_head(milliseconds(3000)) == ReadStatus::ok);
  auto parked = send_async(proxy.port(), generate("sd-parked", 2));
  REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));
  HttpClient idle("127.0.0.1", proxy.port());
  CHECK(idle.request(HttpRequest{.target = "/api/version"}).status == 200);

  std::promise<void> idle_reached;
  auto idle_future = idle_reached.get_future();
  proxy.on_io([&] {
    proxy.proxy().begin_shutdown();
    boost::asio::co_spawn(
        proxy.io(),
        [&]() -> boost::asio::awaitable<void> {
          co_await proxy.proxy().wait_idle();
          idle_reached.set_value();
        },
        boost::asio::detached);
    return 0;
  });
  HttpResponse rejected = parked.get();
  CHECK(rejected.status == 503);
  CHECK(rejected.header("X-Sluice-Reason") == "shutting_down");
  CHECK(rejected.header("Retry-After").has_value());
  check_access(logs.access_line("sd-parked"), 503, "shutting_down");
  CHECK(idle.wait_closed(milliseconds(2000)));  // idle kept-alive connections close
  CHECK_THROWS(http_request(proxy.port(), HttpRequest{.target = "/"}, milliseconds(1000)));

  // The running stream continues...
  BodyChunk chunk;
  CHECK(running.read_chunk(chunk, milliseconds(2000)) == ReadStatus::ok);
  CHECK(idle_future.wait_for(milliseconds(100)) == std::future_status::timeout);
  // ...until the drain timeout's close_all() cuts it.
  proxy.on_io([&] {
    proxy.proxy().close_all();
    return 0;
  });
  CHECK(running.read_to_end(milliseconds(3000)) == ReadStatus::closed);
  CHECK(idle_future.wait_for(milliseconds(3000)) == std::future_status::ready);
  // Cut by sluice itself: counted as shutting_down, not as the client's or the upstream's doing.
  check_access(logs.access_line("sd-running"), 200, "shutting_down");
  expect_idle(proxy);
  CHECK(sim_record(sim, "sd-running")["cancelled"] == true);
}

TEST_CASE("API keys: priority clamped to the key's maximum; trusted gateways; keys never logged") {
  LogCapture logs(config::LogLevel::trace);
  Simulator sim({"--time-scale", "20"});
  const std::string greedy = "sk-greedy-0123456789", normal = "sk-normal-0123456789",
                    gateway = "sk-gateway-0123456789";
  const std::string auth = R"("auth": {"keys": [
      {"name": "greedy", "sha256": ")" +
                           auth::sha256_hex(greedy) +
                           R"(", "user": "greedy", "max_priority": 1},
      {"name": "normal", "sha256": ")" +
                           auth::sha256_hex(normal) +
                           R"(", "user": "normal", "max_priority": 1000000},
      {"name": "gateway", "sha256": ")" +
                           auth::sha256_hex(gateway) +
                           R"(", "user": "gateway", "trusted_gateway": true}]})";
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", auth));

  SUBCASE("X-Priority: 1000000 from a key allowed 1 does not jump the queue") {
    HttpClient blocker("127.0.0.1", proxy.port());
    blocker.send(generate("k-blocker", 20000, {{"X-Api-Key", normal}}, true));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
    std::vector<std::future<HttpResponse>> responses;
    std::vector<std::string> order_sent;
    for (int i = 0; i < 8; ++i) {
      const bool is_greedy = i < 4;
      const std::string id = (is_greedy ? "k-greedy-" : "k-normal-") + std::to_string(i);
      responses.push_back(send_async(
          proxy.port(), generate(id, 2,
                                 {{"Authorization", "Bearer " + (is_greedy ? greedy : normal)},
                                  {"X-Priority", "1000000"},
                                  {"X-Tokens", "10"}})));
      const std::int64_t n = i + 1;
      REQUIRE(proxy.wait_for([n](const core::Snapshot& s) { return s.parked == n; }));
    }
    blocker.abort();
    for (auto& r : responses)
      CHECK(r.get().status == 200);
    std::vector<std::string> users;
    const json stats = sim.stats();
    for (const auto& record : stats["records"]) {
      const std::string id = record["headers"].value("x-request-id", "");
      if (id.rfind("k-greedy", 0) == 0) users.push_back("greedy");
      if (id.rfind("k-normal", 0) == 0) users.push_back("normal");
    }
    REQUIRE(users.size() == 8);
    INFO(json(users).dump());
    int normal_first = 0;
    for (int i = 0; i < 4; ++i)
      normal_first += users[static_cast<std::size_t>(i)] == "normal";
    CHECK(normal_first >= 3);  // without the clamp both ask 1e6 and would alternate
  }

  SUBCASE("a trusted gateway passes its users through; other keys cannot") {
    HttpClient via_gateway("127.0.0.1", proxy.port());
    via_gateway.send(
        generate("k-gw", 20000, {{"X-Api-Key", gateway}, {"X-User-Id", "carol"}}, true));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
    bool carol = false;
    for (const auto& k : proxy.snapshot().keys)
      carol = carol || (k.label == "user" && k.value == "carol");
    CHECK(carol);
    via_gateway.abort();
    auto line = logs.access_line("k-gw");
    REQUIRE(line.has_value());
    CHECK((*line)["user"] == "carol");
    CHECK(http_request(proxy.port(),
                       generate("k-claim", 2, {{"X-Api-Key", normal}, {"X-User-Id", "carol"}}))
              .status == 200);
    CHECK((*logs.access_line("k-claim"))["user"] == "normal");
  }

  SUBCASE("neither a valid nor an invalid key appears in any log line or metric") {
    const std::string wrong = "sk-wrong-9876543210";
    std::vector<HttpRequest> requests = {
        generate("k-log-1", 2, {{"Authorization", "Bearer " + normal}}),
        generate("k-log-2", 2, {{"X-Api-Key", normal}}),
        generate("k-log-3", 2, {{"Authorization", "Bearer " + wrong}}),
        generate("k-log-4", 2, {{"X-Api-Key", wrong}}),
        generate("k-log-5", 2, {{"Authorization", "Basic " + wrong}}),
        HttpRequest{.target = "/api/tags", .headers = {{"X-Api-Key", normal}}},
        generate("k-log-6", 2, {{"X-Api-Key", normal}, {"X-Priority", "bad"}}),
    };
    for (const auto& r : requests)
      http_request(proxy.port(), r);
    CHECK(logs.wait_lines([](const json&) { return true; }, requests.size()).size() >=
          requests.size());
    const std::string text = logs.text();
    CHECK(text.find("k-log-1") != std::string::npos);  // the capture works
    for (const std::string& secret :
         {normal, wrong, std::string("0123456789"), std::string("9876543210")}) {
      INFO(secret);
      CHECK(text.find(secret) == std::string::npos);
      CHECK(proxy.scrape().find(secret) == std::string::npos);
    }
    const json stats = sim.stats();
    for (const auto& record : stats["records"]) {
      CHECK_FALSE(record["headers"].contains("authorization"));
      CHECK_FALSE(record["headers"].contains("x-api-key"));
    }
  }
  expect_idle(proxy);
}
