// The admin listener. See admin_server.hpp for endpoints, limits and lifetime.
//
// Invariants: every live connection is in State::connections (so stop() can close it) and is
// removed when its coroutine ends; each coroutine holds a shared_ptr to State, so the State
// outlives every pending operation even if the AdminServer object is gone.
#include "sluice/app/admin_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <exception>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "sluice/obs/escaped.hpp"
#include "wire.hpp"

namespace sluice::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using tuple_awaitable = asio::as_tuple_t<asio::use_awaitable_t<>>;
constexpr tuple_awaitable kTuple{};

std::string json_error(std::string_view message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace) +
         "\n";
}

AdminRoute route_admin(std::string_view method, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  struct Entry {
    std::string_view path;
    AdminEndpoint endpoint;
    bool post;
  };
  static constexpr Entry kEntries[] = {
      {"/metrics", AdminEndpoint::metrics, false},    {"/healthz", AdminEndpoint::healthz, false},
      {"/readyz", AdminEndpoint::readyz, false},      {"/admin/state", AdminEndpoint::state, false},
      {"/admin/reload", AdminEndpoint::reload, true},
  };
  AdminRoute route;
  for (const Entry& e : kEntries) {
    if (e.path != path) continue;
    const bool ok = e.post ? method == "POST" : (method == "GET" || method == "HEAD");
    if (ok) {
      route.endpoint = e.endpoint;
    } else {
      route.error.status = 405;
      route.error.allow = e.post ? "POST" : "GET, HEAD";
      route.error.body = json_error(std::string(method) + " is not allowed on " +
                                    std::string(path) + "; use " + route.error.allow);
    }
    return route;
  }
  route.error.status = 404;
  route.error.body =
      json_error("no admin endpoint " + std::string(path) +
                 "; try /metrics, /healthz, /readyz, /admin/state, POST /admin/reload");
  return route;
}

bool needs_authorization(AdminEndpoint endpoint) {
  return endpoint != AdminEndpoint::healthz && endpoint != AdminEndpoint::readyz;
}

struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
  State(asio::any_io_executor ex, AdminHandlers h, AdminLimits l)
      : executor(ex), handlers(std::move(h)), limits(l), acceptor(ex) {}

  asio::any_io_executor executor;
  AdminHandlers handlers;
  AdminLimits limits;
  tcp::acceptor acceptor;
  std::unordered_set<beast::tcp_stream*> connections;
  bool stopped = false;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket);
  asio::awaitable<AdminResponse> handle(const http::request<http::string_body>& request);
};

namespace {

// Logs what escaped a coroutine instead of losing it (a bug: expected errors are values).
}  // namespace

asio::awaitable<void> AdminServer::State::accept_loop() {
  auto self = shared_from_this();
  asio::steady_timer backoff(executor);
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: do not spin; try again shortly.
      spdlog::warn("admin: accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    if (connections.size() >= limits.max_connections) {
      spdlog::warn("admin: {} connections open (the limit); closing a new one", connections.size());
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(executor, self->session(std::move(socket)),
                   obs::log_escaped("admin connection"));
  }
}

asio::awaitable<AdminResponse> AdminServer::State::handle(
    const http::request<http::string_body>& request) {
  AdminRoute route =
      route_admin(std::string_view(request.method_string()), std::string_view(request.target()));
  if (!route.endpoint) co_return route.error;
  AdminResponse response;
  if (handlers.authorize && needs_authorization(*route.endpoint) &&
      !handlers.authorize(std::string_view(request[http::field::authorization]))) {
    response.status = 401;
    response.www_authenticate = "Bearer realm=\"sluice-admin\"";
    response.body = json_error(
        "this admin endpoint needs the admin token: send Authorization: Bearer TOKEN "
        "(auth.admin_token_sha256 in the config)");
    co_return response;
  }
  try {
    switch (*route.endpoint) {
      case AdminEndpoint::healthz:
        response.body = "{\"status\":\"ok\"}\n";
        break;
      case AdminEndpoint::metrics:
        response.content_type = "text/plain; version=0.0.4; charset=utf-8";
        response.body = handlers.metrics ? handlers.metrics() : std::string();
        break;
      case AdminEndpoint::state:
        response.body = handlers.state ? handlers.state() : std::string("{}\n");
        break;
      case AdminEndpoint::readyz: {
        Readiness r{true, ""};
        if (handlers.readiness) r = co_await handlers.readiness();
        response.status = r.ready ? 200 : 503;
        nlohmann::json body{{"status", r.ready ? "ready" : "not ready"}, {"detail", r.detail}};
        if (!r.backends.empty()) {
          nlohmann::json& list = body["backends"] = nlohmann::json::array();
          for (const BackendReadiness& b : r.backends) {
            list.push_back(
                {{"name", b.name}, {"up", b.up}, {"state", b.state}, {"reason", b.reason}});
          }
        }
        response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        response.body.push_back('\n');
        break;
      }
      case AdminEndpoint::reload:
        if (!handlers.reload) {
          response.status = 501;
          response.body = json_error("reload is not available");
        } else {
          response = handlers.reload();
        }
        break;
    }
  } catch (const std::exception& e) {
    spdlog::error("admin: {} {} failed: {}", std::string_view(request.method_string()),
                  std::string_view(request.target()), e.what());
    response = AdminResponse{500, "application/json", json_error(e.what()), ""};
  }
  co_return response;
}

