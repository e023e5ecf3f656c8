// The admin listener: a small HTTP/1.1 server, separate from the data path, for operators and
// their tools. Endpoints:
//   GET  /metrics        Prometheus text exposition (handlers.metrics)
//   GET  /healthz        200 while the process runs (answered here, no handler)
//   GET  /readyz         200 when handlers.readiness says ready, else 503; body {status,
//                        detail} and, in a fleet, backends: [{name, up, state, reason}]
//   GET  /admin/state    JSON snapshot of the scheduler (handlers.state)
//   POST /admin/reload   re-read the config file (handlers.reload)
// HEAD is accepted wherever GET is. When handlers.authorize is set, /metrics and /admin/* need
// its approval of the request's Authorization header (else 401 with WWW-Authenticate: Bearer);
// /healthz and /readyz stay open for load balancers and orchestrators. Unknown path: 404 JSON;
// known path, wrong method: 405 JSON with Allow. Every error body is {"error": "..."}.
//
// Shape: one coroutine per connection on the caller's single-threaded executor; a fresh parser
// per request with header and body limits; expires_after before every read and write; at most
// `max_connections` connections (more are closed at once). Handlers run on the same executor and
// must not block; an exception from a handler becomes a 500 for that request only.
//
// Lifetime: the connections share the server's state, so destroying the AdminServer while
// coroutines are still pending is safe; stop() closes the listener and every connection.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::app {

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;             ///< the Allow header of a 405
  std::string www_authenticate;  ///< the WWW-Authenticate header of a 401
};

/// One backend of a fleet as /readyz lists it.
struct BackendReadiness {
  std::string name;
  bool up = false;
  std::string state;   ///< "up", "down", "ejected", "unknown" (core::name(Health::State))
  std::string reason;  ///< why it is not up ("" when up)
};

struct Readiness {
  bool ready = false;
  std::string detail;  ///< why not ready, or what was checked
  /// A fleet's backends: the body's "backends" array. Empty with a single upstream, whose body
  /// has no such member.
  std::vector<BackendReadiness> backends;
};

struct AdminHandlers {
  std::function<std::string()> metrics;  ///< Prometheus text format 0.0.4
  std::function<std::string()> state;    ///< JSON document
  std::function<boost::asio::awaitable<Readiness>()> readiness;
  std::function<AdminResponse()> reload;
  /// Whether a request with this Authorization header ("" when absent) may use /metrics and
  /// /admin/*. Unset: everyone may.
  std::function<bool(std::string_view authorization)> authorize;
};

struct AdminLimits {
  std::size_t max_connections = 64;
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  std::chrono::milliseconds read_timeout{10'000};   ///< a request, once its first byte arrived
  std::chrono::milliseconds idle_timeout{30'000};   ///< between requests on a kept-alive connection
  std::chrono::milliseconds write_timeout{10'000};  ///< writing one response
};

enum class AdminEndpoint : std::uint8_t { metrics, healthz, readyz, state, reload };

/// Whether an endpoint needs handlers.authorize's approval (everything but the probes).
bool needs_authorization(AdminEndpoint endpoint);

/// Routing, pure: the endpoint for (method, target), or the 404/405 response to send.
/// The query string is ignored.
struct AdminRoute {
  std::optional<AdminEndpoint> endpoint;
  AdminResponse error;  ///< when !endpoint
};
AdminRoute route_admin(std::string_view method, std::string_view target);

/// {"error": message} plus a newline.
std::string json_error(std::string_view message);

class AdminServer {
 public:
  AdminServer(boost::asio::any_io_executor executor, AdminHandlers handlers,
              AdminLimits limits = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// Binds and listens (port 0 picks a free port); returns the bound endpoint. Throws
  /// boost::system::system_error naming the address on failure.
  boost::asio::ip::tcp::endpoint listen(const config::HostPort& where);
  /// Starts accepting. Precondition: listen() succeeded.
  void start();
  /// Closes the listener and every open connection. Idempotent.
  void stop();
  std::size_t connections() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace sluice::app
