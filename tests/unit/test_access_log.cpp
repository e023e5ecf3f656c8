// Access-log formatting (text and JSON, escaping, bounds) and the spdlog setup.
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/obs/access_log.hpp"
#include "sluice/obs/logging.hpp"

using namespace std::chrono_literals;
using sluice::config::LogConfig;
using sluice::config::LogFormat;
using sluice::config::LogLevel;
using sluice::obs::AccessRecord;
using sluice::obs::format_access_line;
using sluice::obs::Outcome;
using sluice::obs::UpstreamError;

namespace {

// 2026-11-26T02:30:00.123Z
const auto kTime = std::chrono::system_clock::time_point(1795660200s + 123ms);

AccessRecord full_record() {
  AccessRecord r;
  r.time = kTime;
  r.request_id = "req-1";
  r.method = "POST";
  r.path = "/api/chat";
  r.user = "alice";
  r.workload = "paid";
  r.backend = "gpu-a";
  r.status = 200;
  r.outcome = Outcome::ok;
  r.queue = 1500us;
  r.ttfb = 120500us;
  r.total = 5230ms;
  r.prompt_tokens = 26;
  r.output_tokens = 298;
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    lines.push_back(line);
  return lines;
}

// The keys of a logfmt line: key=value pairs separated by spaces; a value may be "quoted" with
// backslash escapes inside.
std::vector<std::string> logfmt_keys(const std::string& line) {
  std::vector<std::string> keys;
  std::size_t i = 0;
  while (i < line.size()) {
    std::size_t eq = line.find('=', i);
    if (eq == std::string::npos) break;
    keys.push_back(line.substr(i, eq - i));
    i = eq + 1;
    if (i < line.size() && line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i)
        if (line[i] == '\\') ++i;
      ++i;
    } else {
      while (i < line.size() && line[i] != ' ')
        ++i;
    }
    if (i < line.size() && line[i] == ' ') ++i;
  }
  return keys;
}

}  // namespace

TEST_CASE("access log: format_utc") {
  CHECK(sluice::obs::format_utc(kTime) == "2026-11-26T02:30:00.123Z");
  CHECK(sluice::obs::format_utc(std::chrono::system_clock::time_point{}) ==
        "1970-01-01T00:00:00.000Z");
}

TEST_CASE("access log: text line has every field in order") {
  CHECK(format_access_line(full_record(), LogFormat::text) ==
        "time=2026-11-26T02:30:00.123Z request_id=req-1 method=POST path=/api/chat user=alice "
        "workload=paid backend=gpu-a status=200 outcome=ok queue_ms=1.500 ttfb_ms=120.500 "
        "total_ms=5230.000 "
        "prompt_tokens=26 output_tokens=298 upstream_error=-");

  AccessRecord gone;
  gone.time = kTime;
  gone.method = "POST";
  gone.path = "/api/generate";
  gone.workload = "free";
  gone.outcome = Outcome::upstream_error;
  gone.upstream_error = UpstreamError::idle_timeout;
  gone.total = 2s;
  CHECK(format_access_line(gone, LogFormat::text) ==
        "time=2026-11-26T02:30:00.123Z request_id=- method=POST path=/api/generate user=- "
        "workload=free backend=- status=- outcome=upstream_error queue_ms=- ttfb_ms=- "
        "total_ms=2000.000 "
        "prompt_tokens=- output_tokens=- upstream_error=idle_timeout");
}

TEST_CASE("access log: JSON line") {
  const std::string line = format_access_line(full_record(), LogFormat::json);
  CHECK(line ==
        R"({"time":"2026-11-26T02:30:00.123Z","type":"access","request_id":"req-1",)"
        R"("method":"POST","path":"/api/chat","user":"alice","workload":"paid","backend":"gpu-a",)"
        R"("status":200,)"
        R"("outcome":"ok","queue_ms":1.5,"ttfb_ms":120.5,"total_ms":5230.0,"prompt_tokens":26,)"
        R"("output_tokens":298,"upstream_error":null})");

  AccessRecord parked;
  parked.outcome = Outcome::queue_timeout;
  parked.status = 503;
  parked.queue = 30s;
  auto j = nlohmann::json::parse(format_access_line(parked, LogFormat::json));
  CHECK(j["user"].is_null());
  CHECK(j["ttfb_ms"].is_null());
  CHECK(j["prompt_tokens"].is_null());
  CHECK(j["queue_ms"] == 30000.0);
  CHECK(j["outcome"] == "queue_timeout");
}

