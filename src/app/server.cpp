// The running sluice process. See server.hpp for the start-up lines, the signals and the
// shutdown sequence.
//
// Everything runs on one io_context thread: the proxy's sessions, the admin listener, the signal
// handler and the shutdown coroutine, so none of the state below needs a lock. Destruction order
// matters: the io_context is declared first and so destroyed last, after every object whose
// pending operations it may still hold; run() only returns once the shutdown sequence closed every
// listener and connection.
#include "sluice/app/server.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "sluice/app/admin_server.hpp"
#include "sluice/app/readiness.hpp"
#include "sluice/app/reload.hpp"
#include "sluice/app/state_json.hpp"
#include "sluice/auth/auth.hpp"
#include "sluice/core/duration.hpp"
#include "sluice/net/proxy.hpp"
#include "sluice/obs/logging.hpp"
#include "sluice/obs/metrics.hpp"

namespace sluice::app {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

// How long a readiness probe result is reused: /readyz may be polled every second by several
// load balancers; the upstream sees at most about one probe per second.
constexpr auto kProbeCacheTtl = std::chrono::seconds(1);
// While draining, a progress line every this long.
constexpr auto kDrainProgressEvery = std::chrono::seconds(5);
// After close_all(), connections should be gone within milliseconds; this bounds the wait.
constexpr auto kCloseGrace = std::chrono::seconds(5);

std::string describe_workload(const core::WorkloadSpec& w) {
  std::string out = w.name + " (priority " + fmt::format("{:g}", w.priority);
  if (w.band != 0) out += ", band " + std::to_string(w.band);
  out += ", queue_timeout " + core::format_duration(w.queue_timeout);
  if (w.max_queue > 0) out += ", max_queue " + std::to_string(w.max_queue);
  if (!w.match.empty()) {
    out += ", match";
    for (const core::LabelMatcher& m : w.match) {
      out += " " + m.label + "=";
      if (m.values.empty()) {
        out += "*";
      } else {
        for (std::size_t i = 0; i < m.values.size(); ++i)
          out += (i ? "|" : "") + m.values[i];
      }
    }
  }
  return out + ")";
}

void log_startup_summary(const config::Config& c, const std::optional<std::string>& file) {
  const core::SchedulerConfig& s = c.scheduler.core;
  spdlog::info("{} starting: config {}", version_string(),
               file ? *file : std::string("(none: defaults and flags)"));
  spdlog::info("upstream {} (connect_timeout {}, header_timeout {}, idle_timeout {})",
               c.upstream.url, core::format_duration(c.upstream.connect_timeout),
               core::format_duration(c.upstream.header_timeout),
               core::format_duration(c.upstream.idle_timeout));
  spdlog::info(
      "limits: max_concurrency {}, max_inflight_tokens {}, max_queue {}, queue_timeout_cap {}, "
      "max_inflight_duration {}, max_connections {}",
      s.max_concurrency, s.max_inflight_tokens, s.max_queue,
      core::format_duration(s.queue_timeout_cap),
      core::format_duration(c.scheduler.max_inflight_duration), c.limits.max_connections);
  for (const core::KeyLimitSpec& k : s.per_key) {
    spdlog::info("per-key limit on {}: max_concurrency {}, max_tokens {}, max_queue {}", k.label,
                 k.max_concurrency, k.max_tokens, k.max_queue);
  }
  std::string workloads;
  for (const core::WorkloadSpec& w : s.workloads)
    workloads += describe_workload(w) + "; ";
  workloads += describe_workload(s.default_workload) + " [default]";
  spdlog::info("workloads: {}", workloads);
  spdlog::info("scheduled routes: {} paths; drain_timeout {}", c.routes.scheduled.size(),
               core::format_duration(c.shutdown.drain_timeout));
}

}  // namespace

std::string http_url(const std::string& host, unsigned short port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return "http://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

struct Server::Impl {
  Impl(CliOptions o, config::Config c)
      : options(std::move(o)),
        initial(std::make_shared<const config::Config>(std::move(c))),
        metrics(),  // workloads and the limit registered by the proxy
        proxy(io, initial, metrics),
        signals(io) {}

  int run();
  ReloadOutcome reload(std::string_view trigger);
  AdminResponse reload_response();
  asio::awaitable<Readiness> readiness();
  std::string metrics_text();
  bool admin_authorized(std::string_view authorization);
  std::string state_text();
  void on_signal(const boost::system::error_code& ec, int signal_number);
  void wait_for_signal();
  asio::awaitable<void> shutdown(std::string reason);
  void close_everything();

  // First member: destroyed last. One thread: nothing but this thread touches sockets and
  // timers (signals arrive through signal_set on it); see net::kIoConcurrencyHint.
  asio::io_context io{net::kIoConcurrencyHint};
  CliOptions options;
  std::shared_ptr<const config::Config> initial;
  obs::Metrics metrics;
  net::Proxy proxy;
  std::optional<AdminServer> admin;
  asio::signal_set signals;
  Clock::time_point started = Clock::now();
  bool shutdown_started = false;
  bool closed = false;
  // The admin token check follows the running config (a reload may change the token).
  std::shared_ptr<const config::Config> auth_config;
  std::optional<auth::Authenticator> authenticator;
  // Readiness probe cache.
  std::optional<Clock::time_point> probed_at;
  std::string probe_result;
};

Server::Server(CliOptions options, config::Config config)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(config))) {}

