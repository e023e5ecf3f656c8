// Proxy: the listener, the session registry and the control calls (see proxy.hpp). The
// per-connection protocol lives in session.cpp.
#include "sluice/net/proxy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <tuple>

#include "backend_probe.hpp"
#include "proxy_impl.hpp"
#include "sluice/obs/escaped.hpp"
#include "sluice/obs/metrics.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::vector<std::string> backend_names(const config::Config& config) {
  std::vector<std::string> names;
  for (const config::BackendConfig& b : config.backends)
    names.push_back(b.name);
  return names;
}

}  // namespace

Proxy::Impl::Impl(asio::io_context& io_context, std::shared_ptr<const config::Config> initial,
                  obs::Metrics& metrics_sink)
    : io(io_context),
      config(std::move(initial)),
      authenticator(std::make_shared<const auth::Authenticator>(config->auth)),
      metrics(metrics_sink),
      gate(io_context.get_executor(), config->scheduler.core),
      acceptor(io_context),
      watch_ticker(io_context),
      accept_wakeup(io_context, asio::steady_timer::time_point::max()),
      idle_wakeup(io_context, asio::steady_timer::time_point::max()) {
  if (config->fleet) {
    const config::FleetConfig& fleet = config->fleet_settings;
    monitor = std::make_unique<FleetMonitor>(
        io_context,
        MonitorSettings{.interval = fleet.health_interval,
                        .timeout = fleet.health_timeout,
                        .discover_every = static_cast<int>(fleet.discover_every)},
        [this](const Backend& backend) -> std::optional<config::UpstreamConfig> {
          for (const auto& b : config->backends) {
            if (b.name == backend.name) return b.upstream;
          }
          return std::nullopt;
        },
        [this](Backend& backend, const MonitorReport& report) { on_report(backend, report); });
  }
  sync_backends();
  // The adaptive limits' changes, with their reasons (docs/adaptive-concurrency.md).
  gate.on_limit_change = [this](const core::BackendLimitChange& c) {
    const bool known = c.backend < backends.size() && backends[c.backend];
    spdlog::info("{} concurrency {} -> {}: {}", known ? backends[c.backend]->name : c.backend_name,
                 c.change.from, c.change.to, c.change.reason);
  };
  gate.on_limit_note = [this](const core::BackendLimitNote& n) {
    const bool known = n.backend < backends.size() && backends[n.backend];
    spdlog::info("{} concurrency: {}", known ? backends[n.backend]->name : n.backend_name, n.text);
  };
  // The one place metrics learn the workloads and the limit: here and on reconfigure().
  metrics.add_workloads(config->workload_names());
  metrics.set_concurrency_limit(config->scheduler.core.max_concurrency);
  metrics.set_backends(backend_names(*config));
}

void Proxy::Impl::sync_backends() {
  const core::Fleet& fleet = gate.scheduler().fleet();
  std::vector<std::shared_ptr<Backend>> next(std::max<std::size_t>(fleet.size(), 1));
  for (const config::BackendConfig& b : config->backends) {
    // A single upstream is the scheduler's implicit backend, whatever its name here.
    const std::optional<core::BackendId> id =
        config->fleet ? fleet.find(b.name) : std::optional<core::BackendId>(0);
    if (!id) continue;
    if (*id >= next.size()) next.resize(*id + 1);
    std::shared_ptr<Backend> kept;
    for (const auto& old : backends) {
      if (old && old->name == b.name && old->id == *id) kept = old;
    }
    if (!kept) {
      kept = std::make_shared<Backend>(
          io.get_executor(), b.name, *id,
          static_cast<std::size_t>(std::max<std::int64_t>(b.upstream.max_idle_connections, 0)));
      kept->health.set_policy(config->fleet_settings.health);
      if (config->fleet)
        spdlog::info("backend {} at {} ({} slots)", b.name, b.upstream.url, b.max_concurrency);
    }
    kept->health.set_policy(config->fleet_settings.health);
    next[*id] = kept;
  }
  for (const auto& old : backends) {
    if (!old) continue;
    if (std::find(next.begin(), next.end(), old) != next.end()) continue;
    if (monitor) monitor->forget(*old);
    old->pool.close_idle();  // requests running on it keep it alive until they end
  }
  backends = std::move(next);
  if (!monitor) return;
  for (const config::BackendConfig& b : config->backends) {
    for (const auto& backend : backends) {
      if (backend && backend->name == b.name) monitor->watch(backend, b.models.empty());
    }
  }
}

