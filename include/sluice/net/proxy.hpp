// The sluice reverse proxy: the client listener, the sessions, the admission gate, the upstream
// connection pool and the relay, behind one object that the `sluice` main creates and drives.
//
// Lifecycle (all calls on the io_context's thread; nothing here is thread-safe):
//
//   Proxy proxy(io, config, metrics);
//   auto endpoint = proxy.listen();     // binds config->listen (port 0: any free port)
//   proxy.start();                      // accepts connections from now on
//   ...                                 // proxy.reconfigure(next) on SIGHUP / POST /admin/reload
//   proxy.begin_shutdown();             // SIGTERM: stop accepting, 503 the parked requests
//   co_await (proxy.wait_idle() || drain_timer.async_wait(use_awaitable));
//   proxy.close_all();                  // cut what is still running, then io.run() returns
//
// What a request sees is described in DESIGN.md §1 and docs/proxy.md: scheduled routes are
// classified, admitted by the gate (WFQ + limits) and relayed chunk by chunk; every other route is
// proxied straight through, never queued.
//
// Invariants:
//  * Every admitted request's slot is released exactly once, on every path (stream end, client
//    gone, upstream error, max_inflight_duration, close_all()).
//  * A request keeps the Config it started with; reconfigure() affects requests that start later
//    (and the scheduler at once, through the gate).
//  * After begin_shutdown() no connection is accepted, every parked and every later scheduled
//    request gets 503 shutting_down, idle kept-alive connections are closed, and each session
//    closes its connection after the response in progress.
//  * At most config.limits.max_connections client connections are open; further clients wait in
//    the kernel's accept backlog until one closes.
//
// Beast stays out of this header (it is included by src/app); the implementation is pimpl'd.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sluice/config/config.hpp"
#include "sluice/core/scheduler.hpp"
#include "sluice/net/admission_gate.hpp"

namespace sluice::obs {
class Metrics;
}

namespace sluice::net {

/// The io_context concurrency hint sluice runs with (src/app/server.cpp), and the tests too: one
/// thread and no locking in the reactor's I/O, but a locking scheduler, which Asio's resolver
/// needs (it completes host-name lookups from a thread of its own;
/// BOOST_ASIO_CONCURRENCY_HINT_UNSAFE makes every lookup fail with "Operation not supported").
inline constexpr int kIoConcurrencyHint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO;

class Proxy {
 public:
  struct Impl;  // defined in src/net/proxy.cpp

  /// `config` must be a validated Config (parse_config/load_config_file). `metrics` must outlive
  /// the Proxy; the Proxy records requests, queue waits, durations, tokens and upstream errors in
  /// it. Queue-length and in-flight gauges are not pushed on every change: call
  /// `metrics.update_from(proxy.snapshot())` before serializing (the admin /metrics handler).
  Proxy(boost::asio::io_context& io, std::shared_ptr<const config::Config> config,
        obs::Metrics& metrics);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  /// Binds and listens on config->listen. Returns the bound endpoint (the real port when the
  /// config says 0). Throws boost::system::system_error when the address cannot be bound (a
  /// start-up error). Call once.
  boost::asio::ip::tcp::endpoint listen();

  /// Starts accepting connections. Precondition: listen() succeeded.
  void start();

  /// Applies a new config live. Returns "" on success, else the reason nothing changed:
  /// config::reload_incompatibility() (listen, upstream.url, per_key labels, ...) or the
  /// scheduler's refusal. On success the scheduler changes at once (parked requests keep their
  /// place; a higher max_concurrency admits at once), and header names, routes, limits,
  /// timeouts apply to requests that start afterwards.
  std::string reconfigure(std::shared_ptr<const config::Config> next);

  /// The config new requests use.
  const std::shared_ptr<const config::Config>& config() const;

  /// Graceful shutdown, step 1: closes the listening socket, drains the gate (parked requests
  /// and every later scheduled request get 503 shutting_down with Retry-After), closes idle
  /// kept-alive client connections. Responses in progress continue; their connections close
  /// when they end. Idempotent.
  void begin_shutdown();
  bool shutting_down() const;

  /// Open client connections (including idle kept-alive ones before begin_shutdown()).
  std::size_t connections() const;
  /// Requests being served right now: from their first header byte to the end of the response
  /// (parked, in flight upstream, or passing through).
  std::size_t active_requests() const;

  /// Completes when no client connection is left open (after begin_shutdown(), that is when every
  /// response in progress has ended). Supports cancellation, so it can race a drain timer:
  /// `co_await (proxy.wait_idle() || timer.async_wait(use_awaitable))`.
  boost::asio::awaitable<void> wait_idle();

  /// Graceful shutdown, step 2 (the drain timeout passed): closes every client and upstream
  /// connection at once. Streams in progress are cut; every slot is released. Sessions finish
  /// asynchronously (run the io_context until it returns).
  void close_all();

  /// Scheduler state for /admin/state and the metrics gauges (parked, in flight, per workload
  /// and per key).
  core::Snapshot snapshot() const;
  /// Retry-After the proxy would send now, in seconds.
  std::int64_t retry_after_seconds() const;
  /// The admission gate (scheduler reads: workload names, config, counts).
  const AdmissionGate& gate() const;

  /// Readiness probe: connects to the upstream and sends `GET /api/version`, bounded by
  /// upstream.connect_timeout (connect) and by the same duration again for the answer. Returns ""
  /// when the upstream answered with a status below 500, else a short reason ("connect:
  /// Connection refused", "timeout", "status 503"). Does not use the connection pool.
  boost::asio::awaitable<std::string> probe_upstream();

 private:
  std::shared_ptr<Impl> impl_;  // shared with the sessions, which may outlive the Proxy
};

}  // namespace sluice::net
