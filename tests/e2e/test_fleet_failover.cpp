// Failover in a fleet, end to end: an in-process sluice in front of two backends serving the same
// model. A backend that cannot be reached (its simulator killed before the health check noticed)
// and one that accepts the request and closes without answering (or says nothing within its
// header_timeout) are all invisible to the client: the request is answered by the other backend,
// which X-Sluice-Backend names. With fleet.retry_before_headers off, the close before headers is
// answered 502 (the silence 504) as before. A backend
// killed mid-stream ends its client's stream with the documented error line, the next requests
// go to the other backend, and a simulator restarted on the same port brings the backend back.
// A request refused while the other backend is busy waits in the queue for it (not 502).
#include <doctest/doctest.h>

#include <csignal>
#include <future>
#include <memory>
#include <optional>
#include <set>

#include "hardening_support.hpp"
#include "proxy_harness.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

/// A sluice-sim child on a given port (0: a free one), killable with SIGKILL (no drain: its
/// connections are cut as a crash cuts them).
class SimProcess {
 public:
  explicit SimProcess(std::uint16_t port = 0) {
    std::string listen = "127.0.0.1:";
    listen.append(std::to_string(port));
    child_ = std::make_unique<ChildProcess>(
        SLUICE_SIM_PATH,
        std::vector<std::string>{"--listen", listen, "--seed", "7", "--log-level", "warn",
                                 "--models", "alpha", "--decode-rate", "50", "--time-scale", "10"});
    port_ = child_->wait_for_port();
  }
  std::uint16_t port() const { return port_; }
  std::string url() const {
    std::string text = "http://127.0.0.1:";
    text.append(std::to_string(port_));
    return text;
  }
  void kill() {
    child_->signal(SIGKILL);
    child_->wait_exit(5s);
  }

 private:
  std::unique_ptr<ChildProcess> child_;
  std::uint16_t port_ = 0;
};

/// Two backends (max_concurrency 1 each) and the fleet settings `fleet` (a JSON object's
/// members).
std::string two_backends(const std::string& url_a, const std::string& url_b,
                         const std::string& fleet, const std::string& models = "") {
  std::string text = R"({"admin_listen": "", "upstreams": [{"name": "gpu-a", "url": ")";
  text.append(url_a);
  text.append(R"(", "max_concurrency": 1)");
  text.append(models);
  text.append(R"(}, {"name": "gpu-b", "url": ")");
  text.append(url_b);
  text.append(R"(", "max_concurrency": 1)");
  text.append(models);
  text.append(R"(}], "fleet": {)");
  text.append(fleet);
  text.append(R"(}, "scheduler": {"max_queue": 100}})");
  return text;
}

HttpRequest generate(const std::string& id, int tokens = 3, bool stream = false) {
  std::string body = R"({"model":"alpha","prompt":"hi","stream":)";
  body.append(stream ? "true" : "false");
  body.append(R"(,"options":{"num_predict":)");
  body.append(std::to_string(tokens));
  body.append("}}");
  return HttpRequest{.method = "POST",
                     .target = "/api/generate",
                     .headers = {{"X-Request-Id", id}},
                     .body = std::move(body)};
}

bool all_up(const sluice::core::Snapshot& snap) {
  if (snap.backends.size() != 2) return false;
  for (const auto& b : snap.backends) {
    if (!b.up) return false;
  }
  return true;
}

bool up(const sluice::core::Snapshot& snap, std::size_t i) {
  return snap.backends.size() > i && snap.backends[i].up;
}

/// An upstream that passes health checks (and says alpha is resident) but closes every
/// connection that carries a generate request, after reading it, without a byte of answer; or,
/// `silent`, says nothing until sluice gives up and closes it.
class ClosingUpstream {
 public:
  explicit ClosingUpstream(bool silent = false)
      : server_([this, silent](int fd, int) {
          std::string data;
          for (;;) {
            data = ScriptedUpstream::read_until(fd, "\r\n\r\n", 3000ms, std::move(data));
            const auto end = data.find("\r\n\r\n");
            if (end == std::string::npos) return;
            const std::string head = data.substr(0, end + 4);
            data.erase(0, end + 4);
            if (head.starts_with("POST")) {
              // The whole request read (its JSON body ends in "}}"), then closed: a FIN, no
              // byte of answer.
              data = ScriptedUpstream::read_until(fd, "}}", 3000ms, std::move(data));
              ++closed_;
              if (silent) ScriptedUpstream::read_until(fd, "(never sent)", 5000ms);
              return;
            }
            const std::string body = head.find("/api/ps") != std::string::npos
                                         ? R"({"models":[{"name":"alpha","model":"alpha"}]})"
                                         : R"({"version":"0.0.0-test"})";
            std::string response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
            response.append("Content-Length: ");
            response.append(std::to_string(body.size()));
            response.append("\r\n\r\n");
            response.append(body);
            ScriptedUpstream::send_all(fd, response);
          }
        }) {}
  std::string url() const { return server_.url(); }
  int closed() const { return closed_.load(); }

