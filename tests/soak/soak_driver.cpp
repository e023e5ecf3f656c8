// sluice-soak: the traffic driver and the checker of scripts/soak.sh.
//
// For --seconds it drives mixed traffic through a running sluice from --clients threads: every
// scheduled route (native NDJSON and JSON, OpenAI SSE and JSON, embeddings), pass-through GETs,
// all tiers, a flooding user that hits its per-key cap, short X-Queue-Timeouts, a few invalid
// requests, and clients that leave at a random stage (while sending the body, while parked or
// waiting for headers, after the headers, mid-stream, by half-closing). Every request carries
// its own X-Request-Id and the driver records what it saw. Meanwhile it samples sluice's RSS.
//
// Then it checks, and exits non-zero if any check fails:
//   1. sluice is alive and still serves a scheduled and a pass-through request;
//   2. /admin/state says parked 0 and in flight 0, and every sluice_inflight gauge is 0;
//   3. every request the driver sent has exactly one access-log line (nothing lost, nothing
//      doubled), and for every request the driver did not abandon, the line's status is the
//      status the driver saw and its outcome is one that status allows;
//   4. the access-log outcomes, summed, equal sluice_requests_total by outcome;
//   5. RSS is flat after warm-up: the median of the last quarter of the samples is at most
//      10 % + 1 MiB above the median of the second quarter (the first quarter is warm-up).
// The report (what was sent, what came back, the RSS series summary) goes to stdout.
//
// Only loopback addresses are accepted; every loop is bounded by the deadline.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"

namespace {

using nlohmann::json;
using sluice::test::BodyChunk;
using sluice::test::Header;
using sluice::test::HttpClient;
using sluice::test::HttpRequest;
using sluice::test::HttpResponse;
using sluice::test::ReadStatus;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

/// How the driver's client behaves for one request.
enum class Leave { never, during_body, before_head, after_head, mid_stream, half_close };
constexpr const char* leave_name(Leave l) {
  switch (l) {
    case Leave::never:
      return "never";
    case Leave::during_body:
      return "during_body";
    case Leave::before_head:
      return "before_head";
    case Leave::after_head:
      return "after_head";
    case Leave::mid_stream:
      return "mid_stream";
    case Leave::half_close:
      return "half_close";
  }
  return "?";
}

/// What the driver saw for one request.
struct Observation {
  std::string id;
  std::string route;
  Leave leave = Leave::never;
  bool abandoned = false;     ///< the driver left before the response was complete
  int status = 0;             ///< 0: no response head
  bool complete = false;      ///< the whole body arrived
  bool done = false;          ///< a done:true object / [DONE] / a whole JSON body
  bool error_line = false;    ///< the stream ended with an error line/event
  bool cut = false;           ///< the connection closed before the body was complete
  std::string tail;           ///< the body's last line (for failure messages)
  std::string reason;         ///< X-Sluice-Reason
  bool invalid_sent = false;  ///< the driver sent a deliberately invalid request
  std::string failure;        ///< driver-side failure (timeout, lost connection): a check failure
};

struct Options {
  std::uint16_t proxy_port = 0;
  std::uint16_t admin_port = 0;
  int pid = 0;
  std::string access_log;
  double seconds = 60;
  int clients = 12;
  unsigned seed = 1;
  double leave_rate = 0.15;
  double invalid_rate = 0.02;
  bool rss_check = true;  ///< off for sanitizer builds (ASan's quarantine holds freed memory)
};

std::uint16_t port_of(const std::string& url) {
  const std::string prefix = "http://127.0.0.1:";
  if (url.rfind(prefix, 0) != 0) throw std::runtime_error("only http://127.0.0.1:PORT: " + url);
  return static_cast<std::uint16_t>(std::stoi(url.substr(prefix.size())));
}

std::string last_line(const std::string& body) {
  std::size_t end = body.find_last_not_of('\n');
  if (end == std::string::npos) return {};
  std::size_t start = body.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return body.substr(start, end - start + 1);
}

/// Fills in done / error_line from a received body: a stream is done when it ended as its
/// protocol says (`"done":true` for NDJSON, `data: [DONE]` for SSE); any other complete body is.
void inspect_body(Observation& o, const HttpResponse& r, bool complete) {
  const std::string line = last_line(r.body);
  o.tail = r.header("Content-Type").value_or("") + " | " + line.substr(0, 200);
  const std::string payload = line.rfind("data: ", 0) == 0 ? line.substr(6) : line;
  json value = json::parse(payload, nullptr, false);
  if (value.is_object() && value.contains("error") && r.status == 200) {
    o.error_line = true;
    return;
  }
  if (!complete) return;
  const std::string type = r.header("Content-Type").value_or("");
  if (type.rfind("application/x-ndjson", 0) == 0) {
    o.done = value.is_object() && value.value("done", false);
  } else if (type.rfind("text/event-stream", 0) == 0) {
    o.done = payload == "[DONE]";
  } else {
    o.done = true;
  }
}

class Driver {
 public:
  explicit Driver(Options options) : options_(std::move(options)) {}

