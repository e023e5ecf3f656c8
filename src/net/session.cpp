// One client connection: HTTP/1.1 keep-alive, one request at a time, each either scheduled
// (planned, admitted by the gate, relayed) or passed straight through.
//
// The loop here reads a request head, checks it (framing, API key), routes it and records it
// (metrics, access log); then keep-alive or close. Each step has its own file:
//  * wire.hpp: framing rules, hop-by-hop stripping, head and chunk wire forms (pure);
//  * admission_plan.hpp: label headers, API key and body to a core::Request or a 400 (pure);
//  * routes.hpp: serve_scheduled (serve_scheduled.cpp) and serve_passthrough
//    (serve_passthrough.cpp), what a request does after its head was checked;
//  * relay.hpp: the upstream exchange (write, response head past 1xx, streamed body, failures);
//  * client_watch.hpp: noticing a client that left (parked, running, pass-through);
//  * request_context.hpp: the per-request state, and responses sluice makes itself.
//
// Shape (Beast's awaitable server and relay() examples): state lives in coroutine locals; a fresh
// parser per request with the limits of the config the request started with; expires_after()
// before every read and write (a stored deadline on a TimedStream, see timed_stream.hpp); expected
// failures are error_code values, and an exception ends only this session (caught at co_spawn in
// proxy.cpp).
//
// Invariants:
//  * A scheduled request's Slot is a local of the coroutine that relays it, so it is released
//    exactly once on every path: end of stream, client gone, upstream failure, inflight deadline,
//    close_all(), or the frame being destroyed by cancellation.
//  * An upstream connection goes back to the pool only when the response was read to its end,
//    the request was written completely and the upstream allowed keep-alive. Every other
//    connection is closed, which is also how Ollama learns that a client went away.
//  * From the end of the request body to the end of the response, a watcher waits for the client
//    to close its socket (EOF or reset seen with MSG_PEEK). If it does, the request is cancelled:
//    a parked one leaves the queue, a running one has its upstream connection closed.
//  * Once the response headers went out, a failure cannot change the status: a streamed
//    NDJSON/SSE response ends with one error line/event and the connection closes; any other
//    body is cut (the client sees a short body).
//  * Bodies are never copied: a scheduled body is parsed in place and moved into the upstream
//    request; streamed bodies go through one fixed buffer per relay.
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <chrono>
#include <string>

#include "client_watch.hpp"
#include "request_context.hpp"
#include "routes.hpp"
#include "sluice/obs/access_log.hpp"
#include "sluice/obs/logging.hpp"
#include "wire.hpp"

namespace sluice::net {

namespace {

/// First read of a request: enough for the headers of typical requests.
constexpr std::size_t kFirstReadBytes = 2048;

void record_request(Proxy::Impl& proxy, const RequestContext& ctx) {
  obs::Metrics& metrics = proxy.metrics;
  const core::Duration total = since(ctx.arrival);
  metrics.count_request(ctx.metrics_workload, ctx.outcome);
  metrics.observe_request_duration(ctx.metrics_workload, total);
  if (ctx.ttfb) metrics.observe_ttfb(ctx.metrics_workload, *ctx.ttfb);
  if (ctx.queue_wait) metrics.observe_queue_wait(ctx.metrics_workload, *ctx.queue_wait);
  metrics.add_tokens(ctx.metrics_workload, obs::TokenKind::prompt, ctx.prompt_tokens);
  metrics.add_tokens(ctx.metrics_workload, obs::TokenKind::output, ctx.output_tokens);
  if (ctx.upstream_error) metrics.count_upstream_error(*ctx.upstream_error);
  if (!ctx.backend_name.empty()) {
    metrics.count_backend_request(ctx.backend_name, ctx.outcome);
    if (ctx.backend) ++ctx.backend->requests;
    if (ctx.loaded_model) {
      // Only names the fleet knows become label values; any other counts as "other".
      const core::Fleet& fleet = proxy.gate.scheduler().fleet();
      const core::ModelId model = fleet.model(ctx.model);
      metrics.count_model_load(ctx.backend_name,
                               model == core::kUnlistedModel ? "" : fleet.model_name(model));
    }
  }
  if (!obs::access_log_enabled()) return;
  obs::AccessRecord record;
  record.time = std::chrono::system_clock::now();
  record.request_id = ctx.request_id;
  record.method = ctx.method;
  record.path = ctx.path;
  record.user = ctx.user;
  record.workload = ctx.workload_name;
  record.backend = ctx.backend_name;
  record.status = ctx.status;
  record.outcome = ctx.outcome;
  record.queue = ctx.queue_wait;
  record.ttfb = ctx.ttfb;
  record.total = total;
  record.prompt_tokens = ctx.prompt_tokens;
  record.output_tokens = ctx.output_tokens;
  record.upstream_error = ctx.upstream_error;
  obs::log_access(record);
}

/// Reads one request's header and serves it. Returns whether the connection may carry another.
asio::awaitable<bool> serve_request(Proxy::Impl& proxy, Client& client) {
  RequestContext ctx;
  ctx.config = proxy.config;
  ctx.backend = proxy.primary();
  ctx.upstream = &upstream_of(*ctx.config, ctx.backend->name);
  ctx.authenticator = proxy.authenticator;
  ctx.arrival = Clock::now();
  const config::LimitsConfig& limits = ctx.config->limits;

  http::request_parser<http::empty_body> head;
  head.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  head.body_limit(static_cast<std::uint64_t>(limits.max_body_bytes));
  // Usually the whole header came with the session's first read: parsed here, no I/O.
  error_code read_error;
  parse_buffered(head, client.buffer, read_error);
  if (!read_error && !head.is_header_done()) {
    client.stream.expires_after(limits.header_read_timeout);
    std::tie(read_error, std::ignore) =
        co_await http::async_read_header(client.stream, client.buffer, head, use_tuple);
  }
  if (read_error) {
    if (!is_malformed(read_error)) co_return false;  // gone, reset or too slow: no answer
    ctx.request_id = generate_request_id();
    ctx.metrics_workload = proxy.metrics.unclassified();
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = "malformed HTTP request: " + read_error.message(),
                           .close = true};
    if (read_error == http::error::header_limit) {
      response.status = http::status::request_header_fields_too_large;
      response.message = "request headers larger than limits.max_header_bytes (" +
                         std::to_string(limits.max_header_bytes) + " bytes)";
    }
    if (read_error == http::error::body_limit) {  // Content-Length above the limit
      response = body_too_large("limits.max_body_bytes",
                                static_cast<std::uint64_t>(limits.max_body_bytes));
    }
    co_await send_local(client, ctx, std::move(response));
    record_request(proxy, ctx);
    co_return false;
  }