 private:
  std::atomic<int> closed_{0};
  ScriptedUpstream server_;
};

}  // namespace

TEST_CASE("failover: a backend that refuses connections is invisible to the client") {
  std::optional<SimProcess> a(std::in_place);
  SimProcess b;
  // Slow health checks: the requests below reach gpu-a's closed port before any check notices.
  ProxyUnderTest proxy(two_backends(a->url(), b.url(), R"("health_interval": "30s")"));
  REQUIRE(proxy.wait_for(all_up));
  a->kill();
  a.reset();

  for (int i = 0; i < 4; ++i) {
    std::string id = "refused-";
    id.append(std::to_string(i));
    HttpResponse r = http_request(proxy.port(), generate(id));
    INFO("request " << id << ": " << r.status << " " << r.body);
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-b");
  }
  // gpu-a was really tried (placement prefers it on a tie) and counted as unreachable.
  const std::string metrics = proxy.scrape();
  CHECK(metric_sum(metrics, "sluice_upstream_errors_total", "kind=\"connect_failed\"") >= 1);
  CHECK(proxy.snapshot().in_flight == 0);
}

TEST_CASE("failover: with the other backend busy, a refused request waits for it, not 502") {
  std::optional<SimProcess> a(std::in_place);
  SimProcess b;
  // gpu-a's port is closed before any health check notices, and two failures stay below
  // eject_after: the scheduler still sees gpu-a up with a free slot, so the second request is
  // placed there while gpu-b is busy with a slow one.
  LogCapture logs;
  ProxyUnderTest proxy(
      two_backends(a->url(), b.url(), R"("health_interval": "30s", "eject_after": 3)"));
  REQUIRE(proxy.wait_for(all_up));
  a->kill();
  a.reset();

  // ~1 s on gpu-b (50 tokens/s at --time-scale 10); it moves there after gpu-a refuses it.
  auto slow = std::async(std::launch::async,
                         [&proxy] { return http_request(proxy.port(), generate("slow", 500)); });
  REQUIRE(proxy.wait_for([](const sluice::core::Snapshot& snap) {
    return snap.backends.size() == 2 && snap.backends[1].in_flight == 1 && up(snap, 0);
  }));
  SUBCASE("it is answered by the other backend") {
    HttpResponse r = http_request(proxy.port(), generate("waits"));
    INFO(r.status << " " << r.body);
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-b");
    HttpResponse first = slow.get();
    CHECK(first.status == 200);
    CHECK(first.header("X-Sluice-Backend") == "gpu-b");
    CHECK(logs.text().find("request waits: backend gpu-a failed (") != std::string::npos);
    CHECK(logs.text().find("no other backend has room, back in the queue") != std::string::npos);
  }
  SUBCASE("with progress on, it is kept informed while back in the queue") {
    // Admitted at once onto gpu-a (no progress head then), refused, back in the queue behind
    // "slow": there it gets the progress head and a keep-alive, then gpu-b's answer.
    HttpRequest waits = generate("waits", 3, /*stream=*/true);
    waits.headers.push_back({"X-Sluice-Progress", "1"});
    HttpResponse r = http_request(proxy.port(), waits);
    INFO(r.status << " " << r.body);
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Progress") == "1");
    CHECK_FALSE(r.header("X-Sluice-Backend").has_value());  // parked: the failed one is not it
    const auto first_line = r.body.substr(0, r.body.find('\n'));
    CHECK(first_line.find(R"("sluice":{"queue_position":)") != std::string::npos);
    CHECK(r.body.find(R"("done":true)") != std::string::npos);
    CHECK(slow.get().status == 200);
  }
  expect_idle(proxy);
}

TEST_CASE("failover: a reset before response headers is retried once on the other backend") {
  ClosingUpstream closing;
  SimProcess b;
  const std::string models = R"(, "models": ["alpha"])";

  SUBCASE("retry_before_headers on (the default)") {
    LogCapture logs;
    ProxyUnderTest proxy(
        two_backends(closing.url(), b.url(), R"("health_interval": "30s")", models));
    REQUIRE(proxy.wait_for(all_up));
    HttpResponse r = http_request(proxy.port(), generate("reset-on"));
    INFO(r.body);
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-b");
    CHECK(closing.closed() == 1);
    // The access line names the backend that answered; the failover was logged.
    auto line = logs.access_line("reset-on");
    REQUIRE(line.has_value());
    CHECK((*line)["backend"] == "gpu-b");
    CHECK((*line)["status"] == 200);
    CHECK(logs.text().find("request reset-on: failover from backend gpu-a to gpu-b") !=
          std::string::npos);
    expect_idle(proxy);
  }
  SUBCASE("retry_before_headers off: 502 as without a fleet") {
    ProxyUnderTest proxy(two_backends(closing.url(), b.url(),
                                      R"("health_interval": "30s", "retry_before_headers": false)",
                                      models));
    REQUIRE(proxy.wait_for(all_up));
    HttpResponse r = http_request(proxy.port(), generate("reset-off"));
    CHECK(r.status == 502);
    CHECK(r.header("X-Sluice-Backend") == "gpu-a");
    CHECK(nlohmann::json::parse(r.body)["error"] ==
          "upstream closed the connection before responding");
    CHECK(closing.closed() == 1);
    expect_idle(proxy);
  }
}