  void run() {
    start_ = Clock::now();
    deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(options_.seconds));
    std::thread sampler([this] { sample_rss(); });
    std::vector<std::thread> workers;
    for (int i = 0; i < options_.clients; ++i)
      workers.emplace_back([this, i] { work(i); });
    for (auto& w : workers)
      w.join();
    stop_sampling_ = true;
    sampler.join();
  }

  int check() {
    int failures = 0;
    auto fail = [&](const std::string& what) {
      ++failures;
      std::printf("FAIL: %s\n", what.c_str());
    };
    auto ok = [](const std::string& what) { std::printf("ok:   %s\n", what.c_str()); };

    // 1. alive and serving.
    if (::kill(options_.pid, 0) != 0)
      fail("sluice (pid " + std::to_string(options_.pid) + ") is gone");
    {
      // An explicit, harmless fault (1 ms before the first token) keeps the simulator's random
      // faults (--fault-rate) off this request: a failure here is sluice's, not a dice roll.
      Observation o =
          one_request(999, 0,
                      sluice::test::post_json("/api/generate",
                                              R"({"model":"mistral","prompt":"final",)"
                                              R"("stream":false,"options":{"num_predict":3}})",
                                              {{"X-Sim-Fault", "slow-first-token=1"}}),
                      Leave::never);
      Observation p = one_request(999, 1, HttpRequest{.target = "/api/version"}, Leave::never);
      record(o);
      record(p);
      if (o.status == 200 && o.done && p.status == 200) {
        ok("sluice still serves (scheduled 200, pass-through 200)");
      } else {
        fail("final requests: scheduled " + std::to_string(o.status) + ", pass-through " +
             std::to_string(p.status));
      }
    }

    // 2. idle.
    json state;
    const auto idle_until = Clock::now() + std::chrono::seconds(15);
    for (;;) {
      state = admin_json("/admin/state");
      if (state.is_object() && state["totals"]["parked"] == 0 && state["totals"]["in_flight"] == 0)
        break;
      if (Clock::now() >= idle_until) break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    if (state.is_object() && state["totals"]["parked"] == 0 && state["totals"]["in_flight"] == 0) {
      ok("/admin/state: parked 0, in flight 0");
    } else {
      fail("/admin/state not idle: " + state.dump().substr(0, 400));
    }
    const std::string metrics = admin_text("/metrics");
    double inflight = 0;
    std::map<std::string, double> by_outcome;
    {
      std::istringstream lines(metrics);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("sluice_inflight{", 0) == 0)
          inflight += std::stod(line.substr(line.rfind(' ') + 1));
        if (line.rfind("sluice_requests_total{", 0) == 0) {
          auto at = line.find("outcome=\"");
          if (at == std::string::npos) continue;
          at += 9;
          std::string outcome = line.substr(at, line.find('"', at) - at);
          by_outcome[outcome] += std::stod(line.substr(line.rfind(' ') + 1));
        }
      }
    }
    if (metrics.find("sluice_inflight{") != std::string::npos && inflight == 0) {
      ok("sluice_inflight: 0");
    } else {
      fail("sluice_inflight sums to " + std::to_string(inflight));
    }