asio::awaitable<void> AdminServer::State::session(tcp::socket socket) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(socket));
  connections.insert(&stream);
  struct Unregister {
    State* state;
    beast::tcp_stream* stream;
    ~Unregister() { state->connections.erase(stream); }
  } unregister{this, &stream};

  beast::flat_buffer buffer(limits.max_header_bytes);
  bool first = true;
  while (!stopped) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    stream.expires_after(first && buffer.size() == 0 ? limits.read_timeout : limits.idle_timeout);
    first = false;
    auto [read_ec, read_bytes] = co_await http::async_read(stream, buffer, parser, kTuple);
    (void)read_bytes;

    AdminResponse response;
    bool keep_alive = false;
    const bool is_head = !read_ec && parser.get().method() == http::verb::head;
    if (read_ec == http::error::header_limit) {
      response = {431, "application/json", json_error("request headers too large"), ""};
    } else if (read_ec == http::error::body_limit) {
      response = {413, "application/json", json_error("request body too large"), ""};
    } else if (read_ec &&
               read_ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
               read_ec != http::error::end_of_stream && read_ec != http::error::partial_message) {
      response = {400, "application/json", json_error("bad request: " + read_ec.message()), ""};
    } else if (read_ec) {
      break;  // closed, timed out, reset, or cut mid-request: nothing useful to answer
    } else if (auto framing = net::wire::check_request_framing(parser.get())) {
      // The same RFC 9112 rules as the proxy listener (Host, Content-Length, chunked); closes.
      response = {static_cast<unsigned>(framing->status), "application/json",
                  json_error(framing->message), ""};
    } else {
      response = co_await handle(parser.get());
      keep_alive = parser.get().keep_alive() && !stopped;
    }

    http::response<http::string_body> res{static_cast<http::status>(response.status), 11};
    res.set(http::field::server, "sluice-admin");
    res.set(http::field::content_type, response.content_type);
    res.set(http::field::cache_control, "no-store");
    if (!response.allow.empty()) res.set(http::field::allow, response.allow);
    if (!response.www_authenticate.empty()) {
      res.set(http::field::www_authenticate, response.www_authenticate);
    }
    res.keep_alive(keep_alive);
    if (is_head) {
      res.content_length(response.body.size());
    } else {
      res.body() = std::move(response.body);
      res.prepare_payload();
    }
    stream.expires_after(limits.write_timeout);
    auto [write_ec, written] = co_await http::async_write(stream, res, kTuple);
    (void)written;
    if (write_ec || !keep_alive) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

AdminServer::AdminServer(asio::any_io_executor executor, AdminHandlers handlers, AdminLimits limits)
    : state_(std::make_shared<State>(executor, std::move(handlers), limits)) {}

AdminServer::~AdminServer() {
  stop();
}

tcp::endpoint AdminServer::listen(const config::HostPort& where) {
  boost::system::error_code ec;
  tcp::endpoint endpoint;
  asio::ip::address address = asio::ip::make_address(where.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, where.port);
  } else {
    tcp::resolver resolver(state_->executor);
    auto results = resolver.resolve(where.host, std::to_string(where.port), ec);
    if (ec || results.empty()) {
      throw boost::system::system_error(ec ? ec : asio::error::host_not_found,
                                        "admin listener: cannot resolve " + where.to_string());
    }
    endpoint = results.begin()->endpoint();
  }
  tcp::acceptor& acceptor = state_->acceptor;
  auto fail = [&](const char* step) {
    throw boost::system::system_error(
        ec, std::string("admin listener ") + where.to_string() + ": " + step);
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) fail("open");
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) fail("setsockopt");
  acceptor.bind(endpoint, ec);
  if (ec) fail("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("listen");
  return acceptor.local_endpoint();
}

void AdminServer::start() {
  asio::co_spawn(state_->executor, state_->accept_loop(),
                 obs::log_escaped("admin accept loop", spdlog::level::critical));
}

void AdminServer::stop() {
  State& s = *state_;
  if (s.stopped) return;
  s.stopped = true;
  boost::system::error_code ignored;
  s.acceptor.close(ignored);
  for (beast::tcp_stream* stream : s.connections)
    stream->socket().close(ignored);
}

std::size_t AdminServer::connections() const {
  return state_->connections.size();
}

}  // namespace sluice::app
