// Helpers for the hardening tests (limits, bad input, faults, vanishing clients):
//
//  * LogCapture: sluice's loggers (application + access log, JSON format) redirected into memory
//    for the life of the object, so a test can assert the access-log line of each request (found
//    by the X-Request-Id the test sent) and that some text was never logged.
//  * ScriptedUpstream: a raw TCP server on 127.0.0.1:0 whose every connection is handed to a
//    test-supplied function on its own thread, for upstream behaviour sluice-sim does not have
//    (record bytes as they arrive, close a kept-alive connection after reading a request).
//  * expect_idle(): the invariant every fault test ends with — nothing parked, nothing in
//    flight, no request active, and every sluice_inflight gauge at 0 in the metrics text.
//
// Everything is bounded in time; destructors stop what they started.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "proxy_harness.hpp"
#include "sluice/obs/logging.hpp"

namespace sluice::test {

/// A streambuf that appends to a string under a lock (spdlog writes from the proxy's thread while
/// the test thread reads).
class LockedStringBuf : public std::streambuf {
 public:
  std::string text() const {
    std::lock_guard lock(mutex_);
    return text_;
  }

 protected:
  int_type overflow(int_type c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    std::lock_guard lock(mutex_);
    text_.push_back(static_cast<char>(c));
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mutex_);
    text_.append(s, static_cast<std::size_t>(n));
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
};

class LogCapture {
 public:
  explicit LogCapture(config::LogLevel level = config::LogLevel::debug) : out_(&buffer_) {
    config::LogConfig log;
    log.level = level;
    log.format = config::LogFormat::json;
    log.access_log = true;
    obs::init_logging(log, &out_);
  }
  ~LogCapture() {
    obs::init_logging(config::LogConfig{}, nullptr);  // back to stderr before out_ goes
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const { return buffer_.text(); }

  /// Every access-log line so far, parsed.
  std::vector<nlohmann::json> access_lines() const {
    std::vector<nlohmann::json> out;
    std::istringstream lines(text());
    for (std::string line; std::getline(lines, line);) {
      auto value = nlohmann::json::parse(line, nullptr, false);
      if (value.is_object() && value.value("type", "") == "access") out.push_back(value);
    }
    return out;
  }

  /// The access line of the request with this id; waits up to `timeout` for it (a session
  /// writes it when the exchange ends, which may be after the client saw its answer).
  std::optional<nlohmann::json> access_line(
      const std::string& request_id,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto& line : access_lines()) {
        if (line["request_id"].is_string() && line["request_id"] == request_id) return line;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  /// Access lines matching `predicate`, waiting up to `timeout` for at least `count` of them.
  template <class Predicate>
  std::vector<nlohmann::json> wait_lines(
      Predicate predicate, std::size_t count,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      std::vector<nlohmann::json> found;
      for (auto& line : access_lines())
        if (predicate(line)) found.push_back(line);
      if (found.size() >= count || std::chrono::steady_clock::now() >= until) return found;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  LockedStringBuf buffer_;
  std::ostream out_;
};

/// Asserts the access line `line` has this status (0: none sent), outcome and upstream_error
/// ("" = none).
inline void check_access(const std::optional<nlohmann::json>& line, int status,
                         const std::string& outcome, const std::string& upstream_error = "") {
  REQUIRE_MESSAGE(line.has_value(), "no access-log line");
  INFO("access line: " << line->dump());
  if (status == 0) {
    CHECK((*line)["status"].is_null());
  } else {
    CHECK((*line)["status"] == status);
  }
  CHECK((*line)["outcome"] == outcome);
  if (upstream_error.empty()) {
    CHECK((*line)["upstream_error"].is_null());
  } else {
    CHECK((*line)["upstream_error"] == upstream_error);
  }
}

/// Sum of the samples of `metric` (e.g. "sluice_inflight") in a Prometheus text exposition;
/// `label_filter` must appear in the sample's label set when non-empty.
inline double metric_sum(const std::string& text, const std::string& metric,
                         const std::string& label_filter = "") {
  double sum = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, metric.size(), metric) != 0) continue;
    const char next = line.size() > metric.size() ? line[metric.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    if (!label_filter.empty() && line.find(label_filter) == std::string::npos) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

/// The invariant after every fault: nothing parked or in flight, no request active, and the
/// sluice_inflight / sluice_queue_length gauges at 0 once scraped.
inline void expect_idle(ProxyUnderTest& proxy,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  const bool idle = proxy.wait_for(
      [](const core::Snapshot& s) { return s.parked == 0 && s.in_flight == 0; }, timeout);
  CHECK_MESSAGE(idle, "scheduler not idle: parked " << proxy.snapshot().parked << ", in flight "
                                                    << proxy.snapshot().in_flight);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (proxy.active_requests() != 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(proxy.active_requests() == 0);
  const std::string metrics = proxy.scrape();
  CHECK(metrics.find("sluice_inflight") != std::string::npos);
  CHECK(metric_sum(metrics, "sluice_inflight") == 0);
  CHECK(metric_sum(metrics, "sluice_queue_length") == 0);
}

/// The simulator's record of the request sluice forwarded with this X-Request-Id, once it is
/// finished (outcome no longer "running"); null when the upstream never saw it.
inline nlohmann::json sim_record(
    const Simulator& sim, const std::string& id,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    nlohmann::json found;
    const nlohmann::json stats = sim.stats();  // (a range-for over a temporary's member dangles)
    for (const auto& record : stats["records"]) {
      if (record["headers"].value("x-request-id", "") == id) found = record;
    }
    if (!found.is_null() && found["outcome"] != "running") return found;
    if (std::chrono::steady_clock::now() >= until) return found;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

/// A raw TCP server for scripted upstream behaviour. `handler(socket_fd, index)` runs on its own
/// thread for each accepted connection (index counts from 0); the fd is closed after it returns.
/// The destructor shuts every connection down (unblocking handlers) and joins the threads.
class ScriptedUpstream {
 public:
  using Handler = std::function<void(int fd, int index)>;

  explicit ScriptedUpstream(Handler handler) : handler_(std::move(handler)) {
    using boost::asio::ip::tcp;
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~ScriptedUpstream() {
    stop_ = true;
    accept_thread_.join();
    std::lock_guard lock(mutex_);
    for (int fd : fds_)
      ::shutdown(fd, SHUT_RDWR);
    for (auto& t : threads_)
      t.join();
    for (int fd : fds_)
      ::close(fd);
  }
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return accepted_.load(); }

  /// Reads from `fd` until `pattern` was received or `timeout` passes; returns what was read.
  static std::string read_until(int fd, std::string_view pattern, std::chrono::milliseconds timeout,
                                std::string already = {}) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    std::string data = std::move(already);
    while (data.find(pattern) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[8192];
      ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      data.append(buffer, static_cast<std::size_t>(n));
    }
    return data;
  }
  static void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

 private:
  void accept_loop() {
    const int listen_fd = acceptor_.native_handle();
    while (!stop_) {
      pollfd p{listen_fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) continue;
      const int index = accepted_++;
      std::lock_guard lock(mutex_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd, index] {
        handler_(fd, index);
        ::shutdown(fd, SHUT_RDWR);
      });
    }
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread accept_thread_;
  std::mutex mutex_;
  std::vector<int> fds_;  // closed with the upstream (never reused while it lives)
  std::list<std::thread> threads_;
};

}  // namespace sluice::test