    // 3. one access line per request, consistent with what the driver saw.
    std::map<std::string, json> lines_by_id;
    std::map<std::string, int> line_count;
    std::map<std::string, double> log_outcomes;
    // Generous: under a loaded machine (sanitizer builds, parallel tests) the last lines can lag.
    const auto log_until = Clock::now() + std::chrono::seconds(30);
    for (;;) {
      lines_by_id.clear();
      line_count.clear();
      log_outcomes.clear();
      std::ifstream in(options_.access_log);
      for (std::string line; std::getline(in, line);) {
        json value = json::parse(line, nullptr, false);
        if (!value.is_object() || value.value("type", "") != "access") continue;
        log_outcomes[value.value("outcome", "?")] += 1;
        if (!value["request_id"].is_string()) continue;
        const std::string id = value["request_id"];
        lines_by_id[id] = value;
        line_count[id] += 1;
      }
      bool all = true;
      for (const auto& o : observations_)
        all = all && line_count.count(o.id);
      if (all || Clock::now() >= log_until) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    int missing = 0, doubled = 0, mismatched = 0, driver_failures = 0;
    std::set<std::string> ids;
    for (const auto& o : observations_) {
      ids.insert(o.id);
      if (!o.failure.empty()) {
        if (++driver_failures <= 5) fail("driver: " + o.id + ": " + o.failure);
      }
      auto count = line_count.find(o.id);
      if (count == line_count.end()) {
        if (++missing <= 5) fail("no access line for " + o.id + " (" + o.route + ")");
        continue;
      }
      if (count->second != 1) {
        if (++doubled <= 5) fail(std::to_string(count->second) + " access lines for " + o.id);
      }
      if (o.abandoned) continue;
      const json& line = lines_by_id[o.id];
      std::string why = consistency(o, line);
      if (!why.empty() && ++mismatched <= 10) {
        fail(o.id + ": " + why + " (seen: status " + std::to_string(o.status) +
             (o.complete ? ", complete" : "") + (o.cut ? ", cut" : "") + (o.done ? ", done" : "") +
             (o.error_line ? ", error line" : "") + ", last line " + o.tail + ") — logged " +
             line.dump());
      }
    }
    std::size_t foreign = 0;
    for (const auto& [id, n] : line_count)
      foreign += ids.count(id) ? 0 : static_cast<std::size_t>(n);
    if (missing == 0 && doubled == 0 && mismatched == 0 && driver_failures == 0 && foreign == 0) {
      ok("every one of " + std::to_string(observations_.size()) +
         " requests has exactly one access line, consistent with what the client saw");
    } else if (foreign != 0) {
      fail(std::to_string(foreign) + " access lines for requests the driver did not send");
    }
    if (missing + doubled + mismatched + driver_failures > 0) {
      fail(std::to_string(missing) + " missing, " + std::to_string(doubled) + " doubled, " +
           std::to_string(mismatched) + " inconsistent, " + std::to_string(driver_failures) +
           " driver failures");
    }

    // 4. the log and the counters agree.
    bool same = true;
    std::set<std::string> outcomes;
    for (const auto& [k, v] : by_outcome)
      outcomes.insert(k);
    for (const auto& [k, v] : log_outcomes)
      outcomes.insert(k);
    std::string table;
    for (const auto& k : outcomes) {
      const double m = by_outcome.count(k) ? by_outcome[k] : 0;
      const double l = log_outcomes.count(k) ? log_outcomes[k] : 0;
      same = same && m == l;
      char row[128];
      std::snprintf(row, sizeof row, "  %-16s metrics %8.0f  access log %8.0f\n", k.c_str(), m, l);
      table += row;
    }
    if (same) {
      ok("sluice_requests_total by outcome == access-log outcomes");
    } else {
      fail("sluice_requests_total by outcome != access-log outcomes");
    }
    std::printf("%s", table.c_str());

    // 5. RSS.
    if (!check_rss() && options_.rss_check) ++failures;
    report();
    return failures;
  }

 private:
  /// "" when the access line agrees with what the driver saw.
  static std::string consistency(const Observation& o, const json& line) {
    const int status = line["status"].is_number() ? line["status"].get<int>() : 0;
    const std::string outcome = line.value("outcome", "");
    if (status != o.status)
      return "status " + std::to_string(status) + " logged, " + std::to_string(o.status) + " seen";
    auto allowed = [&](std::initializer_list<const char*> set) {
      for (const char* s : set)
        if (outcome == s) return true;
      return false;
    };
    bool good = true;
    if (o.invalid_sent) {
      good = status == 400 && outcome == "invalid_request";
    } else if (status == 200 && (o.error_line || o.cut)) {
      good = allowed({"upstream_5xx", "upstream_error"});
    } else if (status == 200) {
      good = o.done && allowed({"ok"});
    } else if (status == 429 || (status == 503 && !o.reason.empty())) {
      good = outcome == o.reason;
    } else if (status == 502 || status == 504) {
      good = allowed({"upstream_error", "inflight_timeout"});
    } else if (status >= 500) {
      good = outcome == "upstream_5xx";
    } else {
      good = status < 500 && allowed({"ok"});
    }
    return good ? "" : "outcome " + outcome + " does not fit what the client saw";
  }

