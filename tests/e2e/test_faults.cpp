// The fault matrix: every upstream fault sluice-sim can inject (X-Sim-Fault) and every stage at
// which a client can vanish. For each case the test asserts what the client sees (status, or how
// the stream ends), the request's access-log line (status, outcome, upstream_error), what the
// upstream saw (a cancelled generation where there was one), and — always — that afterwards
// nothing is parked or in flight and sluice_inflight is 0.
//
// An in-process Proxy in front of a sluice-sim child process; the simulator runs 20x faster than
// real time (a token every ~0.8 ms), timeouts in the test config are a few hundred ms.
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "generate_requests.hpp"
#include "hardening_support.hpp"

using namespace sluice;
using namespace sluice::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

const GenerateRequests generate{.prompt = "Tell me about faults", .stream = true};

/// The last non-empty line of a body.
std::string last_line(const std::string& body) {
  std::size_t end = body.find_last_not_of('\n');
  if (end == std::string::npos) return {};
  std::size_t start = body.rfind('\n', end);
  return body.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

const char* kScheduler = R"({"max_concurrency": 1})";
const char* kUpstreamTimeouts = R"("header_timeout": "600ms", "idle_timeout": "400ms")";

}  // namespace

TEST_CASE("upstream faults: what the client sees, the access line, and nothing leaks") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20", "--hang-limit", "5"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kScheduler, kUpstreamTimeouts));

  SUBCASE("refuse: 502 at once") {
    const auto start = Clock::now();
    HttpResponse r =
        http_request(proxy.port(), generate("f-refuse", 5, {{"X-Sim-Fault", "refuse"}}));
    CHECK(elapsed_ms(start) < 1000);
    CHECK(r.status == 502);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("upstream") != std::string::npos);
    check_access(logs.access_line("f-refuse"), 502, "upstream_error", "reset");
  }

  SUBCASE("error-500: passed through as it is") {
    HttpResponse r =
        http_request(proxy.port(), generate("f-500", 5, {{"X-Sim-Fault", "error-500"}}));
    CHECK(r.status == 500);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("simulated") != std::string::npos);
    check_access(logs.access_line("f-500"), 500, "upstream_5xx");
  }

  SUBCASE("hang-before-headers: 504 after upstream.header_timeout; the upstream is cancelled") {
    const auto start = Clock::now();
    HttpResponse r =
        http_request(proxy.port(), generate("f-hang", 5, {{"X-Sim-Fault", "hang-before-headers"}}));
    const long waited = elapsed_ms(start);
    CHECK(r.status == 504);
    CHECK(waited >= 590);
    CHECK(waited < 2500);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("no response headers") !=
          std::string::npos);
    check_access(logs.access_line("f-hang"), 504, "upstream_error", "header_timeout");
    CHECK(sim_record(sim, "f-hang")["cancelled"] == true);
  }

  SUBCASE("hang-mid-stream: tokens, then one error line after upstream.idle_timeout") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("f-hang-mid", 20, {{"X-Sim-Fault", "hang-mid-stream=3"}}));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    CHECK(client.response().status == 200);
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    CHECK(client.wait_closed(milliseconds(2000)));
    const std::string& body = client.response().body;
    INFO(body);
    CHECK(body.find("\"done\":true") == std::string::npos);
    CHECK(body.find("\"response\"") != std::string::npos);  // the tokens before the hang
    CHECK(json::parse(last_line(body))["error"].get<std::string>().find("sent nothing") !=
          std::string::npos);
    check_access(logs.access_line("f-hang-mid"), 200, "upstream_error", "idle_timeout");
    CHECK(sim_record(sim, "f-hang-mid")["cancelled"] == true);
  }

  SUBCASE("reset-mid-stream: tokens, then one error line; the connection closes") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("f-reset", 20, {{"X-Sim-Fault", "reset-mid-stream=3"}}));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    CHECK(client.wait_closed(milliseconds(2000)));
    const std::string& body = client.response().body;
    INFO(body);
    CHECK(body.find("\"done\":true") == std::string::npos);
    CHECK(json::parse(last_line(body))["error"].get<std::string>().find("lost") !=
          std::string::npos);
    check_access(logs.access_line("f-reset"), 200, "upstream_error", "reset");
  }

  SUBCASE("reset-mid-stream on SSE: the stream ends with an error event") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(post_json(
        "/v1/chat/completions",
        R"({"model":"mistral","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"x"}]})",
        {{"X-Sim-Fault", "reset-mid-stream=3"}, {"X-Request-Id", "f-reset-sse"}}));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    const std::string& body = client.response().body;
    INFO(body);
    CHECK(body.find("[DONE]") == std::string::npos);
    const std::string event = last_line(body);
    REQUIRE(event.rfind("data: ", 0) == 0);
    CHECK(json::parse(event.substr(6))["error"]["message"].is_string());
    check_access(logs.access_line("f-reset-sse"), 200, "upstream_error", "reset");
  }

  SUBCASE("error-line: the upstream's own error line is relayed and counted as an upstream error") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("f-errline", 20, {{"X-Sim-Fault", "error-line=3"}}));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    const std::string& body = client.response().body;
    INFO(body);
    CHECK(body.find("\"done\":true") == std::string::npos);
    CHECK(json::parse(last_line(body))["error"].get<std::string>().find("simulated") !=
          std::string::npos);
    check_access(logs.access_line("f-errline"), 200, "upstream_5xx");
    // A clean end of the upstream's body: the connection stays usable.
    HttpResponse next = client.request(generate("f-errline-next", 2, {}, false));
    CHECK(next.status == 200);
  }

  SUBCASE("slow-first-token below header_timeout: a normal, complete answer") {
    // 4000 simulated ms = 200 real ms at --time-scale 20.
    HttpResponse r = http_request(
        proxy.port(), generate("f-slow", 5, {{"X-Sim-Fault", "slow-first-token=4000"}}));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"done\":true") != std::string::npos);
    auto line = logs.access_line("f-slow");
    check_access(line, 200, "ok");
    CHECK((*line)["ttfb_ms"].get<double>() >= 190);
    CHECK((*line)["output_tokens"] == 5);
  }

  SUBCASE("slow-first-token beyond header_timeout: 504") {
    HttpResponse r = http_request(
        proxy.port(), generate("f-slower", 5, {{"X-Sim-Fault", "slow-first-token=40000"}}));
    CHECK(r.status == 504);
    check_access(logs.access_line("f-slower"), 504, "upstream_error", "header_timeout");
    CHECK(sim_record(sim, "f-slower")["cancelled"] == true);
  }

  SUBCASE("upstream 500 on a pass-through route") {
    // Pass-through routes carry no fault header handling in the simulator; a closed port stands
    // in for a dead upstream below. Here: an unknown path is the upstream's own 404.
    HttpResponse r = http_request(
        proxy.port(), HttpRequest{.target = "/nope", .headers = {{"X-Request-Id", "f-404"}}});
    CHECK(r.status == 404);
    check_access(logs.access_line("f-404"), 404, "ok");
  }

  expect_idle(proxy);
  // sluice is still serving.
  HttpResponse after = http_request(proxy.port(), generate("after", 2, {}, false));
  CHECK(after.status == 200);
  expect_idle(proxy);
}

