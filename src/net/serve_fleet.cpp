// Pass-through requests in a configured fleet (issue 12), where "the first backend that is up"
// is not the right answer (the rules are in passthrough_route.hpp):
//  * the model lists (GET|HEAD /api/tags, /api/ps, /v1/models) are answered here, merged from
//    every backend that is up, asked at once with probe_get() (fresh connections), each bounded
//    by fleet.health_timeout (connect included) and kMaxProbeBody; a backend that fails, times
//    out or answers something else is left out and logged (warn);
//  * /api/show and /v1/models/{model} are aimed at a backend serving the model;
//  * management calls are aimed at the backend X-Sluice-Backend names (or the only one);
//  * X-Sluice-Backend on any pass-through request picks that backend; it is never forwarded.
// What is aimed at a backend is then forwarded by serve_passthrough.cpp or here, with the same
// relay as every pass-through request.
//
// Invariants: the fan-out's state is shared with its probe coroutines, so a probe that
// finishes after the answer went out (or after the session ended) writes into live memory; the
// answer waits at most twice fleet.health_timeout.
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "backend_probe.hpp"
#include "client_watch.hpp"
#include "passthrough_route.hpp"
#include "relay.hpp"
#include "routes.hpp"
#include "sluice/obs/escaped.hpp"

namespace sluice::net {

namespace {

/// The replies of one fan-out, shared with its probe coroutines.
struct FanOut {
  FanOut(const asio::any_io_executor& executor, std::size_t backends)
      : finished(executor, Clock::time_point::max()), results(backends), pending(backends) {}
  asio::steady_timer finished;  ///< cancelled when the last probe is back
  std::vector<std::optional<ProbeResult>> results;
  std::size_t pending;
};

// (Parameters by value: they live in the coroutine frame, which outlives the spawning call.)
asio::awaitable<void> probe_into(std::shared_ptr<FanOut> state, std::size_t index,
                                 std::shared_ptr<Backend> backend, config::UpstreamConfig upstream,
                                 std::string target, Clock::duration timeout) {
  ProbeResult result = co_await probe_get(backend->pool, upstream, std::move(target), timeout);
  state->results[index] = std::move(result);
  if (--state->pending == 0) state->finished.cancel();
}

void aim(RequestContext& ctx, const std::shared_ptr<Backend>& backend) {
  ctx.backend = backend;
  ctx.upstream = &upstream_of(*ctx.config, backend->name);
}

std::shared_ptr<Backend> backend_named(const Proxy::Impl& proxy, std::string_view name) {
  for (const auto& backend : proxy.backends) {
    if (backend && backend->name == name) return backend;
  }
  return nullptr;
}

asio::awaitable<void> answer_no_backend(Client& client, RequestContext& ctx, std::string message) {
  ctx.outcome = obs::Outcome::upstream_error;
  LocalResponse response{.status = http::status::service_unavailable,
                         .message = std::move(message),
                         .reason = "no_backend"};
  co_await send_local(client, ctx, std::move(response));
}

/// The merged list of `route` from every backend that is up.
asio::awaitable<void> serve_catalog(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                    CatalogRoute route, const std::string& target) {
  const config::Config& config = *ctx.config;
  const Clock::duration timeout = config.fleet_settings.health_timeout;
  std::string what = "GET ";
  what.append(ctx.path);

  std::vector<std::shared_ptr<Backend>> asked;
  for (const auto& backend : proxy.backends) {
    if (backend && backend->health.up()) asked.push_back(backend);
  }
  if (asked.empty()) {
    std::string message = "no backend is up to answer ";
    message.append(what);
    co_await answer_no_backend(client, ctx, std::move(message));
    co_return;
  }

  auto state = std::make_shared<FanOut>(proxy.io.get_executor(), asked.size());
  for (std::size_t i = 0; i < asked.size(); ++i) {
    config::UpstreamConfig upstream = upstream_of(config, asked[i]->name);
    upstream.connect_timeout = std::min<config::Duration>(upstream.connect_timeout, timeout);
    asio::co_spawn(proxy.io, probe_into(state, i, asked[i], std::move(upstream), target, timeout),
                   obs::log_escaped("catalog probe"));
  }
  // Each probe ends within connect_timeout + timeout <= 2 x timeout; the timer is the backstop.
  state->finished.expires_after(2 * timeout);
  while (state->pending > 0) {
    auto [ec] = co_await state->finished.async_wait(use_tuple);
    if (!ec) break;  // the backstop: whoever has not answered is left out
  }

  std::vector<std::string> bodies;
  std::string answered;
  std::string problems;
  for (std::size_t i = 0; i < asked.size(); ++i) {
    std::optional<ProbeResult>& result = state->results[i];
    std::string problem;
    if (!result) {
      problem = "no answer within " + format_seconds(2 * timeout);
    } else if (!result->error.empty()) {
      problem = result->error;
    } else if (result->status != 200) {
      problem = "status ";
      problem.append(std::to_string(result->status));
    } else {
      problem = catalog_problem(route, result->body);
    }
    if (!problem.empty()) {
      spdlog::warn("backend {} left out of {} (request {}): {}", asked[i]->name, what,
                   ctx.request_id, problem);
      if (!problems.empty()) problems.append("; ");
      problems.append(asked[i]->name).append(": ").append(problem);
      continue;
    }
    bodies.push_back(std::move(result->body));
    if (!answered.empty()) answered.push_back(',');
    answered.append(asked[i]->name);
  }
  if (bodies.empty()) {
    std::string message = "no backend answered ";
    message.append(what).append(" (").append(problems).append(")");
    co_await answer_no_backend(client, ctx, std::move(message));
    co_return;
  }

  std::string merged = merge_catalogs(route, bodies);
  ctx.backend_name = std::move(answered);  // X-Sluice-Backend and the access log: who answered
  http::response<http::string_body> res{http::status::ok, ctx.client_version < 11 ? 10u : 11u};
  res.set(http::field::content_type,
          route == CatalogRoute::openai ? "application/json" : "application/json; charset=utf-8");
  add_sluice_headers(res, ctx);
  const bool keep = ctx.client_keep_alive && ctx.client_reusable && !proxy.shutting_down;
  res.keep_alive(keep);
  res.content_length(merged.size());  // a HEAD gets the length of what a GET would get
  if (!ctx.is_head) res.body() = std::move(merged);
  client.stream.expires_after(config.limits.write_timeout);
  auto [ec, written] = co_await http::async_write(client.stream, res, use_tuple);
  if (!ctx.ttfb) ctx.ttfb = since(ctx.arrival);
  if (ec) {
    ctx.outcome = client.record.cut ? obs::Outcome::shutting_down : obs::Outcome::client_gone;
    ctx.client_reusable = false;
    co_return;
  }
  ctx.status = 200;
  if (!keep) ctx.client_reusable = false;
}

/// Aims the request at a backend serving `model`: up, listing it (or with a catalog not known
/// yet); resident there first, then the least busy. Returns false after answering 404 (no
/// backend serves it, in Ollama's wording) or 503 no_backend (those that serve it are down).
asio::awaitable<bool> aim_at_model(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                   const std::string& model) {
  const core::Fleet& fleet = proxy.gate.scheduler().fleet();
  const core::ModelId id = fleet.model(model);
  const core::BackendSet eligible = fleet.eligible(id);
  std::vector<ModelCandidate> candidates(proxy.backends.size());
  for (std::size_t b = 0; b < proxy.backends.size(); ++b) {
    if (!proxy.backends[b] || b >= core::kMaxBackends) continue;
    const auto backend_id = static_cast<core::BackendId>(b);
    candidates[b] = {.eligible = (eligible >> b & 1U) != 0,
                     .resident = fleet.is_resident(backend_id, id),
                     .in_flight = fleet.in_flight(backend_id)};
  }
  if (std::optional<std::size_t> chosen = choose_model_backend(candidates)) {
    aim(ctx, proxy.backends[*chosen]);
    co_return true;
  }
  const core::Time now = proxy.gate.now();
  if (fleet.choose(id, 0, now, now).kind == core::Placement::Kind::down) {
    std::string message = "no backend serving model \"";
    message.append(model).append("\" is up");
    co_await answer_no_backend(client, ctx, std::move(message));
    co_return false;
  }
  ctx.outcome = obs::Outcome::invalid_request;
  LocalResponse response{.status = http::status::not_found,
                         .message = "model \"" + model + "\" not found, try pulling it first",
                         .reason = "model_not_found"};
  co_await send_local(client, ctx, std::move(response));
  co_return false;
}

/// POST /api/show: the body read (bounded by limits.max_scheduled_body_bytes, as every body
/// sluice holds in memory), the request aimed by the model it names (unless `aimed`), forwarded.
asio::awaitable<void> serve_show(Proxy::Impl& proxy, Client& client,
                                 http::request_parser<http::empty_body>& head, RequestContext& ctx,
                                 bool aimed) {
  const config::Config& config = *ctx.config;
  const auto max_body = static_cast<std::uint64_t>(config.limits.max_scheduled_body_bytes);
  if (auto length = head.content_length(); length && *length > max_body) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response = body_too_large("limits.max_scheduled_body_bytes", max_body);
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }
  const bool send_100 = expects_continue(head.get());
  http::request_parser<http::string_body> parser(std::move(head));
  const bool read = co_await read_body_in_memory(client, ctx, parser, send_100,
                                                 "limits.max_scheduled_body_bytes", max_body);
  if (!read) co_return;
  http::request<http::string_body> request = parser.release();
  const std::string target(request.target());
  if (!aimed) {
    // A body that names no model is the backend's to refuse (Ollama: 400 "model is required").
    if (std::optional<std::string> model = show_model(request.body())) {
      const bool found = co_await aim_at_model(proxy, client, ctx, *model);
      if (!found) co_return;
    }
  }
  prepare_upstream_request(request.base(), target, ctx, {.content_length = request.body().size()});
  begin_watch(proxy, client, WatchFrom::later);
  co_await forward_buffered(proxy, client, ctx, request, Clock::time_point::max(), nullptr);
  end_watch(client);
}

}  // namespace

