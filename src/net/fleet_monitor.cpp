// The fleet monitor. See fleet_monitor.hpp.
#include "fleet_monitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "backend_probe.hpp"
#include "catalog.hpp"
#include "sluice/obs/escaped.hpp"

namespace sluice::net {

namespace asio = boost::asio;

struct FleetMonitor::Watch {
  explicit Watch(asio::io_context& io) : timer(io) {}
  std::shared_ptr<Backend> backend;
  bool discover = false;
  bool active = true;
  asio::steady_timer timer;
};

FleetMonitor::FleetMonitor(asio::io_context& io, MonitorSettings settings, UpstreamLookup lookup,
                           Reporter report)
    : io_(io), settings_(settings), lookup_(std::move(lookup)), report_(std::move(report)) {}

FleetMonitor::~FleetMonitor() {
  stop();
}

void FleetMonitor::watch(const std::shared_ptr<Backend>& backend, bool discover) {
  if (stopped_) return;
  for (const auto& w : watches_) {
    if (w->backend == backend) {
      w->discover = discover;
      return;
    }
  }
  auto w = std::make_shared<Watch>(io_);
  w->backend = backend;
  w->discover = discover;
  watches_.push_back(w);
  asio::co_spawn(io_, run(w), obs::log_escaped("fleet monitor"));
}

void FleetMonitor::forget(const Backend& backend) {
  auto it = std::find_if(watches_.begin(), watches_.end(),
                         [&](const auto& w) { return w->backend.get() == &backend; });
  if (it == watches_.end()) return;
  (*it)->active = false;
  (*it)->timer.cancel();
  watches_.erase(it);
}

void FleetMonitor::check_now() {
  for (const auto& w : watches_)
    w->timer.cancel();
}

void FleetMonitor::stop() {
  stopped_ = true;
  for (const auto& w : watches_) {
    w->active = false;
    w->timer.cancel();
  }
  watches_.clear();
}

asio::awaitable<void> FleetMonitor::run(std::shared_ptr<Watch> watch) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  int round = 0;
  bool was_up = false;
  while (watch->active) {
    std::optional<config::UpstreamConfig> upstream = lookup_(*watch->backend);
    if (!upstream) break;  // no longer configured
    MonitorReport report;
    const auto timeout = settings_.timeout;
    ProbeResult version =
        co_await probe_get(watch->backend->pool, *upstream, "/api/version", timeout, 64 * 1024);
    report.problem = probe_problem(version);
    report.elapsed = version.elapsed;
    const bool up = report.problem.empty();
    if (up && watch->active) {
      // The catalog when it is discovered: on the first answer, on each return, and every
      // discover_every rounds.
      if (watch->discover && (!was_up || round % std::max(1, settings_.discover_every) == 0)) {
        ProbeResult tags =
            co_await probe_get(watch->backend->pool, *upstream, "/api/tags", timeout);
        std::string why;
        if (probe_problem(tags).empty()) report.catalog = model_names(tags.body, &why);
        if (!report.catalog)
          spdlog::warn("backend {}: /api/tags unusable: {}", watch->backend->name,
                       probe_problem(tags).empty() ? why : probe_problem(tags));
      }
      ProbeResult ps = co_await probe_get(watch->backend->pool, *upstream, "/api/ps", timeout);
      std::string why;
      if (probe_problem(ps).empty()) report.resident = model_names(ps.body, &why);
    }
    was_up = up;
    ++round;
    if (!watch->active) break;
    report_(*watch->backend, report);
    watch->timer.expires_after(settings_.interval);
    co_await watch->timer.async_wait(use_tuple);
  }
}

}  // namespace sluice::net