  void record(const Observation& o) {
    std::lock_guard lock(mutex_);
    observations_.push_back(o);
  }

  void work(int worker) {
    std::mt19937_64 rng(options_.seed * 1000003ULL + static_cast<unsigned>(worker));
    std::uniform_real_distribution<double> unit(0, 1);
    int n = 0;
    while (Clock::now() < deadline_) {
      Leave leave = Leave::never;
      if (unit(rng) < options_.leave_rate) {
        static constexpr Leave kinds[] = {Leave::during_body, Leave::before_head, Leave::after_head,
                                          Leave::mid_stream, Leave::half_close};
        leave = kinds[rng() % 5];
      }
      const bool scheduled = unit(rng) < 0.93;
      HttpRequest request = scheduled ? scheduled_request(rng, worker) : passthrough_request(rng);
      bool invalid = false;
      if (leave == Leave::never && scheduled && unit(rng) < options_.invalid_rate) {
        invalid = true;
        if (rng() % 2) {
          request.headers.push_back({"X-Priority", "urgent"});
        } else {
          request.body = "{\"model\": ";
        }
      }
      Observation o = one_request(worker, n++, std::move(request), leave, &rng);
      o.invalid_sent = invalid;
      const bool rejected = o.status == 429;
      record(o);
      // A client that was told to back off waits a little (the flooding user keeps coming).
      if (rejected) std::this_thread::sleep_for(milliseconds(20 + rng() % 80));
      if (worker == 0 && n % 200 == 0) progress();
    }
  }

  HttpRequest scheduled_request(std::mt19937_64& rng, int worker) {
    // Users: 24 ordinary ones, and workers 1-4 are all "flood", which sends back to back from
    // four connections and keeps hitting its per-key queue cap.
    const std::string user =
        worker >= 1 && worker <= 4 ? "flood" : "user" + std::to_string(rng() % 24);
    static const char* tiers[] = {"paid", "free", "open-source", ""};
    const std::string tier = tiers[rng() % 4];
    const int tokens = 1 + static_cast<int>(rng() % 60);
    std::vector<Header> headers = {{"X-User-Id", user}};
    if (!tier.empty()) headers.push_back({"X-Tier", tier});
    if (rng() % 8 == 0)
      headers.push_back({"X-Queue-Timeout", std::to_string(100 + rng() % 900) + "ms"});
    if (rng() % 10 == 0) headers.push_back({"X-Priority", std::to_string(1 + rng() % 20)});
    const bool stream = rng() % 3 != 0;
    json body;
    std::string target;
    switch (rng() % 6) {
      case 0:
      case 1:
        target = "/api/generate";
        body = {{"model", "mistral"},
                {"prompt", "soak " + std::to_string(rng() % 1000)},
                {"stream", stream},
                {"options", {{"num_predict", tokens}}}};
        break;
      case 2:
        target = "/api/chat";
        body = {{"model", "mistral"},
                {"messages", json::array({{{"role", "user"}, {"content", "soak chat"}}})},
                {"stream", stream},
                {"options", {{"num_predict", tokens}}}};
        break;
      case 3:
        target = "/v1/chat/completions";
        body = {{"model", "mistral"},
                {"messages", json::array({{{"role", "user"}, {"content", "soak sse"}}})},
                {"stream", stream},
                {"max_tokens", tokens}};
        break;
      case 4:
        target = "/v1/completions";
        body = {
            {"model", "mistral"}, {"prompt", "soak"}, {"stream", stream}, {"max_tokens", tokens}};
        break;
      default:
        target = "/api/embed";
        body = {{"model", "mistral"}, {"input", json::array({"a", "b", "c"})}};
        break;
    }
    return sluice::test::post_json(target, body.dump(), std::move(headers));
  }

  static HttpRequest passthrough_request(std::mt19937_64& rng) {
    static const char* targets[] = {"/api/tags", "/api/version", "/", "/api/ps", "/v1/models"};
    return HttpRequest{.target = targets[rng() % 5]};
  }

