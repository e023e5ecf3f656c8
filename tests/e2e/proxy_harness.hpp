// Test harness for the proxy's end-to-end tests: a sluice-sim child process (the upstream) and
// a net::Proxy running in this process on its own io_context thread, both on 127.0.0.1 port 0.
//
// The Proxy is only touched on its io thread: on_io() posts a call there and waits for the
// result. The destructor shuts the proxy down (begin_shutdown + close_all), waits a bounded time
// for its thread, and the ChildProcess destructor kills the simulator.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "sluice/config/config.hpp"
#include "sluice/net/proxy.hpp"
#include "sluice/obs/metrics.hpp"

namespace sluice::test {

/// sluice-sim on a free port. `extra` are more command-line options.
class Simulator {
 public:
  explicit Simulator(std::vector<std::string> extra = {}) : child_(start(std::move(extra))) {
    port_ = child_->wait_for_port();
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  /// GET /sim/stats as JSON.
  nlohmann::json stats() const {
    auto response = http_request(port_, HttpRequest{.target = "/sim/stats"});
    return nlohmann::json::parse(response.body);
  }
  void reset() const { http_request(port_, HttpRequest{.method = "POST", .target = "/sim/reset"}); }
  std::string output() const { return child_->output(); }

 private:
  static std::unique_ptr<ChildProcess> start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--seed",
                                     "7",        "--log-level", "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(SLUICE_SIM_PATH, args);
  }
  std::unique_ptr<ChildProcess> child_;
  std::uint16_t port_ = 0;
};

/// A Proxy in this process. `config_json` is a sluice config; listen is forced to 127.0.0.1:0.
class ProxyUnderTest {
 public:
  explicit ProxyUnderTest(const std::string& config_json) : work_(io_.get_executor()) {
    auto parsed = config::parse_config(config_json, "test-config");
    if (!parsed.ok()) throw std::runtime_error("bad test config: " + parsed.error_text());
    parsed.config->listen = config::HostPort{"127.0.0.1", 0};
    config_ = std::make_shared<const config::Config>(std::move(*parsed.config));
    metrics_ = std::make_unique<obs::Metrics>();
    proxy_ = std::make_unique<net::Proxy>(io_, config_, *metrics_);
    port_ = proxy_->listen().port();
    proxy_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~ProxyUnderTest() {
    try {
      on_io([this] {
        proxy_->begin_shutdown();
        proxy_->close_all();
        return 0;
      });
    } catch (...) {
    }
    work_.reset();
    auto finished = std::async(std::launch::async, [this] { thread_.join(); });
    if (finished.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      io_.stop();
      finished.wait();
    }
    proxy_.reset();
  }

  std::uint16_t port() const { return port_; }

  /// Runs `f` on the proxy's io thread and returns its result.
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  core::Snapshot snapshot() {
    return on_io([this] { return proxy_->snapshot(); });
  }
  std::string metrics_text() {
    return on_io([this] { return metrics_->serialize(); });
  }
  /// What GET /metrics serves: the gauges refreshed from the scheduler, then serialized.
  std::string scrape() {
    return on_io([this] {
      metrics_->update_from(proxy_->snapshot());
      return metrics_->serialize();
    });
  }
  std::size_t active_requests() {
    return on_io([this] { return proxy_->active_requests(); });
  }
  std::size_t connections() {
    return on_io([this] { return proxy_->connections(); });
  }

  /// Polls `predicate(snapshot)` until it holds or `timeout` passes.
  template <class Predicate>
  bool wait_for(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (predicate(snapshot())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return predicate(snapshot());
  }

  net::Proxy& proxy() { return *proxy_; }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_{net::kIoConcurrencyHint};  // as sluice runs it
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<obs::Metrics> metrics_;
  std::unique_ptr<net::Proxy> proxy_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

/// A config pointing at `upstream_url`, with `scheduler` (a JSON object text) and optional
/// other top-level members (`extra`, e.g. `"limits": {...}`).
inline std::string proxy_config(const std::string& upstream_url, const std::string& scheduler,
                                const std::string& upstream_extra = "",
                                const std::string& extra = "") {
  std::string text = "{\"admin_listen\": \"\", \"upstream\": {\"url\": \"" + upstream_url + "\"";
  if (!upstream_extra.empty()) text += ", " + upstream_extra;
  text += "}, \"scheduler\": " + scheduler;
  if (!extra.empty()) text += ", " + extra;
  text += "}";
  return text;
}

}  // namespace sluice::test
