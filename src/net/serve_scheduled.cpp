// Scheduled routes: label headers and body planned (admission_plan.hpp), the request admitted by
// the gate, then relayed, all raced against the client leaving (see routes.hpp).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>

#include "admission_plan.hpp"
#include "client_watch.hpp"
#include "progress.hpp"
#include "relay.hpp"
#include "routes.hpp"

namespace sluice::net {

namespace {

/// The most backends a request moves to after connect failures (each attempt on a refused
/// port takes a millisecond; one that times out takes connect_timeout).
constexpr int kMaxConnectMoves = 3;

/// Answers a request whose queue deadline passed while it waited (503 queue_timeout, or
/// no_backend when no backend serving its model is up).
asio::awaitable<void> answer_queue_timeout(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                           const AdmissionPlan& plan, core::Duration waited) {
  ctx.outcome = obs::Outcome::queue_timeout;
  const core::Fleet& fleet = proxy.gate.scheduler().fleet();
  const bool no_backend = fleet.eligible(fleet.model(plan.body.model)) == 0;
  LocalResponse response{
      .status = http::status::service_unavailable,
      .message = no_backend
                     ? "no backend serving model \"" + plan.body.model + "\" was up within " +
                           queue_ms_text(waited) + " ms"
                     : "timed out waiting in the queue after " + queue_ms_text(waited) + " ms",
      .reason = no_backend ? "no_backend" : "queue_timeout",
      .retry_after = proxy.gate.retry_after_seconds()};
  co_await send_local(client, ctx, std::move(response));
}

/// Admission, then the upstream exchange, for one scheduled request.
asio::awaitable<void> admit_and_forward(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                        const AdmissionPlan& plan,
                                        http::request<http::string_body>& upstream_request,
                                        const std::string& target, TrackedRequest& tracked) {
  core::Request request = plan.request();
  request.progress = ctx.progress != ProgressMode::none;
  AdmitResult admission;
  if (request.progress) {
    admission = co_await admit_with_progress(proxy, client, ctx, request, tracked, plan.body.model);
  } else {
    admission = co_await proxy.gate.admit(request, &tracked);
  }
  ctx.queue_wait = admission.waited;
  if (const auto& at_park = tracked.at_park()) {
    ctx.eta_at_park = at_park->eta;
    ctx.eta_rate_at_park = at_park->eta_rate;
    ctx.eta_after = tracked.eta_after();
  }
  switch (admission.kind) {
    case AdmitResult::Kind::admitted:
      tracked.admitted();
      break;
    case AdmitResult::Kind::rejected: {
      if (admission.reason == core::RejectReason::model_not_found) {
        // Ollama's own wording, so clients that special-case it keep working.
        ctx.outcome = obs::Outcome::invalid_request;
        LocalResponse response{
            .status = http::status::not_found,
            .message = "model \"" + plan.body.model + "\" not found, try pulling it first",
            .reason = core::reason_name(admission.reason)};
        co_await send_local(client, ctx, std::move(response));
        co_return;
      }
      const bool shutdown = admission.reason == core::RejectReason::shutting_down;
      ctx.outcome = shutdown ? obs::Outcome::shutting_down
                    : admission.reason == core::RejectReason::key_queue_full
                        ? obs::Outcome::user_queue_full
                        : obs::Outcome::queue_full;
      LocalResponse response{
          .status = shutdown ? http::status::service_unavailable : http::status::too_many_requests,
          .message = shutdown ? "sluice is shutting down"
                     : admission.reason == core::RejectReason::key_queue_full
                         ? "too many queued requests for this " +
                               proxy.gate.scheduler().workload(request.workload).fairness_label
                         : "queue full",
          .reason = core::reason_name(admission.reason),
          .retry_after = proxy.gate.retry_after_seconds(),
          .close = shutdown};
      co_await send_local(client, ctx, std::move(response));
      co_return;
    }
    case AdmitResult::Kind::timed_out:
      co_await answer_queue_timeout(proxy, client, ctx, plan, admission.waited);
      co_return;
    case AdmitResult::Kind::cancelled:
      ctx.outcome = obs::Outcome::client_gone;
      ctx.client_reusable = false;
      co_return;
  }

  Slot slot = std::move(admission.slot);
  // Aimed at the backend the scheduler chose: its address, Host and path prefix (`target` is
  // the client's, so a move never stacks two backends' prefixes).
  auto aim = [&] {
    aim_at(ctx, proxy.backend_at(slot.backend()), proxy.config);
    prepare_upstream_request(upstream_request.base(), target, ctx,
                             {.content_length = upstream_request.body().size()});
  };
  aim();
  // A configured fleet moves a request whose backend failed before answering (see relay.hpp):
  // after connect failures to at most kMaxConnectMoves other backends and never more than the
  // fleet has, so a fleet-wide outage (sluice's own network) costs a few fast attempts, not a
  // walk through every backend while the client waits; after a reset or header timeout once
  // (fleet.retry_before_headers), since the request may have been what broke the backend.
  // A move goes to a backend with room now, else the request waits in the queue again at its
  // place (the gate's requeue, raced like the first wait against the client leaving) and goes
  // where it is admitted; its original queue deadline still holds (then 503 as for any queue
  // timeout: nothing was sent yet).
  // A single upstream.url has none: its failures are answered 502/504 as they always were.
  std::optional<Failover> failover;
  if (ctx.config->fleet) {
    const auto others = static_cast<int>(ctx.config->backends.size()) - 1;
    auto reaim = [&](std::string_view why) -> asio::awaitable<Reaimed> {
      const std::string from = ctx.backend->name;
      if (slot.reroute()) {
        aim();
        spdlog::warn("request {}: failover from backend {} to {}: {}", ctx.request_id, from,
                     ctx.backend->name, why);
        co_return Reaimed::moved;
      }
      spdlog::warn(
          "request {}: backend {} failed ({}); no other backend has room, back in the "
          "queue",
          ctx.request_id, from, why);
      // With progress on it is kept informed while parked again, as the first time.
      AdmitResult again;
      if (ctx.progress != ProgressMode::none) {
        again = co_await requeue_with_progress(proxy, client, ctx, slot, tracked, plan.body.model);
      } else {
        again = co_await proxy.gate.requeue(slot, &tracked);
      }
      ctx.queue_wait = ctx.queue_wait.value_or(core::Duration{}) + again.waited;
      switch (again.kind) {
        case AdmitResult::Kind::admitted:
          tracked.admitted();
          slot = std::move(again.slot);
          aim();
          spdlog::warn("request {}: failover from backend {} to {} after waiting in the queue",
                       ctx.request_id, from, ctx.backend->name);
          co_return Reaimed::moved;
        case AdmitResult::Kind::timed_out:
          co_await answer_queue_timeout(proxy, client, ctx, plan, *ctx.queue_wait);
          co_return Reaimed::answered;
        case AdmitResult::Kind::cancelled:
          ctx.outcome = obs::Outcome::client_gone;
          ctx.client_reusable = false;
          co_return Reaimed::answered;
        case AdmitResult::Kind::rejected:
          break;  // shutting down: answer the failure
      }
      co_return Reaimed::stays;
    };
    failover.emplace(
        Failover{.reaim = std::move(reaim),
                 .connect_moves = std::clamp(others, 0, kMaxConnectMoves),
                 .unsent_moves = ctx.config->fleet_settings.retry_before_headers ? 1 : 0});
  }
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(ctx.config->scheduler.max_inflight_duration);
  UsageScanner scanner;
  Failover* failing_over = failover ? &*failover : nullptr;
  co_await forward_buffered(proxy, client, ctx, upstream_request, deadline, &scanner, failing_over);

  core::Timings timings = scanner.timings();
  // A complete answer teaches the adaptive limit (concurrency.hpp): the time the backend took
  // to send its head and to finish. A failed or cut one says nothing about the backend's pace,
  // nor does an embedding (its head comes with the whole answer).
  if (!plan.body.embedding && ctx.upstream_ttfb && ctx.upstream_sent && ctx.status == 200 &&
      ctx.outcome == obs::Outcome::ok && !scanner.saw_error()) {
    timings.time_to_first_byte = *ctx.upstream_ttfb;
    timings.response_time = since(*ctx.upstream_sent);
    timings.streamed = plan.body.stream;
  }
  slot.set_timings(timings);
  ctx.model = plan.body.model;  // for sluice_backend_model_loads_total (session.cpp)
  ctx.loaded_model = proxy.gate.scheduler().fleet().counts_as_load(scanner.timings());
  ctx.prompt_tokens = scanner.prompt_tokens();
  ctx.output_tokens = scanner.output_tokens();
  if (ctx.prompt_tokens >= 0 || ctx.output_tokens >= 0) {
    slot.set_actual_cost(std::max<std::int64_t>(ctx.prompt_tokens, 0) +
                         std::max<std::int64_t>(ctx.output_tokens, 0));
  }
  if (!plan.body.embedding && scanner.saw_done() && ctx.output_tokens >= 0)
    proxy.cost_model.observe(ctx.workload_name, plan.body.model, ctx.output_tokens);
  slot.release();
}

}  // namespace

/// Everything about a scheduled route after its header was read.
asio::awaitable<void> serve_scheduled(Proxy::Impl& proxy, Client& client,
                                      http::request_parser<http::empty_body>& head,
                                      RequestContext& ctx) {
  const config::Config& config = *ctx.config;
  const auto& fields = head.get().base();
  ctx.scheduled = true;
  ctx.metrics_workload = proxy.metrics.unclassified();
  const bool body_pending = !head.is_done();

  std::string duplicate;
  LabelHeaderValues values{
      .user = single_header(fields, config.headers.user, duplicate),
      .tier = single_header(fields, config.headers.tier, duplicate),
      .priority = single_header(fields, config.headers.priority, duplicate),
      .workload = single_header(fields, config.headers.workload, duplicate),
      .tokens = single_header(fields, config.headers.tokens, duplicate),
      .queue_timeout = single_header(fields, config.headers.queue_timeout, duplicate),
      .request_id = single_header(fields, config.headers.request_id, duplicate)};
  LabelPlan labels =
      plan_labels(config.headers, values, duplicate, ctx.key, proxy.gate.scheduler());
  if (!labels.labels.request_id.empty()) ctx.request_id = labels.labels.request_id;
  ctx.user = std::string(labels.labels.labels.value_or_empty("user"));
  const std::string& error = labels.error;
  // A bad header is answered before the body when the client waits for 100 Continue (then the
  // connection closes); otherwise the body is read first so the connection stays usable.
  const bool send_100 = expects_continue(fields);
  if (!error.empty() && (send_100 || !body_pending)) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = error, .close = body_pending};
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }

  const auto max_body = static_cast<std::uint64_t>(config.limits.max_scheduled_body_bytes);
  if (auto length = head.content_length(); length && *length > max_body) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response = body_too_large("limits.max_scheduled_body_bytes", max_body);
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }

  std::optional<std::string> progress_header;  // (read before the head moves into `parser`)
  if (auto asked = fields.find(kProgressHeader); asked != fields.end())
    progress_header = std::string(asked->value());
  http::request_parser<http::string_body> parser(std::move(head));
  const bool read = co_await read_body_in_memory(client, ctx, parser, send_100,
                                                 "limits.max_scheduled_body_bytes", max_body);
  if (!read) co_return;

  if (!error.empty()) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = error};
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }
  AdmissionPlan plan;
  std::string body_error =
      plan_admission(std::move(labels), ctx.path, parser.get().body(), client.address,
                     proxy.gate.scheduler(), proxy.cost_model, plan);
  if (!body_error.empty()) {
    ctx.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = std::move(body_error)};
    co_await send_local(client, ctx, std::move(response));
    co_return;
  }
  ctx.workload_name = plan.workload_name;
  ctx.metrics_workload = proxy.metrics.workload(plan.workload_name);

  // Progress while parked: asked by the header, else the workload's default (progress.hpp).
  bool progress = proxy.gate.scheduler().workload(plan.workload).progress;
  if (progress_header) {
    const std::optional<bool> parsed = parse_progress_header(*progress_header);
    if (!parsed) {
      ctx.outcome = obs::Outcome::invalid_request;
      LocalResponse response{.message = "invalid " + std::string(kProgressHeader) +
                                        " header: must be 1, 0, true or false"};
      co_await send_local(client, ctx, std::move(response));
      co_return;
    }
    progress = *parsed;
  }
  // (Its body is chunked: not for HTTP/1.0 clients, and a HEAD has no body.)
  if (progress && ctx.client_version >= 11 && !ctx.is_head)
    ctx.progress = progress_mode(ctx.path, ctx.dialect, plan.body);

  http::request<http::string_body> upstream_request = parser.release();
  const std::string target(upstream_request.target());

  // Known to GET /sluice/requests/{id} from here until it ends (then as finished, for a while).
  TrackedRequest tracked(proxy.waiting, proxy.gate, ctx.request_id, ctx.key ? ctx.key->name : "",
                         plan.workload_name);
  tracked.record_at_park = config.scheduler.eta_header;
  using namespace asio::experimental::awaitable_operators;
  auto work = admit_and_forward(proxy, client, ctx, plan, upstream_request, target, tracked);
  begin_watch(proxy, client, WatchFrom::now);
  auto gone = departed(client);
  auto winner = co_await (std::move(work) || std::move(gone));
  end_watch(client);
  // The departure won the race: the admission wait or the relay was cancelled by it.
  if (winner.index() == 1) note_departure(ctx, client.record);
}

}  // namespace sluice::net