  /// Sends one request, leaving as `leave` says (random stage details from `rng`), and returns
  /// what was seen.
  Observation one_request(int worker, int n, HttpRequest request, Leave leave,
                          std::mt19937_64* rng = nullptr) {
    Observation o;
    o.id = "soak-" + std::to_string(worker) + "-" + std::to_string(n);
    request.headers.push_back({"X-Request-Id", o.id});
    o.route = request.method + " " + request.target;
    o.leave = leave;
    auto pick = [&](int below) { return rng ? static_cast<int>((*rng)() % below) : 0; };
    try {
      // A fresh connection per request (keep-alive reuse is covered by the e2e tests; a fresh
      // one makes "no access line" unambiguous).
      HttpClient client("127.0.0.1", options_.proxy_port);
      if (leave == Leave::during_body && !request.body.empty()) {
        std::string head = request.method + " " + request.target + " HTTP/1.1\r\nHost: x\r\n";
        for (const auto& h : request.headers)
          head += h.name + ": " + h.value + "\r\n";
        head += "Content-Length: " + std::to_string(request.body.size()) + "\r\n\r\n";
        client.send_raw(head + request.body.substr(0, request.body.size() / 2));
        std::this_thread::sleep_for(milliseconds(pick(50)));
        client.abort(pick(2) == 1);
        o.abandoned = true;
        return o;
      }
      client.send(request);
      if (leave == Leave::before_head || (leave == Leave::during_body)) {
        std::this_thread::sleep_for(milliseconds(pick(300)));
        client.abort(pick(2) == 1);
        o.abandoned = true;
        return o;
      }
      if (leave == Leave::half_close) {
        client.half_close();
        client.read_to_end(milliseconds(30000));
        o.status = client.response().status;
        o.abandoned = true;
        return o;
      }
      ReadStatus head = client.read_head(milliseconds(30000));
      if (head != ReadStatus::ok) {
        o.failure =
            head == ReadStatus::timeout ? "no response head in 30 s" : "closed without a response";
        return o;
      }
      const HttpResponse& r = client.response();
      o.status = r.status;
      o.reason = r.header("X-Sluice-Reason").value_or("");
      if (leave == Leave::after_head) {
        client.abort(pick(2) == 1);
        o.abandoned = true;
        return o;
      }
      if (leave == Leave::mid_stream) {
        BodyChunk chunk;
        const int chunks = 1 + pick(4);
        for (int i = 0; i < chunks; ++i)
          if (client.read_chunk(chunk, milliseconds(30000)) != ReadStatus::ok) break;
        client.abort(pick(2) == 1);
        o.abandoned = true;
        return o;
      }
      ReadStatus end = client.read_to_end(milliseconds(30000));
      o.complete = end == ReadStatus::end;
      if (end == ReadStatus::timeout) {
        o.failure = "body not complete in 30 s";
      } else {
        // A body with a Content-Length that the upstream cut is cut for the client too.
        o.cut = end == ReadStatus::closed;
        inspect_body(o, client.response(), o.complete);
      }
    } catch (const std::exception& e) {
      if (o.status == 0 && leave == Leave::never) o.failure = e.what();
      o.abandoned = o.abandoned || leave != Leave::never;
    }
    return o;
  }

  json admin_json(const std::string& target) {
    try {
      return json::parse(admin_text(target));
    } catch (const std::exception&) {
      return json();
    }
  }
  std::string admin_text(const std::string& target) {
    try {
      return sluice::test::http_request(options_.admin_port, HttpRequest{.target = target},
                                        milliseconds(5000))
          .body;
    } catch (const std::exception&) {
      return {};
    }
  }

  long rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(options_.pid) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

  void sample_rss() {
    while (!stop_sampling_) {
      long kib = rss_kib();
      if (kib > 0) {
        std::lock_guard lock(mutex_);
        rss_.push_back(kib);
      }
      for (int i = 0; i < 10 && !stop_sampling_; ++i)
        std::this_thread::sleep_for(milliseconds(100));
    }
  }

  static double median(std::vector<long> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? double(v[v.size() / 2])
                        : (double(v[v.size() / 2 - 1]) + double(v[v.size() / 2])) / 2;
  }

