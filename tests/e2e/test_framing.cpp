// Message framing across the proxy, end to end: what a client or an upstream says about
// framing (Content-Length, Transfer-Encoding, the Connection header naming them, interim 1xx
// responses) can never make sluice forward one message as two, or two as one.
//
//  * Request smuggling through `Connection: Content-Length`: a body that is itself a complete
//    request is never forwarded as a separate request (scheduled and pass-through routes, with
//    and without API keys), and the next client never receives someone else's answer.
//  * Responses whose Connection header names Content-Length still reach the client framed.
//  * RFC 9112 rules at the client edge: Host, duplicate Content-Length, HTTP/1.0 with
//    Transfer-Encoding.
//  * Upstream interim responses: 100 Continue and 103 Early Hints are read past; 101 is 502.
//
// An in-process Proxy in front of sluice-sim (what Ollama would do with the bytes) or of a
// scripted raw upstream that records every request head it is sent.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hardening_support.hpp"
#include "sluice/auth/auth.hpp"

using namespace sluice;
using namespace sluice::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

/// A complete POST /api/generate request, as bytes: what a smuggler puts in a body.
std::string inner_generate() {
  const std::string body =
      json{{"model", "mistral"}, {"prompt", "smuggled"}, {"stream", false}}.dump();
  return "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

/// A request whose Connection header names its own Content-Length.
std::string connection_names_length(const std::string& method_target, const std::string& body,
                                    const std::string& extra_headers = "") {
  return method_target + " HTTP/1.1\r\nHost: x\r\n" + extra_headers +
         "Connection: keep-alive, Content-Length\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

/// Reads one response on `client` to its end; returns it.
HttpResponse read_response(HttpClient& client) {
  REQUIRE(client.read_head(milliseconds(5000)) == ReadStatus::ok);
  REQUIRE(client.read_to_end(milliseconds(5000)) == ReadStatus::end);
  return client.response();
}

/// The next client, on a fresh connection, gets its own answer to GET /api/version.
void check_next_client_gets_version(ProxyUnderTest& proxy,
                                    const std::vector<Header>& headers = {}) {
  HttpRequest version{.target = "/api/version", .headers = headers};
  for (int i = 0; i < 3; ++i) {
    HttpResponse r = http_request(proxy.port(), version);
    CHECK(r.status == 200);
    const json body = json::parse(r.body, nullptr, false);
    CHECK(body.is_object());
    CHECK(body.contains("version"));
    CHECK_FALSE(body.contains("response"));  // not a generation's answer
  }
}

/// A raw upstream that records the head of every request and the body bytes framed by its
/// Content-Length, and answers each with `answer`.
struct RecordingUpstream {
  explicit RecordingUpstream(std::string answer)
      : answer(std::move(answer)), server([this](int fd, int) { serve(fd); }) {}

  void serve(int fd) {
    std::string data;
    for (;;) {
      data = ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(5000), std::move(data));
      const std::size_t end = data.find("\r\n\r\n");
      if (end == std::string::npos) return;
      std::string head = data.substr(0, end + 4);
      data.erase(0, end + 4);
      std::size_t length = 0;
      const auto at = head.find("Content-Length: ");
      if (at != std::string::npos) length = std::stoul(head.substr(at + 16));
      while (data.size() < length) {
        const std::size_t before = data.size();
        data = ScriptedUpstream::read_until(fd, std::string(length + 1, '\x7f'), milliseconds(200),
                                            std::move(data));
        if (data.size() == before) break;
      }
      {
        std::lock_guard lock(mutex);
        heads.push_back(head);
        bodies.push_back(data.substr(0, std::min(length, data.size())));
      }
      data.erase(0, std::min(length, data.size()));
      ScriptedUpstream::send_all(fd, answer);
    }
  }
  std::vector<std::string> recorded_heads() {
    std::lock_guard lock(mutex);
    return heads;
  }
  std::vector<std::string> recorded_bodies() {
    std::lock_guard lock(mutex);
    return bodies;
  }

  std::string answer;
  std::mutex mutex;
  std::vector<std::string> heads, bodies;
  ScriptedUpstream server;
};

const std::string kJsonAnswer =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

}  // namespace