TEST_CASE("a dead upstream: 502 on scheduled and pass-through routes, access lines say why") {
  LogCapture logs;
  std::uint16_t dead_port = 0;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    dead_port = acceptor.local_endpoint().port();
  }
  ProxyUnderTest proxy(
      proxy_config("http://127.0.0.1:" + std::to_string(dead_port), kScheduler, kUpstreamTimeouts));
  HttpResponse scheduled = http_request(proxy.port(), generate("dead-1", 2));
  CHECK(scheduled.status == 502);
  check_access(logs.access_line("dead-1"), 502, "upstream_error", "connect_failed");
  HttpResponse tags = http_request(
      proxy.port(), HttpRequest{.target = "/api/tags", .headers = {{"X-Request-Id", "dead-2"}}});
  CHECK(tags.status == 502);
  check_access(logs.access_line("dead-2"), 502, "upstream_error", "connect_failed");
  expect_idle(proxy);
  const std::string metrics = proxy.scrape();
  CHECK(metric_sum(metrics, "sluice_upstream_errors_total", "kind=\"connect_failed\"") == 2);
}

namespace {

/// Holds the single slot with a long generation so that the next request parks.
struct Blocker {
  explicit Blocker(ProxyUnderTest& proxy) : client("127.0.0.1", proxy.port()) {
    client.send(generate("blocker", 20000));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
  }
  HttpClient client;
};

}  // namespace

