// Shared state of a Proxy: what the listener, the sessions and the control calls (reconfigure,
// shutdown) all see. Internal to src/net; included by proxy.cpp and session.cpp only.
//
// Ownership: Proxy holds the Impl through a shared_ptr and every session coroutine holds another,
// so the Impl (gate, pool, registry) outlives the last session even if the Proxy object goes
// first. Sessions register a SessionRecord for their whole life; the record says what the
// session is doing, so begin_shutdown() can close idle connections and close_all() can cut
// everything.
//
// Single-threaded: everything runs on the io_context's thread.
#pragma once

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include "backend.hpp"
#include "fleet_monitor.hpp"
#include "sluice/auth/auth.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/cost.hpp"
#include "sluice/net/admission_gate.hpp"
#include "sluice/net/proxy.hpp"
#include "timed_stream.hpp"
#include "upstream_pool.hpp"
#include "waiting.hpp"

namespace sluice::obs {
class Metrics;
}

namespace sluice::net {

struct SessionRecord {
  TimedStream* client = nullptr;    ///< the client connection
  TimedStream* upstream = nullptr;  ///< the upstream connection while one is in use
  bool busy = false;  ///< between the first byte of a request and the end of its response
  /// Set by the client watcher when it saw the client leave (EOF or reset) during a request.
  bool client_left = false;
  /// Set by close_all(): sluice itself cut this connection (drain timeout).
  bool cut = false;
};

/// Relay buffers (kBytes each), reused across requests so that a relaying coroutine's frame
/// stays small (frames are allocated per request) and parked or idle connections hold none.
class BufferPool {
 public:
  static constexpr std::size_t kBytes = 16 * 1024;
  static constexpr std::size_t kMaxIdle = 64;

  /// A buffer for as long as the lease lives.
  class Lease {
   public:
    explicit Lease(BufferPool& pool) : pool_(pool), buffer_(pool.take()) {}
    ~Lease() { pool_.give_back(std::move(buffer_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    char* data() { return buffer_.get(); }
    static constexpr std::size_t size() { return kBytes; }

   private:
    BufferPool& pool_;
    std::unique_ptr<char[]> buffer_;
  };

 private:
  std::unique_ptr<char[]> take() {
    if (idle_.empty()) return std::make_unique_for_overwrite<char[]>(kBytes);
    auto buffer = std::move(idle_.back());
    idle_.pop_back();
    return buffer;
  }
  void give_back(std::unique_ptr<char[]> buffer) {
    if (buffer && idle_.size() < kMaxIdle) idle_.push_back(std::move(buffer));
  }
  std::vector<std::unique_ptr<char[]>> idle_;
};

/// The departure watch of a connection (see client_watch.hpp): one per connection, shared with
/// the completion handler of its wait, which may run after the request or the whole session
/// ended.
struct DepartureWatch {
  explicit DepartureWatch(const boost::asio::any_io_executor& executor) : departed(executor) {}
  SessionRecord* record = nullptr;              ///< null once the session ended
  std::uint64_t request = 0;                    ///< the request being watched; 0 = none
  std::chrono::steady_clock::time_point since;  ///< when that request started
  std::uint64_t armed_for = 0;                  ///< the request whose wait is pending; 0 = none
  bool queued = false;                          ///< in Proxy::Impl::deferred_watches
  boost::asio::cancellation_signal cancel;      ///< cancels the pending wait
  boost::asio::steady_timer departed;           ///< cancelled when the client left: departed()
};

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  Impl(boost::asio::io_context& io, std::shared_ptr<const config::Config> config,
       obs::Metrics& metrics);

  boost::asio::awaitable<void> accept_loop();
  /// Closes a session's client connection (and its upstream one when `upstream_too`).
  static void close_session(SessionRecord& record, bool upstream_too);
  /// Called by a session when it ends: unregisters and wakes the accept loop / wait_idle().
  void session_ended(std::list<SessionRecord>::iterator record);

  boost::asio::io_context& io;
  std::shared_ptr<const config::Config> config;
  /// Built from config->auth; replaced (not mutated) on reconfigure, so a request keeps the one
  /// it started with.
  std::shared_ptr<const auth::Authenticator> authenticator;
  obs::Metrics& metrics;
  AdmissionGate gate;
  /// Waiting clients: the requests GET /sluice/requests/{id} knows, positions (waiting.hpp).
  WaitingBoard waiting{gate};
  core::CostModel cost_model;
  /// The backends requests are sent to, by core::BackendId (today one: config->upstream).
  std::vector<std::shared_ptr<Backend>> backends;
  /// The backend the scheduler placed a request on.
  const std::shared_ptr<Backend>& backend_at(core::BackendId id) const {
    return id < backends.size() && backends[id] ? backends[id] : primary();
  }
  /// Makes `backends` match config->backends (by name; the scheduler's fleet gives the ids) and
  /// the monitor watch them.
  void sync_backends();
  /// What a monitor round found out about a backend.
  void on_report(Backend& backend, const MonitorReport& report);
  /// A request could not reach its backend (connect failure, reset or timeout before headers).
  void note_unreachable(Backend& backend, const std::string& why);
  std::unique_ptr<FleetMonitor> monitor;
  /// The backend pass-through requests and the readiness probe use: the first one up.
  const std::shared_ptr<Backend>& primary() const {
    for (const auto& backend : backends) {
      if (backend && (!config->fleet || backend->health.up())) return backend;
    }
    for (const auto& backend : backends) {
      if (backend) return backend;
    }
    return backends.front();
  }
  BufferPool buffers;
  boost::asio::ip::tcp::acceptor acceptor;
  std::list<SessionRecord> sessions;
  std::size_t active_requests = 0;
  bool started = false;
  bool shutting_down = false;
  /// Deferred departure watches (pass-through requests; see client_watch.hpp): queued when the
  /// request starts; a ticker arms those whose request still runs after kDeferredWatchDelay.
  static constexpr auto kDeferredWatchDelay = std::chrono::milliseconds(50);
  void defer_watch(const std::shared_ptr<DepartureWatch>& watch);
  void on_watch_tick(const boost::system::error_code& ec);
  std::vector<std::shared_ptr<DepartureWatch>> deferred_watches;
  boost::asio::steady_timer watch_ticker;
  bool watch_ticker_running = false;
  std::uint64_t watched_requests = 0;

  boost::asio::steady_timer accept_wakeup;  ///< the accept loop waits here at max_connections
  boost::asio::steady_timer idle_wakeup;    ///< wait_idle() waits here
};

/// Serves one client connection until it closes. Never throws for network errors; an exception
/// (a bug) ends this session only.
boost::asio::awaitable<void> run_session(std::shared_ptr<Proxy::Impl> proxy,
                                         boost::asio::ip::tcp::socket socket,
                                         std::list<SessionRecord>::iterator record);

}  // namespace sluice::net