void Proxy::Impl::on_report(Backend& backend, const MonitorReport& report) {
  const core::Time now = gate.now();
  const bool changed = report.problem.empty() ? backend.health.check_passed(now)
                                              : backend.health.check_failed(now, report.problem);
  if (changed) {
    if (backend.health.up()) {
      spdlog::info("backend {} is up", backend.name);
    } else {
      spdlog::warn("backend {} is down: {}", backend.name, backend.health.reason());
    }
  }
  // Observations first, so that a backend coming up is judged with what it serves.
  if (report.catalog) gate.observe_catalog(backend.id, *report.catalog);
  if (report.resident) gate.observe_resident(backend.id, *report.resident);
  gate.observe_up(backend.id, backend.health.up());
}

void Proxy::Impl::note_unreachable(Backend& backend, const std::string& why) {
  if (!config->fleet) return;  // a single upstream keeps answering 502, as it always did
  if (!backend.health.request_failed(gate.now(), why)) return;
  spdlog::warn(
      "backend {} ejected until its health check passes after {}s: {}", backend.name,
      std::chrono::duration_cast<std::chrono::seconds>(backend.health.ejected_until() - gate.now())
          .count(),
      backend.health.reason());
  gate.observe_up(backend.id, false);
}

asio::awaitable<void> Proxy::Impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    while (!shutting_down &&
           sessions.size() >= static_cast<std::size_t>(config->limits.max_connections)) {
      accept_wakeup.expires_at(asio::steady_timer::time_point::max());
      co_await accept_wakeup.async_wait(use_tuple);
    }
    if (shutting_down || !acceptor.is_open()) co_return;
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (shutting_down || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS and friends: back off briefly instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(io, std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto record = sessions.insert(sessions.end(), SessionRecord{});
    asio::co_spawn(io, run_session(self, std::move(socket), record), obs::log_escaped("session"));
  }
}

void Proxy::Impl::close_session(SessionRecord& record, bool upstream_too) {
  error_code ignored;
  if (record.client) {
    record.client->socket().shutdown(tcp::socket::shutdown_both, ignored);
    record.client->socket().close(ignored);
  }
  if (upstream_too && record.upstream) record.upstream->socket().close(ignored);
}

void Proxy::Impl::session_ended(std::list<SessionRecord>::iterator record) {
  sessions.erase(record);
  accept_wakeup.cancel();
  if (sessions.empty()) idle_wakeup.cancel();
}

Proxy::Proxy(asio::io_context& io, std::shared_ptr<const config::Config> config,
             obs::Metrics& metrics)
    : impl_(std::make_shared<Impl>(io, std::move(config), metrics)) {}

Proxy::~Proxy() {
  // Sessions keep the Impl alive; make sure nothing new starts and nothing waits forever.
  error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->accept_wakeup.cancel();
  impl_->idle_wakeup.cancel();
  impl_->watch_ticker.cancel();
}