  bool check_rss() {
    std::vector<long> samples;
    {
      std::lock_guard lock(mutex_);
      samples = rss_;
    }
    if (samples.size() < 8) {
      std::printf("FAIL: only %zu RSS samples\n", samples.size());
      return false;
    }
    const std::size_t q = samples.size() / 4;
    std::vector<long> second(samples.begin() + static_cast<long>(q),
                             samples.begin() + static_cast<long>(2 * q));
    std::vector<long> last(samples.end() - static_cast<long>(q), samples.end());
    const double m2 = median(second), m4 = median(last);
    const double limit = m2 * 1.10 + 1024;
    std::printf(
        "%s RSS flat after warm-up: median %.1f MiB (2nd quarter) -> %.1f MiB (last quarter), "
        "limit %.1f MiB; min %.1f, max %.1f MiB over %zu samples\n",
        m4 <= limit ? "ok:  " : (options_.rss_check ? "FAIL:" : "note:"), m2 / 1024, m4 / 1024,
        limit / 1024, double(*std::min_element(samples.begin(), samples.end())) / 1024,
        double(*std::max_element(samples.begin(), samples.end())) / 1024, samples.size());
    return m4 <= limit;
  }

  void progress() {
    std::lock_guard lock(mutex_);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    std::fprintf(stderr, "soak: %.0f s, %zu requests, RSS %.1f MiB\n", elapsed,
                 observations_.size(), rss_.empty() ? 0.0 : double(rss_.back()) / 1024);
  }

  void report() {
    std::map<std::string, int> by_kind;
    std::map<std::string, int> by_leave;
    for (const auto& o : observations_) {
      std::string kind;
      if (o.abandoned) {
        kind = "cancelled by the driver";
      } else if (o.invalid_sent) {
        kind = "invalid (400)";
      } else if (o.status == 200 && o.done) {
        kind = "completed";
      } else if (o.status == 200 && o.error_line) {
        kind = "stream ended by an error line";
      } else if (o.status == 200 && o.cut) {
        kind = "body cut (upstream reset)";
      } else if (!o.reason.empty()) {
        kind = "rejected " + std::to_string(o.status) + " " + o.reason;
      } else if (o.status >= 500) {
        kind = "upstream error " + std::to_string(o.status);
      } else {
        kind = "other " + std::to_string(o.status);
      }
      by_kind[kind] += 1;
      by_leave[leave_name(o.leave)] += 1;
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    std::printf("\nsoak: %zu requests from %d clients in %.0f s\n", observations_.size(),
                options_.clients, elapsed);
    for (const auto& [k, v] : by_kind)
      std::printf("  %-40s %7d\n", k.c_str(), v);
    std::printf("client behaviour:\n");
    for (const auto& [k, v] : by_leave)
      std::printf("  leave %-34s %7d\n", k.c_str(), v);
  }

  Options options_;
  Clock::time_point start_, deadline_;
  std::mutex mutex_;
  std::vector<Observation> observations_;
  std::vector<long> rss_;
  std::atomic<bool> stop_sampling_{false};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice-soak: drive mixed traffic through sluice, then check nothing leaked"};
  Options options;
  std::string proxy_url, admin_url;
  app.add_option("--proxy", proxy_url, "sluice's listener, http://127.0.0.1:PORT")->required();
  app.add_option("--admin", admin_url, "sluice's admin listener, http://127.0.0.1:PORT")
      ->required();
  app.add_option("--pid", options.pid, "sluice's process id (RSS, liveness)")->required();
  app.add_option("--access-log", options.access_log, "file receiving sluice's stderr (JSON logs)")
      ->required();
  app.add_option("--seconds", options.seconds, "how long to drive traffic")
      ->check(CLI::Range(5.0, 86400.0));
  app.add_option("--clients", options.clients, "concurrent client threads")
      ->check(CLI::Range(1, 256));
  app.add_option("--seed", options.seed, "random seed");
  app.add_option("--leave-rate", options.leave_rate, "share of requests whose client leaves early")
      ->check(CLI::Range(0.0, 1.0));
  bool no_rss_check = false;
  app.add_flag("--no-rss-check", no_rss_check,
               "report RSS but do not fail on growth (sanitizer builds: ASan's quarantine holds "
               "freed memory)");
  CLI11_PARSE(app, argc, argv);
  options.rss_check = !no_rss_check;
  try {
    options.proxy_port = port_of(proxy_url);
    options.admin_port = port_of(admin_url);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-soak: %s\n", e.what());
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);
  Driver driver(options);
  driver.run();
  const int failures = driver.check();
  std::printf("%s\n", failures == 0 ? "soak: PASS" : "soak: FAIL");
  return failures == 0 ? 0 : 1;
}
