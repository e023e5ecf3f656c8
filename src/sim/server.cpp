// sluice-sim's HTTP server: accept loop, one session per connection, routing, start and stop
// (see server_impl.hpp for how the files divide the work, and the invariants).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "server_impl.hpp"
#include "sluice/obs/escaped.hpp"

namespace sluice::sim {
namespace {

using asio::use_awaitable;

// GPU routes (the ones sluice schedules) and the constants of cheap responses. Kept out of the
// coroutines: GCC 12 cannot put an initializer_list's array into a coroutine frame.
std::optional<Route> gpu_route(std::string_view path) {
  static const std::map<std::string_view, Route, std::less<>> routes = {
      {"/api/generate", Route::generate},
      {"/api/chat", Route::chat},
      {"/api/embed", Route::embed},
      {"/api/embeddings", Route::embeddings},
      {"/v1/chat/completions", Route::v1_chat},
      {"/v1/completions", Route::v1_completions},
      {"/v1/embeddings", Route::v1_embeddings}};
  auto it = routes.find(path);
  if (it == routes.end()) return std::nullopt;
  return it->second;
}
std::string version_body() {
  return nlohmann::json{{"version", kOllamaVersion}}.dump();
}
constexpr std::string_view kPost = "POST";
constexpr std::string_view kGet = "GET, HEAD";
constexpr std::string_view kGetPost = "GET, HEAD, POST";

ResidencyConfig residency_config(const SimConfig& cfg, std::size_t models) {
  const int all = int(std::max<std::size_t>(1, models));
  return ResidencyConfig{cfg.max_loaded > 0 ? std::min(cfg.max_loaded, all) : all, cfg.load_ns,
                         cfg.keep_alive_ns};
}

}  // namespace

SimServer::Impl::Impl(asio::io_context& io, SimConfig c)
    : ioc(io),
      cfg(std::move(c)),
      model(cfg.gpu),
      catalog(cfg.models),
      clock(cfg.time_scale),
      log(cfg.max_records),
      residency(catalog.names().size(), residency_config(cfg, catalog.names().size()), 0),
      residency_timer(io),
      fault_rng(cfg.seed ^ 0x6661756c74ULL),
      acceptor(io) {}

asio::awaitable<After> SimServer::Impl::dispatch(Conn& c, Request& req) {
  const std::string_view target = req.target();
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query =
      qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);
  const auto method = req.method();
  const bool get = method == http::verb::get || method == http::verb::head;
  const bool post = method == http::verb::post;
  spdlog::debug("{} {}", std::string(req.method_string()), std::string(target));

  if (check_host && !host_allowed(req[http::field::host])) {
    co_await write_body(c, req, http::status::forbidden, "", "");
    co_return After::keep_alive;
  }