  const auto& request = head.get();
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  ctx.method = std::string(request.method_string());
  ctx.path = std::string(path);
  ctx.dialect = dialect_for(path);
  ctx.client_version = request.version();
  ctx.client_keep_alive = request.keep_alive() && !wire::close_after_response(request);
  ctx.is_head = request.method() == http::verb::head;
  ctx.request_id = client_request_id(request, *ctx.config);

  // API keys (auth.keys): every proxied request presents one, or gets 401.
  bool authenticated = true;
  std::string auth_error;
  if (ctx.authenticator->enabled()) {
    auto result =
        ctx.authenticator->authenticate(request[http::field::authorization], request["X-Api-Key"]);
    if (result.status == auth::Authenticator::Status::ok) {
      ctx.key = result.key;
      ctx.user = result.key->user;
    } else {
      authenticated = false;
      auth_error = result.status == auth::Authenticator::Status::missing
                       ? "missing API key: send Authorization: Bearer KEY or X-Api-Key: KEY"
                       : "invalid API key";
    }
  }

  if (target.empty() || target.front() != '/') {
    ctx.metrics_workload = proxy.metrics.unclassified();
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = "request target must be a path starting with '/'",
                           .close = !head.is_done()};
    co_await send_local(client, ctx, std::move(response));
  } else if (auto framing_error = wire::check_request_framing(request)) {
    ctx.metrics_workload = proxy.metrics.unclassified();
    ctx.outcome = obs::Outcome::invalid_request;
    // (Named first: GCC 12 destroys a temporary built inside a co_await expression twice.)
    LocalResponse response{.status = framing_error->status,
                           .message = std::move(framing_error->message),
                           .close = true};
    co_await send_local(client, ctx, std::move(response));
  } else if (auto length = head.content_length();
             length && *length > static_cast<std::uint64_t>(limits.max_body_bytes)) {
    ctx.metrics_workload = proxy.metrics.unclassified();
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response =
        body_too_large("limits.max_body_bytes", static_cast<std::uint64_t>(limits.max_body_bytes));
    co_await send_local(client, ctx, std::move(response));
  } else if (path.starts_with(kRequestStatusPrefix)) {
    co_await serve_request_status(proxy, client, head, ctx, authenticated);
  } else if (!authenticated) {
    ctx.metrics_workload = proxy.metrics.unclassified();
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.status = http::status::unauthorized,
                           .message = auth_error,
                           .close = !head.is_done(),
                           .authenticate = true};
    co_await send_local(client, ctx, std::move(response));
  } else if (request.method() == http::verb::post && ctx.config->is_scheduled_route(path)) {
    co_await serve_scheduled(proxy, client, head, ctx);
  } else {
    co_await serve_passthrough(proxy, client, head, ctx);
  }
  record_request(proxy, ctx);
  if (ctx.linger) co_await linger_and_close(client);
  co_return ctx.client_reusable&& ctx.client_keep_alive && !proxy.shutting_down;
}

}  // namespace

asio::awaitable<void> run_session(std::shared_ptr<Proxy::Impl> proxy, tcp::socket socket,
                                  std::list<SessionRecord>::iterator record) {
  struct Unregister {
    Proxy::Impl& proxy;
    std::list<SessionRecord>::iterator record;
    ~Unregister() { proxy.session_ended(record); }
  } unregister{*proxy, record};

  error_code ec;
  auto peer = socket.remote_endpoint(ec);
  const asio::any_io_executor socket_executor = socket.get_executor();
  Client client{TimedStream(std::move(socket)), beast::flat_buffer(),
                ec ? std::string("unknown") : peer.address().to_string(), *record,
                std::make_shared<DepartureWatch>(socket_executor)};
  record->client = &client.stream;
  client.watch->record = &*record;

  bool first = true;
  while (!proxy->shutting_down) {
    if (client.buffer.size() == 0) {
      // Wait for the next request: the first within header_read_timeout, later ones within
      // keepalive_timeout.
      const auto& limits = proxy->config->limits;
      client.stream.expires_after(first ? limits.header_read_timeout : limits.keepalive_timeout);
      auto [read_error, n] =
          co_await client.stream.async_read_some(client.buffer.prepare(kFirstReadBytes), use_tuple);
      if (read_error) break;
      client.buffer.commit(n);
    }
    first = false;
    record->client_left = false;
    ActiveRequest active(*proxy, *record);
    if (!co_await serve_request(*proxy, client)) break;
  }
  end_watch(client);
  client.watch->record = nullptr;
  record->client = nullptr;
  client.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  client.stream.socket().close(ec);
}

}  // namespace sluice::net