TEST_CASE("Connection: Content-Length cannot smuggle a request past the scheduler") {
  Simulator sim({"--time-scale", "20"});

  SUBCASE("pass-through route, no keys: the body stays a body") {
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(connection_names_length("POST /api/show", inner_generate()));
    HttpResponse show = read_response(client);
    CHECK(show.status != 0);
    check_next_client_gets_version(proxy);
    CHECK(sim.stats()["total"] == 0);  // no generation ever reached the upstream
    expect_idle(proxy);
  }

  SUBCASE("scheduled route: answered once, nothing after it") {
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
    const std::string body = json{
        {"model", "mistral"},
        {"prompt", "framed"},
        {"stream", false},
        {"options",
         {{"num_predict", 2}}}}.dump();
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(connection_names_length("POST /api/generate", body));
    HttpResponse answer = read_response(client);
    CHECK(answer.status == 200);
    CHECK(json::parse(answer.body)["done"] == true);
    check_next_client_gets_version(proxy);
    CHECK(sim.stats()["total"] == 1);
    expect_idle(proxy);
  }

  SUBCASE("with API keys: the smuggled request carries no key and never runs") {
    const std::string key = "sk-framing-0123456789";
    const std::string auth = R"("auth": {"keys": [{"name": "app", "sha256": ")" +
                             auth::sha256_hex(key) + R"(", "user": "app"}]})";
    ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})", "", auth));
    for (const char* target : {"POST /api/show", "POST /api/blobs/sha256:00"}) {
      INFO(target);
      HttpClient client("127.0.0.1", proxy.port());
      client.send_raw(connection_names_length(target, inner_generate(),
                                              "Authorization: Bearer " + key + "\r\n"));
      HttpResponse first = read_response(client);
      CHECK(first.status != 0);
    }
    check_next_client_gets_version(proxy, {{"Authorization", "Bearer " + key}});
    CHECK(sim.stats()["total"] == 0);
    expect_idle(proxy);
  }
}

TEST_CASE("what the upstream receives is framed by sluice, whatever Connection names") {
  RecordingUpstream upstream(kJsonAnswer);
  ProxyUnderTest proxy(proxy_config(upstream.server.url(), R"({"max_concurrency": 1})"));
  const std::string inner = inner_generate();
  const std::string generate_body =
      json{{"model", "mistral"}, {"prompt", "framed"}, {"stream", false}}.dump();
  struct Case {
    const char* name;
    std::string request;
    std::string body;
  };
  const Case cases[] = {
      {"pass-through with a body", connection_names_length("POST /api/show", inner), inner},
      {"pass-through upload", connection_names_length("POST /api/blobs/sha256:00", inner), inner},
      {"scheduled", connection_names_length("POST /api/generate", generate_body), generate_body},
  };
  std::size_t expected_requests = 0;
  for (const Case& c : cases) {
    INFO(c.name);
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(c.request);
    HttpResponse r = read_response(client);
    CHECK(r.status == 200);
    ++expected_requests;
    // One request per client request: the body never became a second one.
    const auto heads = upstream.recorded_heads();
    const auto bodies = upstream.recorded_bodies();
    REQUIRE(heads.size() == expected_requests);
    INFO(heads.back());
    CHECK(heads.back().find("Content-Length: " + std::to_string(c.body.size()) + "\r\n") !=
          std::string::npos);
    CHECK(heads.back().find("Connection:") == std::string::npos);
    CHECK(bodies.back() == c.body);
  }
  expect_idle(proxy);
}

