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

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <list>
#include <memory>

#include "sluice/auth/auth.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/cost.hpp"
#include "sluice/net/admission_gate.hpp"
#include "sluice/net/proxy.hpp"
#include "upstream_pool.hpp"

namespace sluice::obs {
class Metrics;
}

namespace sluice::net {

struct SessionRecord {
  boost::beast::tcp_stream* client = nullptr;    ///< the client connection
  boost::beast::tcp_stream* upstream = nullptr;  ///< the upstream connection while one is in use
  bool busy = false;  ///< between the first byte of a request and the end of its response
  /// Set by the client watcher when it saw the client leave (EOF or reset) during a request.
  bool client_left = false;
  /// Set by close_all(): sluice itself cut this connection (drain timeout).
  bool cut = false;
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
  core::CostModel cost_model;
  UpstreamPool pool;
  boost::asio::ip::tcp::acceptor acceptor;
  std::list<SessionRecord> sessions;
  std::size_t active_requests = 0;
  bool started = false;
  bool shutting_down = false;
  boost::asio::steady_timer accept_wakeup;  ///< the accept loop waits here at max_connections
  boost::asio::steady_timer idle_wakeup;    ///< wait_idle() waits here
};

/// Serves one client connection until it closes. Never throws for network errors; an exception
/// (a bug) ends this session only.
boost::asio::awaitable<void> run_session(std::shared_ptr<Proxy::Impl> proxy,
                                         boost::asio::ip::tcp::socket socket,
                                         std::list<SessionRecord>::iterator record);

}  // namespace sluice::net