Server::~Server() = default;

int Server::run() {
  return impl_->run();
}

int Server::Impl::run() {
  const config::Config& c = *initial;
  log_startup_summary(c, options.config_file);

  asio::ip::tcp::endpoint bound;
  try {
    bound = proxy.listen();
  } catch (const boost::system::system_error& e) {
    spdlog::critical("cannot listen on {}: {}", c.listen.to_string(), e.what());
    std::fprintf(stderr, "sluice: cannot listen on %s: %s\n", c.listen.to_string().c_str(),
                 e.what());
    return kExitRuntimeError;
  }
  std::optional<asio::ip::tcp::endpoint> admin_bound;
  if (c.admin_listen) {
    AdminHandlers handlers;
    handlers.metrics = [this] { return metrics_text(); };
    handlers.state = [this] { return state_text(); };
    handlers.readiness = [this] { return readiness(); };
    handlers.reload = [this] { return reload_response(); };
    handlers.authorize = [this](std::string_view authorization) {
      return admin_authorized(authorization);
    };
    admin.emplace(io.get_executor(), std::move(handlers));
    try {
      admin_bound = admin->listen(*c.admin_listen);
    } catch (const boost::system::system_error& e) {
      spdlog::critical("cannot listen on admin_listen {}: {}", c.admin_listen->to_string(),
                       e.what());
      std::fprintf(stderr, "sluice: cannot listen on admin_listen %s: %s\n",
                   c.admin_listen->to_string().c_str(), e.what());
      return kExitRuntimeError;
    }
  }

  // A client that vanishes mid-write must not kill the process; writes report EPIPE instead.
  ::signal(SIGPIPE, SIG_IGN);
  signals.add(SIGTERM);
  signals.add(SIGINT);
  signals.add(SIGHUP);
  wait_for_signal();
  proxy.start();
  if (admin) admin->start();

  const std::string url = http_url(bound.address().to_string(), bound.port());
  std::printf("listening on %s\n", url.c_str());
  spdlog::info("listening on {} ({})", url, upstreams_summary(c));
  if (admin_bound) {
    const std::string admin_url = http_url(admin_bound->address().to_string(), admin_bound->port());
    std::printf("admin listening on %s\n", admin_url.c_str());
    spdlog::info(
        "admin listening on {} (/metrics /healthz /readyz /admin/state "
        "POST /admin/reload)",
        admin_url);
  } else {
    spdlog::info("admin listener disabled (admin_listen is \"\")");
  }
  std::fflush(stdout);

  io.run();
  spdlog::info("sluice stopped");
  obs::flush_logs();
  return kExitOk;
}

void Server::Impl::wait_for_signal() {
  signals.async_wait([this](const boost::system::error_code& ec, int signal_number) {
    on_signal(ec, signal_number);
  });
}

void Server::Impl::on_signal(const boost::system::error_code& ec, int signal_number) {
  if (ec) return;  // cancelled at the end of shutdown
  if (signal_number == SIGHUP) {
    reload("SIGHUP");
  } else if (!shutdown_started) {
    shutdown_started = true;  // before the coroutine runs: a second signal must not start another
    auto on_done = [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("shutdown failed: {}", ex.what());
        std::abort();
      }
    };
    asio::co_spawn(io, shutdown(signal_number == SIGINT ? "SIGINT" : "SIGTERM"), on_done);
  } else {
    spdlog::warn("{} again during shutdown: closing every connection now",
                 signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    close_everything();
  }
  if (!closed) wait_for_signal();
}

asio::awaitable<void> Server::Impl::shutdown(std::string reason) {
  shutdown_started = true;
  const std::shared_ptr<const config::Config> config = proxy.config();
  const config::Config& c = *config;
  const core::Snapshot before = proxy.snapshot();
  const auto drain = c.shutdown.drain_timeout;
  spdlog::info(
      "shutdown ({}): no longer accepting; {} parked requests answered 503 shutting_down; "
      "{} running upstream, {} requests in progress; waiting up to {} for them",
      reason, before.parked, before.in_flight, proxy.active_requests(),
      core::format_duration(drain));
  proxy.begin_shutdown();

  const auto begin = Clock::now();
  const auto deadline = begin + drain;
  asio::steady_timer timer(io);
  bool idle = false;
  while (!closed) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    timer.expires_after(std::min<Clock::duration>(deadline - now, kDrainProgressEvery));
    auto wait_idle = proxy.wait_idle();
    auto tick = timer.async_wait(asio::use_awaitable);
    auto which = co_await (std::move(wait_idle) || std::move(tick));
    if (which.index() == 0) {
      idle = true;
      break;
    }
    if (Clock::now() < deadline) {
      spdlog::info("shutdown: still waiting for {} requests ({} running upstream); {} left",
                   proxy.active_requests(), proxy.snapshot().in_flight,
                   core::format_duration(std::chrono::duration_cast<core::Duration>(
                       std::chrono::ceil<std::chrono::seconds>(deadline - Clock::now()))));
    }
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begin).count();
  if (idle) {
    spdlog::info("shutdown: every request finished after {} ms", waited);
  } else if (!closed) {
    spdlog::warn(
        "shutdown: drain_timeout ({}) passed with {} requests still running; "
        "closing them",
        core::format_duration(drain), proxy.active_requests());
  }
  close_everything();

  // Sessions end asynchronously after close_all(); give them a moment, but never hang.
  const auto close_deadline = Clock::now() + kCloseGrace;
  while (proxy.connections() > 0 && Clock::now() < close_deadline) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (proxy.connections() > 0) {
    spdlog::error("shutdown: {} client connections still open {} s after closing; exiting anyway",
                  proxy.connections(), kCloseGrace.count());
    obs::flush_logs();
    std::fflush(stdout);
    std::_Exit(kExitRuntimeError);
  }
}