TEST_CASE("an upstream response whose Connection names Content-Length reaches the client framed") {
  RecordingUpstream upstream(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive, Content-Length\r\n"
      "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  ProxyUnderTest proxy(proxy_config(upstream.server.url(), R"({"max_concurrency": 1})"));
  const std::string body = json{{"model", "mistral"}, {"prompt", "x"}, {"stream", false}}.dump();
  HttpClient client("127.0.0.1", proxy.port());
  // Three requests on one kept-alive client connection: each answer must be delimited.
  for (const HttpRequest& request :
       {HttpRequest{.target = "/api/version"}, post_json("/api/generate", body),
        HttpRequest{.target = "/api/tags"}}) {
    INFO(request.target);
    client.send(request);
    HttpResponse r = read_response(client);
    CHECK(r.status == 200);
    CHECK(r.header("Content-Length") == "2");
    CHECK(r.body == "{}");
  }
  CHECK(upstream.recorded_heads().size() == 3);
  expect_idle(proxy);
}

TEST_CASE("RFC 9112 at the client edge: Host, duplicate Content-Length, HTTP/1.0 chunked") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20"});
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1})"));
  const std::string body = R"({"model":"mistral","prompt":"x","stream":false})";
  const std::string length = std::to_string(body.size());
  struct Row {
    const char* name;
    std::string request;
    const char* contains;
  };
  const Row rows[] = {
      {"HTTP/1.1 without Host", "GET /api/version HTTP/1.1\r\nX-Request-Id: f1\r\n\r\n",
       "without Host"},
      {"two Host lines",
       "GET /api/version HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Request-Id: f2\r\n\r\n",
       "Host given more than once"},
      {"two equal Content-Length lines",
       "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: f3\r\nContent-Length: " + length +
           "\r\nContent-Length: " + length + "\r\n\r\n" + body,
       "Content-Length given more than once"},
      {"a Content-Length list",
       "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: f4\r\nContent-Length: " + length +
           ", " + length + "\r\n\r\n" + body,
       "Content-Length"},
      {"two Content-Length lines on a pass-through route",
       "POST /api/show HTTP/1.1\r\nHost: x\r\nX-Request-Id: f5\r\nContent-Length: 2\r\n"
       "Content-Length: 2\r\n\r\n{}",
       "Content-Length given more than once"},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(row.request);
    HttpResponse r = read_response(client);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"].get<std::string>().find(row.contains) != std::string::npos);
    CHECK(client.wait_closed(milliseconds(3000)));
  }
  for (const char* id : {"f1", "f2", "f3", "f4", "f5"}) {
    INFO(id);
    check_access(logs.access_line(id), 400, "invalid_request");
  }
  CHECK(sim.stats()["total"] == 0);

  SUBCASE("HTTP/1.0 with Transfer-Encoding: served, then the connection closes") {
    HttpClient client("127.0.0.1", proxy.port());
    char size[16];
    std::snprintf(size, sizeof size, "%zx", body.size());
    client.send_raw(
        "POST /api/generate HTTP/1.0\r\nConnection: keep-alive\r\nX-Request-Id: f10\r\n"
        "Transfer-Encoding: chunked\r\n\r\n" +
        std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n");
    HttpResponse r = read_response(client);
    CHECK(r.status == 200);
    CHECK(client.wait_closed(milliseconds(3000)));
    check_access(logs.access_line("f10"), 200, "ok");
  }
  SUBCASE("HTTP/1.0 without Host is fine") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw("GET /api/version HTTP/1.0\r\n\r\n");
    HttpResponse r = read_response(client);
    CHECK(r.status == 200);
  }
  expect_idle(proxy);
}

TEST_CASE("upstream interim responses: 100 and 103 are read past, 101 is 502") {
  struct Case {
    const char* name;
    std::string interim;
    int status;
  };
  std::string many;
  for (int i = 0; i < 9; ++i)
    many += "HTTP/1.1 100 Continue\r\n\r\n";
  const Case cases[] = {
      {"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", 200},
      {"103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n", 200},
      {"100 then 103", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n", 200},
      {"101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 502},
      {"nine interim responses", many, 502},
  };
  const std::string body = json{{"model", "mistral"}, {"prompt", "x"}, {"stream", false}}.dump();
  for (const Case& c : cases) {
    INFO(c.name);
    RecordingUpstream upstream(c.interim + kJsonAnswer);
    ProxyUnderTest proxy(proxy_config(upstream.server.url(), R"({"max_concurrency": 1})"));
    for (const HttpRequest& request :
         {HttpRequest{.target = "/api/version"}, post_json("/api/generate", body)}) {
      INFO(request.target);
      const auto start = Clock::now();
      HttpClient client("127.0.0.1", proxy.port());
      client.send(request);
      HttpResponse r = read_response(client);
      CHECK(r.status == c.status);
      if (c.status == 200) CHECK(r.body == "{}");
      if (c.status == 502)
        CHECK(json::parse(r.body)["error"].get<std::string>().find("upstream") !=
              std::string::npos);
      CHECK(Clock::now() - start < milliseconds(2000));  // not after a keep-alive timeout
    }
    expect_idle(proxy);
  }
}