asio::awaitable<bool> serve_in_fleet(Proxy::Impl& proxy, Client& client,
                                     http::request_parser<http::empty_body>& head,
                                     RequestContext& ctx) {
  const config::Config& config = *ctx.config;
  std::optional<std::string> named;
  if (auto it = head.get().find(kBackendHeader); it != head.get().end())
    named = std::string(it->value());
  head.get().erase(kBackendHeader);  // sluice's own header: never forwarded
  const std::string target(head.get().target());
  const PassthroughPlan plan = plan_passthrough(ctx.method, target);

  if (named || plan.route == FleetRoute::management) {
    std::vector<std::string> names;
    names.reserve(config.backends.size());
    for (const config::BackendConfig& backend : config.backends)
      names.push_back(backend.name);
    ManagementChoice choice = choose_management_backend(ctx.path, named, names);
    std::shared_ptr<Backend> backend;
    if (choice.index) backend = backend_named(proxy, names[*choice.index]);
    if (!backend) {
      ctx.outcome = obs::Outcome::invalid_request;
      LocalResponse response{
          .message = std::move(choice.error), .reason = choice.reason, .close = !head.is_done()};
      co_await send_local(client, ctx, std::move(response));
      co_return true;
    }
    aim(ctx, backend);
    // Aimed by name: a /api/show body still has to be read, and nothing else changes.
    if (plan.route == FleetRoute::by_model && plan.model.empty() && !head.is_done()) {
      co_await serve_show(proxy, client, head, ctx, true);
      co_return true;
    }
    co_return false;
  }

  switch (plan.route) {
    case FleetRoute::catalog:
      if (!head.is_done()) co_return false;  // a GET with a body is not a list request
      co_await serve_catalog(proxy, client, ctx, plan.catalog, target);
      co_return true;
    case FleetRoute::by_model: {
      if (plan.model.empty()) {
        if (head.is_done()) co_return false;  // no body, no model: the backend's 400
        co_await serve_show(proxy, client, head, ctx, false);
        co_return true;
      }
      if (!head.is_done()) co_return false;
      const bool found = co_await aim_at_model(proxy, client, ctx, plan.model);
      co_return !found;
    }
    case FleetRoute::primary:
    case FleetRoute::management:
      break;
  }
  co_return false;
}

}  // namespace sluice::net