void Server::Impl::close_everything() {
  if (closed) return;
  closed = true;
  proxy.begin_shutdown();
  proxy.close_all();
  if (admin) admin->stop();
  boost::system::error_code ignored;
  signals.cancel(ignored);
}

ReloadOutcome Server::Impl::reload(std::string_view trigger) {
  if (shutdown_started) {
    ReloadOutcome refused;
    refused.status = ReloadOutcome::Status::failed;
    refused.message = "sluice is shutting down; reload ignored";
    spdlog::warn("reload ({}): {}", trigger, refused.message);
    return refused;
  }
  const std::shared_ptr<const config::Config> running = proxy.config();
  ReloadPlan plan = plan_reload(*running, options.config_file, options.overrides);
  ReloadOutcome& outcome = plan.outcome;
  if (outcome.status == ReloadOutcome::Status::applied) {
    std::string refused = proxy.reconfigure(plan.next);
    if (!refused.empty()) {
      outcome.status = ReloadOutcome::Status::failed;
      outcome.message = refused + "; nothing changed";
      outcome.changes.clear();
    } else {
      if (plan.next->log.level != running->log.level ||
          plan.next->log.format != running->log.format ||
          plan.next->log.access_log != running->log.access_log) {
        obs::init_logging(plan.next->log);
      }
    }
  }
  switch (outcome.status) {
    case ReloadOutcome::Status::applied:
      spdlog::info("reload ({}): {}", trigger, outcome.message);
      for (const std::string& change : outcome.changes)
        spdlog::info("  {}", change);
      break;
    case ReloadOutcome::Status::unchanged:
      spdlog::info("reload ({}): {}", trigger, outcome.message);
      break;
    case ReloadOutcome::Status::invalid:
      spdlog::error("reload ({}): {}", trigger, outcome.message);
      for (const std::string& e : outcome.errors)
        spdlog::error("  {}", e);
      break;
    case ReloadOutcome::Status::needs_restart:
    case ReloadOutcome::Status::failed:
      spdlog::error("reload ({}): {}", trigger, outcome.message);
      break;
  }
  for (const std::string& w : outcome.warnings)
    spdlog::warn("  config warning: {}", w);
  return outcome;
}

AdminResponse Server::Impl::reload_response() {
  ReloadOutcome outcome = reload("POST /admin/reload");
  AdminResponse response;
  response.status = static_cast<unsigned>(outcome.http_status());
  if (shutdown_started) response.status = 503;
  response.body = outcome.to_json();
  return response;
}

asio::awaitable<Readiness> Server::Impl::readiness() {
  if (proxy.shutting_down()) co_return Readiness{false, "shutting down"};
  // A fleet: the backends' health as the monitor sees it (it checks each one every
  // fleet.health_interval), not a probe of its own.
  if (proxy.config()->fleet) co_return fleet_readiness(proxy.snapshot());
  const auto now = Clock::now();
  if (!probed_at || now - *probed_at >= kProbeCacheTtl) {
    std::string result = co_await proxy.probe_upstream();
    probed_at = Clock::now();
    probe_result = std::move(result);
  }
  const std::string& url = proxy.config()->upstream.url;
  if (probe_result.empty()) co_return Readiness{true, "upstream " + url + " answered"};
  co_return Readiness{false, "upstream " + url + " unreachable: " + probe_result};
}

bool Server::Impl::admin_authorized(std::string_view authorization) {
  const std::shared_ptr<const config::Config>& current = proxy.config();
  if (current != auth_config) {
    authenticator.emplace(current->auth);
    auth_config = current;
  }
  return authenticator->admin_allowed(authorization);
}

std::string Server::Impl::metrics_text() {
  metrics.update_from(proxy.snapshot());
  return metrics.serialize();
}

std::string Server::Impl::state_text() {
  StateContext context;
  context.draining = proxy.shutting_down();
  context.uptime_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return state_json(proxy.snapshot(), *proxy.config(), context);
}

}  // namespace sluice::app