TEST_CASE("clients that vanish at every stage: the slot comes back, the queue stays consistent") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20", "--hang-limit", "10"});
  ProxyUnderTest proxy(proxy_config(sim.url(), kScheduler, kUpstreamTimeouts));

  SUBCASE("while parked (FIN, RST, half-close): it leaves the queue; the upstream never sees it") {
    Blocker blocker(proxy);
    struct Leave {
      const char* id;
      int how;  // 0 FIN, 1 RST, 2 half-close
    };
    for (Leave leave :
         {Leave{"v-parked-fin", 0}, Leave{"v-parked-rst", 1}, Leave{"v-parked-half", 2}}) {
      INFO(leave.id);
      HttpClient parked("127.0.0.1", proxy.port());
      parked.send(generate(leave.id, 5));
      REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 1; }));
      if (leave.how == 2) {
        parked.half_close();
        // sluice treats a half-close as gone (as Ollama does): the connection closes.
        CHECK(parked.wait_closed(milliseconds(2000)));
      } else {
        parked.abort(leave.how == 1);
      }
      CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.parked == 0; },
                           milliseconds(2000)));
      auto line = logs.access_line(leave.id);
      check_access(line, 0, "client_gone");
      CHECK((*line)["queue_ms"].is_number());
      CHECK(sim_record(sim, leave.id, milliseconds(0)).is_null());
    }
    CHECK(proxy.snapshot().in_flight == 1);  // the blocker is untouched
    blocker.client.abort();
  }

  SUBCASE("while sending its request body: nothing reaches the queue or the upstream") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send_raw(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Request-Id: v-body\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":\"mis");
    std::this_thread::sleep_for(milliseconds(50));
    client.abort();
    check_access(logs.access_line("v-body"), 0, "client_gone");
    CHECK(sim_record(sim, "v-body", milliseconds(0)).is_null());
  }

  SUBCASE("admitted, before the response headers: the upstream generation is cancelled") {
    HttpClient client("127.0.0.1", proxy.port());
    // The first token comes after 100 simulated s (5 real s): no headers yet when it leaves.
    client.send(generate("v-prehead", 5, {{"X-Sim-Fault", "slow-first-token=100000"}}));
    REQUIRE(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 1; }));
    std::this_thread::sleep_for(milliseconds(50));  // the request reached the upstream
    client.abort();
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; },
                         milliseconds(1000)));
    check_access(logs.access_line("v-prehead"), 0, "client_gone");
    CHECK(sim_record(sim, "v-prehead")["cancelled"] == true);
  }

  SUBCASE("after the response headers, before any body") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("v-head", 20000));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    client.abort();
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; },
                         milliseconds(1000)));
    check_access(logs.access_line("v-head"), 200, "client_gone");
    CHECK(sim_record(sim, "v-head")["cancelled"] == true);
  }

  SUBCASE("mid-stream, FIN and RST") {
    for (bool reset : {false, true}) {
      const std::string id = reset ? "v-mid-rst" : "v-mid-fin";
      INFO(id);
      HttpClient client("127.0.0.1", proxy.port());
      client.send(generate(id, 20000));
      BodyChunk chunk;
      for (int i = 0; i < 5; ++i)
        REQUIRE(client.read_chunk(chunk, milliseconds(3000)) == ReadStatus::ok);
      client.abort(reset);
      CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; },
                           milliseconds(1000)));
      auto line = logs.access_line(id);
      check_access(line, 200, "client_gone");
      CHECK(sim_record(sim, id)["cancelled"] == true);
    }
  }

  SUBCASE("half-closed mid-stream: treated as gone, the stream stops") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("v-mid-half", 20000));
    BodyChunk chunk;
    REQUIRE(client.read_chunk(chunk, milliseconds(3000)) == ReadStatus::ok);
    client.half_close();
    // The body is never completed: the connection closes under it.
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::closed);
    CHECK(proxy.wait_for([](const core::Snapshot& s) { return s.in_flight == 0; },
                         milliseconds(1000)));
    check_access(logs.access_line("v-mid-half"), 200, "client_gone");
    CHECK(sim_record(sim, "v-mid-half")["cancelled"] == true);
  }

  SUBCASE("half-closed right after a complete request (before admission)") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("v-half-early", 20000));
    client.half_close();
    CHECK(client.wait_closed(milliseconds(3000)));
    // The EOF is there from the start: the request is cancelled before any answer (if it
    // reached the upstream at all, the generation is cancelled there).
    check_access(logs.access_line("v-half-early"), 0, "client_gone");
    json record = sim_record(sim, "v-half-early", milliseconds(300));
    CHECK((record.is_null() || record["cancelled"] == true));
  }

  SUBCASE("a pass-through request whose client leaves") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(HttpRequest{.target = "/api/tags", .headers = {{"X-Request-Id", "v-pass"}}});
    client.abort(true);
    auto line = logs.access_line("v-pass");
    REQUIRE(line.has_value());
    // Either it finished before the reset was seen, or it was cut: never anything else.
    CHECK(((*line)["outcome"] == "ok" || (*line)["outcome"] == "client_gone"));
  }

  expect_idle(proxy);
  // A client leaving is not the upstream's failure, even though sluice closed that connection.
  CHECK(metric_sum(proxy.scrape(), "sluice_upstream_errors_total") == 0);
  HttpResponse after = http_request(proxy.port(), generate("after", 2, {}, false));
  CHECK(after.status == 200);
  expect_idle(proxy);
}