  if (auto route = gpu_route(path)) {
    if (!post) {
      co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                          "405 method not allowed", kPost);
      co_return After::keep_alive;
    }
    co_return co_await handle_gpu(c, req, *route);
  }

  if (path == "/" || path == "/api/version" || path == "/api/tags" || path == "/api/ps" ||
      path == "/v1/models" || path == "/sim/stats" ||
      (path.rfind("/v1/models/", 0) == 0 && path.size() > 11)) {
    if (!get) {
      co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                          "405 method not allowed", kGet);
      co_return After::keep_alive;
    }
    if (path == "/") {
      co_await write_body(c, req, http::status::ok, "text/plain; charset=utf-8",
                          "Ollama is running");
    } else if (path == "/api/version") {
      co_await write_body(c, req, http::status::ok, kJsonNative, version_body());
    } else if (path == "/api/tags") {
      co_await write_body(c, req, http::status::ok, kJsonNative, tags_body(catalog));
    } else if (path == "/api/ps") {
      std::string body = ps_json();  // (named first: GCC 12 and temporaries in co_await)
      co_await write_body(c, req, http::status::ok, kJsonNative, std::move(body));
    } else if (path == "/v1/models") {
      co_await write_body(c, req, http::status::ok, "application/json",
                          openai_models_body(catalog));
    } else if (path == "/sim/stats") {
      co_await write_body(c, req, http::status::ok, "application/json", stats_json(query));
    } else {
      const std::string name(path.substr(11));
      if (catalog.resolve(name)) {
        co_await write_body(c, req, http::status::ok, "application/json", openai_model_body(name));
      } else {
        co_await write_body(c, req, http::status::not_found, "application/json",
                            openai_error_body(404, "model '" + name + "' not found"));
      }
    }
    co_return After::keep_alive;
  }

  if (path == "/api/show" || path == "/api/pull" || path == "/sim/reset") {
    if (!post) {
      co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                          "405 method not allowed", kPost);
      co_return After::keep_alive;
    }
    if (path == "/sim/reset") {
      reset_stats();
      co_await write_body(c, req, http::status::ok, "application/json", R"({"reset":true})");
      co_return After::keep_alive;
    }
    if (path == "/api/pull") co_return co_await handle_pull(c, req);
    auto shown = parse_show_request(req.body(), catalog);
    note_call(req, shown.index() == 0 ? std::get<std::string>(shown) : std::string());
    if (auto* err = std::get_if<ApiError>(&shown)) {
      co_await write_body(c, req, http::status(err->status), kJsonNative,
                          native_error_body(err->message));
    } else {
      co_await write_body(c, req, http::status::ok, kJsonNative,
                          show_body(std::get<std::string>(shown)));
    }
    co_return After::keep_alive;
  }

  if (path == "/sim/config") {
    // Bodies are named before each co_await (GCC 12 and temporaries in co_await expressions).
    if (method == http::verb::post) {
      auto changed = apply_live_changes(live_settings(), req.body());
      if (auto* why = std::get_if<std::string>(&changed)) {
        std::string error = native_error_body(*why);
        co_await write_body(c, req, http::status::bad_request, "application/json",
                            std::move(error));
        co_return After::keep_alive;
      }
      apply(std::get<LiveSettings>(changed));
      spdlog::info("live change: {}", req.body());
    } else if (!get) {
      co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                          "405 method not allowed", kGetPost);
      co_return After::keep_alive;
    }
    std::string settings = live_settings_json(live_settings());
    co_await write_body(c, req, http::status::ok, "application/json", std::move(settings));
    co_return After::keep_alive;
  }

  co_await write_body(c, req, http::status::not_found, "text/plain", "404 page not found");
  co_return After::keep_alive;
}

asio::awaitable<After> SimServer::Impl::handle_pull(Conn& c, const Request& req) {
  auto parsed = parse_pull_request(req.body(), catalog);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    std::string body = native_error_body(err->message);
    co_await write_body(c, req, http::status(err->status), kJsonNative, std::move(body));
    co_return After::keep_alive;
  }
  const PullRequest& pull = std::get<PullRequest>(parsed);
  note_call(req, pull.name);
  constexpr std::string_view kMiss = "pull model manifest: file does not exist";
  // (Bodies named before each co_await: GCC 12 and temporaries in co_await expressions.)
  if (!pull.stream) {
    const http::status status =
        pull.resolved ? http::status::ok : http::status::internal_server_error;
    std::string body =
        pull.resolved ? std::string(R"({"status":"success"})") : native_error_body(kMiss);
    co_await write_body(c, req, status, kJsonNative, std::move(body));
    co_return After::keep_alive;
  }
  std::string body = R"({"status":"pulling manifest"})";
  body.push_back('\n');
  body.append(pull.resolved ? std::string(R"({"status":"success"})") : native_error_body(kMiss));
  body.push_back('\n');
  co_await write_body(c, req, http::status::ok, "application/x-ndjson", std::move(body));
  co_return After::keep_alive;
}