tcp::endpoint Proxy::listen() {
  const auto& where = impl_->config->listen;
  tcp::endpoint endpoint(asio::ip::make_address(where.host), where.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor.local_endpoint();
}

void Proxy::start() {
  if (impl_->started) return;
  impl_->started = true;
  asio::co_spawn(impl_->io, impl_->accept_loop(),
                 obs::log_escaped("accept loop", spdlog::level::critical));
}

std::string Proxy::reconfigure(std::shared_ptr<const config::Config> next) {
  if (!next) return "no config";
  if (std::string why = config::reload_incompatibility(*impl_->config, *next); !why.empty())
    return why;
  if (std::string why = impl_->gate.reconfigure(next->scheduler.core); !why.empty()) return why;
  impl_->authenticator = std::make_shared<const auth::Authenticator>(next->auth);
  impl_->config = std::move(next);
  if (impl_->monitor) {
    const config::FleetConfig& fleet = impl_->config->fleet_settings;
    impl_->monitor->set_settings({.interval = fleet.health_interval,
                                  .timeout = fleet.health_timeout,
                                  .discover_every = static_cast<int>(fleet.discover_every)});
  }
  impl_->sync_backends();
  impl_->metrics.add_workloads(impl_->config->workload_names());
  impl_->metrics.set_concurrency_limit(impl_->config->scheduler.core.max_concurrency);
  impl_->metrics.set_backends(backend_names(*impl_->config));
  impl_->accept_wakeup.cancel();  // max_connections may have grown
  return {};
}

const std::shared_ptr<const config::Config>& Proxy::config() const {
  return impl_->config;
}

void Proxy::begin_shutdown() {
  Impl& impl = *impl_;
  if (impl.shutting_down) return;
  impl.shutting_down = true;
  error_code ignored;
  impl.acceptor.close(ignored);
  impl.accept_wakeup.cancel();
  impl.gate.drain();
  if (impl.monitor) impl.monitor->stop();
  for (const auto& backend : impl.backends)
    if (backend) backend->pool.close_idle();
  for (SessionRecord& record : impl.sessions) {
    if (!record.busy) Impl::close_session(record, false);
  }
  if (impl.sessions.empty()) impl.idle_wakeup.cancel();
}

bool Proxy::shutting_down() const {
  return impl_->shutting_down;
}

std::size_t Proxy::connections() const {
  return impl_->sessions.size();
}

std::size_t Proxy::active_requests() const {
  return impl_->active_requests;
}

asio::awaitable<void> Proxy::wait_idle() {
  auto impl = impl_;
  while (!impl->sessions.empty()) {
    impl->idle_wakeup.expires_at(asio::steady_timer::time_point::max());
    co_await impl->idle_wakeup.async_wait(use_tuple);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;
  }
}

void Proxy::close_all() {
  Impl& impl = *impl_;
  error_code ignored;
  impl.acceptor.close(ignored);
  impl.accept_wakeup.cancel();
  if (impl.monitor) impl.monitor->stop();
  for (const auto& backend : impl.backends)
    if (backend) backend->pool.stop();
  for (SessionRecord& record : impl.sessions) {
    record.cut = true;
    Impl::close_session(record, true);
  }
}

core::Snapshot Proxy::snapshot() const {
  const Impl& impl = *impl_;
  core::Snapshot snapshot = impl.gate.snapshot();
  const core::Time now = impl.gate.now();
  for (core::BackendView& view : snapshot.backends) {
    if (view.id >= impl.backends.size() || !impl.backends[view.id]) continue;  // retired
    const Backend& backend = *impl.backends[view.id];
    // The name the config, the access log and X-Sluice-Backend use (a single upstream is the
    // scheduler's implicit backend, named differently there).
    view.name = backend.name;
    view.requests = backend.requests;
    if (impl.config->fleet) view.health = backend.health.view(now);
  }
  WaitingBoard& board = impl_->waiting;  // (a cache: reading it may refresh it)
  snapshot.waiting =
      core::waiting_views(board.registry, board.order(), now, WaitingBoard::kListedPerWorkload);
  return snapshot;
}

std::int64_t Proxy::retry_after_seconds() const {
  return impl_->gate.retry_after_seconds();
}

const AdmissionGate& Proxy::gate() const {
  return impl_->gate;
}

asio::awaitable<std::string> Proxy::probe_upstream() {
  auto impl = impl_;
  const config::UpstreamConfig upstream = upstream_of(*impl->config, impl->primary()->name);
  // A fresh connection (never a pooled one: the probe checks that connecting works), through
  // the pool so that it resolves the host name as requests do and shares the cached addresses.
  ProbeResult result = co_await probe_get(impl->primary()->pool, upstream, "/api/version",
                                          2 * upstream.connect_timeout, 64 * 1024);
  co_return probe_problem(result);
}

}  // namespace sluice::net