TEST_CASE("max_inflight_duration cuts a request that holds its slot too long") {
  LogCapture logs;
  Simulator sim({"--time-scale", "20", "--hang-limit", "10"});
  ProxyUnderTest proxy(proxy_config(sim.url(),
                                    R"({"max_concurrency": 1, "max_inflight_duration": "500ms"})",
                                    R"("header_timeout": "10s", "idle_timeout": "10s")"));

  SUBCASE("before the response headers: 504") {
    const auto start = Clock::now();
    HttpResponse r =
        http_request(proxy.port(), generate("i-head", 5, {{"X-Sim-Fault", "hang-before-headers"}}));
    CHECK(r.status == 504);
    CHECK(elapsed_ms(start) >= 490);
    CHECK(elapsed_ms(start) < 2500);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("max_inflight_duration") !=
          std::string::npos);
    check_access(logs.access_line("i-head"), 504, "inflight_timeout");
  }

  SUBCASE("mid-stream: the stream ends with an error line") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("i-mid", 20, {{"X-Sim-Fault", "hang-mid-stream=3"}}));
    REQUIRE(client.read_head(milliseconds(3000)) == ReadStatus::ok);
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    const std::string& body = client.response().body;
    INFO(body);
    CHECK(json::parse(last_line(body))["error"].get<std::string>().find("max_inflight_duration") !=
          std::string::npos);
    check_access(logs.access_line("i-mid"), 200, "inflight_timeout");
  }

  SUBCASE("a long healthy stream is cut too (the bound is on the whole request)") {
    HttpClient client("127.0.0.1", proxy.port());
    client.send(generate("i-long", 20000));
    CHECK(client.read_to_end(milliseconds(3000)) == ReadStatus::end);
    CHECK(client.response().body.find("\"done\":true") == std::string::npos);
    check_access(logs.access_line("i-long"), 200, "inflight_timeout");
    CHECK(sim_record(sim, "i-long")["cancelled"] == true);
  }

  expect_idle(proxy);
}