TEST_CASE("failover: silence before response headers (header_timeout) is retried once") {
  ClosingUpstream silent(/*silent=*/true);
  SimProcess b;
  const std::string backend_extra = R"(, "models": ["alpha"], "header_timeout": "300ms")";

  SUBCASE("retry_before_headers on") {
    ProxyUnderTest proxy(
        two_backends(silent.url(), b.url(), R"("health_interval": "30s")", backend_extra));
    REQUIRE(proxy.wait_for(all_up));
    HttpResponse r = http_request(proxy.port(), generate("silent-on"));
    INFO(r.body);
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == "gpu-b");
    CHECK(silent.closed() == 1);
    CHECK(metric_sum(proxy.scrape(), "sluice_upstream_errors_total", "kind=\"header_timeout\"") ==
          1);
    expect_idle(proxy);
  }
  SUBCASE("retry_before_headers off: 504 as without a fleet") {
    ProxyUnderTest proxy(two_backends(silent.url(), b.url(),
                                      R"("health_interval": "30s", "retry_before_headers": false)",
                                      backend_extra));
    REQUIRE(proxy.wait_for(all_up));
    HttpResponse r = http_request(proxy.port(), generate("silent-off"));
    CHECK(r.status == 504);
    CHECK(r.header("X-Sluice-Backend") == "gpu-a");
    expect_idle(proxy);
  }
}

TEST_CASE("failover: a backend killed mid-stream; the others serve; it returns after restart") {
  std::optional<SimProcess> sims[2];
  sims[0].emplace();
  sims[1].emplace();
  ProxyUnderTest proxy(two_backends(
      sims[0]->url(), sims[1]->url(),
      R"("health_interval": "100ms", "health_timeout": "80ms", "base_ejection": "200ms")"));
  REQUIRE(proxy.wait_for(all_up));

  HttpClient streaming("127.0.0.1", proxy.port());
  streaming.send(generate("mid-stream", 5000, true));
  REQUIRE(streaming.read_head(5000ms) == ReadStatus::ok);
  REQUIRE(streaming.response().status == 200);
  const std::string victim = streaming.response().header("X-Sluice-Backend").value_or("");
  REQUIRE((victim == "gpu-a" || victim == "gpu-b"));
  const std::size_t dead = victim == "gpu-a" ? 0 : 1;
  const std::string survivor = dead == 0 ? "gpu-b" : "gpu-a";
  BodyChunk chunk;
  REQUIRE(streaming.read_chunk(chunk, 5000ms) == ReadStatus::ok);
  const std::uint16_t dead_port = sims[dead]->port();
  sims[dead]->kill();
  sims[dead].reset();

  // The stream ends with the documented error line, properly terminated.
  CHECK(streaming.read_to_end(5000ms) == ReadStatus::end);
  const std::string& body = streaming.response().body;
  const auto last_line_start = body.rfind('\n', body.size() - 2);
  const std::string last_line =
      body.substr(last_line_start == std::string::npos ? 0 : last_line_start + 1);
  CHECK(nlohmann::json::parse(last_line) ==
        nlohmann::json{{"error", "upstream connection lost mid-response"}});

  // New requests go to the survivor, whether or not the health check noticed yet.
  for (int i = 0; i < 3; ++i) {
    std::string id = "after-";
    id.append(std::to_string(i));
    HttpResponse r = http_request(proxy.port(), generate(id));
    CHECK(r.status == 200);
    CHECK(r.header("X-Sluice-Backend") == survivor);
  }
  REQUIRE(proxy.wait_for([dead](const auto& snap) { return !up(snap, dead); }));

  // A simulator restarted on the same port: the health check brings the backend back, and two
  // requests at once (one slot per backend) use both backends again.
  sims[dead].emplace(dead_port);
  REQUIRE(proxy.wait_for([](const auto& snap) { return all_up(snap); }, 10s));
  auto send = [&](const std::string& id) {
    return std::async(std::launch::async, [&proxy, id] {
      return http_request(proxy.port(), generate(id, 100)).header("X-Sluice-Backend").value_or("");
    });
  };
  auto first = send("back-0");
  auto second = send("back-1");
  std::set<std::string> used{first.get(), second.get()};
  CHECK(used == std::set<std::string>{"gpu-a", "gpu-b"});
  expect_idle(proxy);
}
