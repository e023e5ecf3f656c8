// The fleet monitor: one loop per backend that asks it, every `interval`, whether it is there
// (GET /api/version), what it serves (GET /api/tags, when its models are discovered rather
// than configured; every `discover_every` checks and whenever it comes back) and what it has
// resident (GET /api/ps, every check while it is up), and reports each answer through
// callbacks. The callbacks decide what the answers mean (core::Health, core::Fleet); the
// monitor only asks, bounded by `timeout` per probe.
//
// A backend's loop ends when stop() is called or the backend is retired (forget()). Checks of
// one backend never overlap; different backends are checked independently, so one that hangs
// delays nobody else.
//
// Single-threaded: use on the io_context's thread. Internal to src/net.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "sluice/config/config.hpp"

namespace sluice::net {

struct MonitorSettings {
  std::chrono::steady_clock::duration interval = std::chrono::seconds(5);
  std::chrono::steady_clock::duration timeout = std::chrono::seconds(2);
  int discover_every = 6;  ///< a /api/tags every this many checks
};

/// What one round of probes found out about one backend.
struct MonitorReport {
  std::string problem;  ///< "" when /api/version answered below 500
  /// /api/tags names, when asked this round and it answered in shape.
  std::optional<std::vector<std::string>> catalog;
  /// /api/ps names, when asked this round and it answered in shape.
  std::optional<std::vector<std::string>> resident;
  std::chrono::steady_clock::duration elapsed{};
};

class FleetMonitor {
 public:
  /// The settings a backend's probes use (the Config may change between rounds).
  using UpstreamLookup = std::function<std::optional<config::UpstreamConfig>(const Backend&)>;
  using Reporter = std::function<void(Backend&, const MonitorReport&)>;

  FleetMonitor(boost::asio::io_context& io, MonitorSettings settings, UpstreamLookup lookup,
               Reporter report);
  ~FleetMonitor();

  /// Starts watching a backend (idempotent). `discover`: ask /api/tags too.
  void watch(const std::shared_ptr<Backend>& backend, bool discover);
  /// Stops watching it (its loop ends at its next wake-up).
  void forget(const Backend& backend);
  /// Asks every watched backend now instead of at its next interval.
  void check_now();
  void set_settings(MonitorSettings settings) { settings_ = settings; }
  /// Ends every loop.
  void stop();

 private:
  struct Watch;
  boost::asio::awaitable<void> run(std::shared_ptr<Watch> watch);

  boost::asio::io_context& io_;
  MonitorSettings settings_;
  UpstreamLookup lookup_;
  Reporter report_;
  std::vector<std::shared_ptr<Watch>> watches_;
  bool stopped_ = false;
};

}  // namespace sluice::net