TEST_CASE("a long pass-through request is cancelled upstream soon after its client leaves") {
  // /api/pull with "stream": false can be silent for minutes. Pass-through requests are watched
  // for their client leaving only once they have lasted Proxy::Impl::kDeferredWatchDelay
  // (50 ms), so this checks that the deferred watch does fire: the upstream must see its
  // connection closed well within a second of the client going, for a FIN and for a reset.
  for (bool reset : {false, true}) {
    CAPTURE(reset);
    LogCapture logs;
    std::promise<void> request_seen;
    std::promise<Clock::time_point> upstream_closed;
    ScriptedUpstream upstream([&](int fd, int) {
      ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(3000));
      request_seen.set_value();
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 5000);
      char byte;
      if (::recv(fd, &byte, 1, 0) == 0) upstream_closed.set_value(Clock::now());
    });
    ProxyUnderTest proxy(proxy_config(upstream.url(), kScheduler));
    HttpClient client("127.0.0.1", proxy.port());
    client.send(post_json("/api/pull", R"({"model": "mistral", "stream": false})",
                          {{"X-Request-Id", "pull-gone"}}));
    REQUIRE(request_seen.get_future().wait_for(milliseconds(3000)) == std::future_status::ready);
    // Well past the deferred watch's delay, so it is armed when the client goes.
    std::this_thread::sleep_for(milliseconds(150));
    const auto left = Clock::now();
    client.abort(reset);
    auto closed = upstream_closed.get_future();
    REQUIRE(closed.wait_for(milliseconds(2000)) == std::future_status::ready);
    CHECK(std::chrono::duration_cast<milliseconds>(closed.get() - left).count() < 500);
    auto line = logs.access_line("pull-gone");
    REQUIRE(line.has_value());
    CHECK((*line)["outcome"] == "client_gone");
    expect_idle(proxy);
  }
}

TEST_CASE("a pass-through client that leaves before the deferred watch is armed is still noticed") {
  // The client goes at once (before the 50 ms delay): the watch armed on the next tick sees the
  // closed socket, and the upstream connection is closed shortly after.
  LogCapture logs;
  std::promise<void> request_seen;
  std::promise<void> upstream_closed;
  ScriptedUpstream upstream([&](int fd, int) {
    ScriptedUpstream::read_until(fd, "\r\n\r\n", milliseconds(3000));
    request_seen.set_value();
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 5000);
    char byte;
    if (::recv(fd, &byte, 1, 0) == 0) upstream_closed.set_value();
  });
  ProxyUnderTest proxy(proxy_config(upstream.url(), kScheduler));
  HttpClient client("127.0.0.1", proxy.port());
  client.send(post_json("/api/pull", R"({"model": "mistral", "stream": false})",
                        {{"X-Request-Id", "pull-early"}}));
  REQUIRE(request_seen.get_future().wait_for(milliseconds(3000)) == std::future_status::ready);
  client.abort(false);
  CHECK(upstream_closed.get_future().wait_for(milliseconds(1000)) == std::future_status::ready);
  auto line = logs.access_line("pull-early");
  REQUIRE(line.has_value());
  CHECK((*line)["outcome"] == "client_gone");
  expect_idle(proxy);
}
