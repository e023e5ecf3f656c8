// GET /sluice/requests/{id} on the main listener: where a request stands (waiting.hpp), for the
// client that sent it. Access: without API keys, anyone who knows the id (ids are 128 random
// bits unless the client chose its own); with keys, the key that sent the request, or the admin
// token (auth.admin_token_sha256) when one is configured. Answers are JSON: 200 with the
// figures, or {"error": ...} with 400 (bad id), 401 (no valid key), 403 (another key's request),
// 404 (unknown, or finished more than core::RequestRegistry::kFinishedFor ago), 405 (not GET).
#include <boost/asio/write.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "routes.hpp"
#include "sluice/core/labels.hpp"

namespace sluice::net {

namespace {

asio::awaitable<void> send_json(Client& client, RequestContext& ctx, std::string body) {
  http::response<http::string_body> res{http::status::ok, ctx.client_version < 11 ? 10u : 11u};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  add_sluice_headers(res, ctx);
  if (!ctx.is_head) res.body() = std::move(body);
  res.keep_alive(ctx.client_keep_alive);
  res.prepare_payload();
  client.stream.expires_after(ctx.config->limits.write_timeout);
  auto [ec, written] = co_await http::async_write(client.stream, res, use_tuple);
  if (!ec) ctx.status = 200;
  ctx.ttfb = since(ctx.arrival);
  if (ec || !ctx.client_keep_alive) ctx.client_reusable = false;
}

}  // namespace

asio::awaitable<void> serve_request_status(Proxy::Impl& proxy, Client& client,
                                           http::request_parser<http::empty_body>& head,
                                           RequestContext& ctx, bool authenticated) {
  ctx.metrics_workload = proxy.metrics.passthrough();
  const auto& request = head.get();
  const std::string_view target = request.target();
  const std::string_view id =
      target.substr(0, target.find('?')).substr(kRequestStatusPrefix.size());
  LocalResponse refusal;
  refusal.close = !head.is_done();  // a body nobody reads: close after answering
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    refusal.status = http::status::method_not_allowed;
    refusal.message = "method not allowed: GET /sluice/requests/{id}";
  } else if (!head.is_done()) {
    refusal.message = "GET /sluice/requests/{id} takes no request body";
  } else if (!core::valid_label_value(id)) {
    refusal.message =
        "invalid request id in /sluice/requests/{id}: must be 1-256 printable ASCII characters "
        "(the request's X-Request-Id)";
  }
  if (!refusal.message.empty()) {
    ctx.outcome = obs::Outcome::invalid_request;
    co_await send_local(client, ctx, std::move(refusal));
    co_return;
  }

  // Who may read: with keys on, the admin token reads any request, a key only its own.
  std::optional<std::string_view> owner;
  if (ctx.authenticator->enabled()) {
    const bool admin = ctx.authenticator->has_admin_token() &&
                       ctx.authenticator->admin_allowed(request[http::field::authorization]);
    if (!admin) {
      if (!authenticated || !ctx.key) {
        ctx.outcome = obs::Outcome::invalid_request;
        LocalResponse response{.status = http::status::unauthorized,
                               .message =
                                   "missing or invalid API key: send the key that sent the "
                                   "request (Authorization: Bearer KEY or X-Api-Key: KEY) or the "
                                   "admin token",
                               .authenticate = true};
        co_await send_local(client, ctx, std::move(response));
        co_return;
      }
      owner = ctx.key->name;
    }
  }

  WaitingBoard& board = proxy.waiting;
  const core::Time now = proxy.gate.now();
  const core::RequestRegistry::Lookup found = board.registry.find(id, owner, now);
  if (!found.record) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{
        .status = found.forbidden ? http::status::forbidden : http::status::not_found,
        .message = found.forbidden
                       ? "request " + std::string(id) + " was sent with another API key"
                       : "no request " + std::string(id) +
                             " is known (parked, running, or finished in the last 5 minutes)"};
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }
  const WaitFigures figures = board.figures(*found.record);
  std::string body = request_status_json(*found.record, figures, now);
  co_await send_json(client, ctx, std::move(body));
}

}  // namespace sluice::net