TEST_CASE("access log: hostile values cannot break the line") {
  AccessRecord r = full_record();
  r.user = "bob\" evil=\"1\nsecond line\r\t\\ {} \x01\xff";
  r.request_id = "-";
  r.path = "/api/chat with space=x";

  const std::string text = format_access_line(r, LogFormat::text);
  CHECK(text.find('\n') == std::string::npos);
  CHECK(text.find('\r') == std::string::npos);
  CHECK(text.find(R"(user="bob\" evil=\"1\nsecond line\r\t\\ {} \x01\xff")") != std::string::npos);
  CHECK(text.find(R"(request_id="-")") != std::string::npos);  // a real "-" is not "unknown"
  CHECK(text.find(R"(path="/api/chat with space=x")") != std::string::npos);
  // A logfmt reader sees exactly the fields we wrote: "evil" stays inside the user value.
  std::vector<std::string> keys = logfmt_keys(text);
  CHECK(keys == std::vector<std::string>{"time", "request_id", "method", "path", "user", "workload",
                                         "backend", "status", "outcome", "queue_ms", "ttfb_ms",
                                         "total_ms", "prompt_tokens", "output_tokens",
                                         "upstream_error"});

  const std::string json_line = format_access_line(r, LogFormat::json);
  CHECK(json_line.find('\n') == std::string::npos);
  auto j = nlohmann::json::parse(json_line);  // still valid JSON (invalid UTF-8 replaced)
  CHECK(j["user"].get<std::string>().rfind("bob\" evil=\"1\nsecond line", 0) == 0);
  CHECK(j["request_id"] == "-");
  CHECK(j.size() == 16);
}

TEST_CASE("access log: long values are cut") {
  AccessRecord r = full_record();
  r.path = "/" + std::string(10000, 'a');
  const std::string text = format_access_line(r, LogFormat::text);
  CHECK(text.size() < 1000);
  CHECK(text.find(std::string(sluice::obs::kMaxAccessFieldBytes - 1, 'a') + "...") !=
        std::string::npos);
  auto j = nlohmann::json::parse(format_access_line(r, LogFormat::json));
  CHECK(j["path"].get<std::string>().size() == sluice::obs::kMaxAccessFieldBytes + 3);
}

TEST_CASE("logging: text format, levels and the access logger") {
  std::ostringstream out;
  sluice::obs::init_logging(LogConfig{.level = LogLevel::warn, .format = LogFormat::text}, &out);
  spdlog::info("hidden {}", 1);
  spdlog::warn("shown {}", 2);
  REQUIRE(sluice::obs::access_log_enabled());
  AccessRecord r = full_record();
  r.user = "{} {:d}";  // braces are data, not a format string
  sluice::obs::log_access(r);
  sluice::obs::flush_logs();

  auto lines = lines_of(out.str());
  REQUIRE(lines.size() == 2);
  // "2026-11-26T02:30:00.123Z warning shown 2"
  CHECK(lines[0].size() > 25);
  CHECK(lines[0][10] == 'T');
  CHECK(lines[0].substr(23) == "Z warning shown 2");
  CHECK(lines[1] == format_access_line(r, LogFormat::text));
  sluice::obs::init_logging(LogConfig{}, nullptr);
}

TEST_CASE("logging: JSON format escapes the message") {
  std::ostringstream out;
  sluice::obs::init_logging(LogConfig{.level = LogLevel::info, .format = LogFormat::json}, &out);
  spdlog::error("bad \"thing\"\nsecond {}", "line");
  sluice::obs::log_access(full_record());
  sluice::obs::flush_logs();

  auto lines = lines_of(out.str());
  REQUIRE(lines.size() == 2);
  auto app = nlohmann::json::parse(lines[0]);
  CHECK(app["level"] == "error");
  CHECK(app["msg"] == "bad \"thing\"\nsecond line");
  CHECK(app["time"].get<std::string>().size() == 24);
  auto access = nlohmann::json::parse(lines[1]);
  CHECK(access["type"] == "access");
  CHECK(access["user"] == "alice");
  sluice::obs::init_logging(LogConfig{}, nullptr);
}

TEST_CASE("logging: access_log=false writes no access lines; reload turns it back on") {
  std::ostringstream out;
  sluice::obs::init_logging(LogConfig{.access_log = false}, &out);
  CHECK_FALSE(sluice::obs::access_log_enabled());
  sluice::obs::log_access(full_record());
  sluice::obs::flush_logs();
  CHECK(out.str().empty());

  sluice::obs::init_logging(LogConfig{.access_log = true}, &out);
  sluice::obs::log_access(full_record());
  sluice::obs::flush_logs();
  CHECK(lines_of(out.str()).size() == 1);
  sluice::obs::init_logging(LogConfig{}, nullptr);
}