asio::awaitable<void> SimServer::Impl::session(tcp::socket socket) {
  ++connections;
  struct Count {
    std::size_t& n;
    ~Count() { --n; }
  } count{connections};
  Conn c(std::move(socket), cfg.max_header_bytes + cfg.max_body_bytes + 65536);
  try {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(std::uint32_t(std::min<std::size_t>(cfg.max_header_bytes, UINT32_MAX)));
      parser.body_limit(cfg.max_body_bytes);
      c.stream.expires_after(cfg.idle_timeout);
      auto [ec, n] = co_await http::async_read_header(c.stream, c.buffer, parser,
                                                      asio::as_tuple(use_awaitable));
      if (ec == http::error::body_limit) {  // Content-Length above the limit
        Request dummy{http::verb::get, "/", 11};
        dummy.keep_alive(false);
        co_await write_body(c, dummy, http::status::payload_too_large, kJsonNative,
                            native_error_body("request body too large (limit " +
                                              std::to_string(cfg.max_body_bytes) + " bytes)"));
        break;
      }
      if (ec == http::error::header_limit) {
        Request dummy{http::verb::get, "/", 11};
        dummy.keep_alive(false);
        co_await write_body(c, dummy, http::status::request_header_fields_too_large, "text/plain",
                            "431 Request Header Fields Too Large");
        break;
      }
      if (ec) {
        // Malformed requests get Go's plain 400; a client that left or idled out gets nothing.
        const bool malformed =
            ec.category() == make_error_code(http::error::bad_target).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message;
        if (malformed) {
          Request dummy{http::verb::get, "/", 11};
          dummy.keep_alive(false);
          co_await write_body(c, dummy, http::status::bad_request, "text/plain", "400 Bad Request");
        }
        break;
      }
      auto& head = parser.get();
      if (beast::iequals(head[http::field::expect], "100-continue") && !parser.is_done()) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        c.stream.expires_after(cfg.write_timeout);
        co_await asio::async_write(c.stream, asio::buffer(kContinue), use_awaitable);
      }
      if (!parser.is_done()) {
        c.stream.expires_after(cfg.read_timeout);
        auto [bec, bn] =
            co_await http::async_read(c.stream, c.buffer, parser, asio::as_tuple(use_awaitable));
        if (bec == http::error::body_limit) {
          Request dummy{head.method(), head.target(), head.version()};
          dummy.keep_alive(false);
          co_await write_body(c, dummy, http::status::payload_too_large,
                              "application/json; charset=utf-8",
                              native_error_body("request body too large (limit " +
                                                std::to_string(cfg.max_body_bytes) + " bytes)"));
          break;
        }
        if (bec) break;
      }
      Request req = parser.release();
      const After after = co_await dispatch(c, req);
      if (after == After::close || c.closed || !req.keep_alive()) break;
    }
  } catch (const std::exception& e) {
    spdlog::debug("connection ended: {}", e.what());
  }
  if (!c.closed) {
    boost::system::error_code ec;
    c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    c.stream.socket().close(ec);
  }
}

asio::awaitable<void> SimServer::Impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    if (connections >= cfg.max_connections) {
      spdlog::warn("connection limit {} reached; closing new connection", cfg.max_connections);
      boost::system::error_code ignore;
      socket.close(ignore);
      continue;
    }
    boost::system::error_code ignore;
    socket.set_option(tcp::no_delay(true), ignore);
    // (`self` keeps the server alive while the session runs.)
    auto log = obs::log_escaped("simulator session");
    asio::co_spawn(ioc, session(std::move(socket)), [self, log](std::exception_ptr e) { log(e); });
  }
}

SimServer::SimServer(asio::io_context& ioc, SimConfig config) {
  if (auto why = validate(config.gpu)) throw std::invalid_argument(*why);
  if (config.parallel < 1) throw std::invalid_argument("parallel must be at least 1");
  if (!(config.time_scale > 0)) throw std::invalid_argument("time scale must be positive");
  impl_ = std::make_shared<Impl>(ioc, std::move(config));
  if (impl_->catalog.names().empty()) throw std::invalid_argument("no valid model names");
  for (const auto& name : impl_->catalog.names())
    impl_->pools.emplace(name, std::make_unique<SlotPool>(impl_->cfg.parallel, impl_->gpu));
  const tcp::endpoint ep(asio::ip::make_address(impl_->cfg.host), impl_->cfg.port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  // Ollama checks the Host header only when it listens on a loopback address (its defence
  // against DNS rebinding); bound to 0.0.0.0 or a LAN address, as in a container, it accepts any.
  impl_->check_host = !impl_->cfg.allow_any_host && ep.address().is_loopback();
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
}

SimServer::~SimServer() = default;

std::uint16_t SimServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void SimServer::start() {
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->pump_residency();  // arms the keep-alive of the models resident at start
}

void SimServer::stop() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  impl_->stopping = true;
  impl_->residency_timer.cancel();
}

}  // namespace sluice::sim
