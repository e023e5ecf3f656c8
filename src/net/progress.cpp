// Progress while parked (see progress.hpp).
#include "progress.hpp"

#include <array>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/message.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "wire.hpp"

namespace sluice::net {

namespace {

std::string eta_text(const WaitFigures& figures) {
  if (!figures.eta) return "null";
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(*figures.eta).count());
}

// Writes `pieces` as one chunk (or the head and a chunk) without the caller's cancellation: a
// write cut halfway would corrupt the body the upstream's answer continues.
asio::awaitable<error_code> write_whole(Client& client, RequestContext& ctx, std::string bytes) {
  client.stream.expires_after(ctx.config->limits.write_timeout);
  auto token = asio::bind_cancellation_slot(asio::cancellation_slot(), use_tuple);
  auto [ec, written] = co_await asio::async_write(client.stream, asio::buffer(bytes), token);
  co_return ec;
}

std::string as_chunk(std::string_view data) {
  std::array<char, 24> line{};
  std::string chunk(wire::chunk_size_line(data.size(), line));
  chunk.append(data);
  chunk.append(wire::kChunkEnd);
  return chunk;
}

// The 200 head sent when the request parks (chunked, the promised content type).
std::string progress_head(const RequestContext& ctx) {
  http::response_header<> head;
  head.result(http::status::ok);
  head.version(11);
  head.set(http::field::content_type, progress_content_type(ctx.progress));
  if (ctx.progress == ProgressMode::sse) head.set(http::field::cache_control, "no-cache");
  head.set(kProgressHeader, "1");
  add_sluice_headers(head, ctx);
  // Parked: no backend holds it (after a failover, ctx still names the one that failed).
  head.erase(kBackendHeader);
  head.set(http::field::transfer_encoding, "chunked");
  if (!ctx.client_keep_alive) head.set(http::field::connection, "close");
  return wire::serialize_head(head);
}

bool cancelled(const asio::cancellation_state& state) {
  return state.cancelled() != asio::cancellation_type::none;
}

// While parked: the head as soon as the request parks, then a keep-alive each interval. Ends
// when cancelled (admission won the race), or when a write fails (the client is gone).
asio::awaitable<void> keep_alive(Client& client, RequestContext& ctx, TrackedRequest& tracked,
                                 std::string model) {
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto wake = [&timer] { timer.cancel(); };
  tracked.on_park = wake;
  if (!tracked.parked()) {
    timer.expires_at(asio::steady_timer::time_point::max());
    co_await timer.async_wait(use_tuple);
  }
  tracked.on_park = nullptr;
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  if (cancelled(state) || !tracked.parked()) co_return;

  const Clock::duration interval = ctx.config->scheduler.progress_interval;
  std::string piece = keepalive_piece(ctx.progress, model, tracked.figures(), rfc3339_now());
  // Parked again after a failover, the head may be out already: the body goes on.
  std::string first = ctx.progress_sent ? as_chunk(piece) : progress_head(ctx) + as_chunk(piece);
  if (!ctx.progress_sent) ctx.ttfb = since(ctx.arrival);
  ctx.progress_sent = true;
  error_code ec = co_await write_whole(client, ctx, std::move(first));
  while (!ec) {
    state = co_await asio::this_coro::cancellation_state;
    if (cancelled(state)) co_return;
    timer.expires_after(interval);
    co_await timer.async_wait(use_tuple);
    state = co_await asio::this_coro::cancellation_state;
    if (cancelled(state) || !tracked.parked()) co_return;
    piece = keepalive_piece(ctx.progress, model, tracked.figures(), rfc3339_now());
    ec = co_await write_whole(client, ctx, as_chunk(piece));
  }
  ctx.client_reusable = false;  // the client is gone (or stopped reading): end the wait
}

}  // namespace

std::optional<bool> parse_progress_header(std::string_view value) {
  if (value == "1" || iequals(value, "true")) return true;
  if (value == "0" || iequals(value, "false")) return false;
  return std::nullopt;
}

ProgressMode progress_mode(std::string_view path, Dialect dialect, const BodyInfo& body) {
  if (body.embedding || !body.stream) return ProgressMode::json;
  if (dialect == Dialect::openai) return ProgressMode::sse;
  return path == "/api/chat" ? ProgressMode::ndjson_chat : ProgressMode::ndjson_generate;
}

std::string_view progress_content_type(ProgressMode mode) {
  switch (mode) {
    case ProgressMode::ndjson_generate:
    case ProgressMode::ndjson_chat:
      return "application/x-ndjson";
    case ProgressMode::sse:
      return "text/event-stream";
    case ProgressMode::json:
    case ProgressMode::none:
      break;
  }
  return "application/json; charset=utf-8";
}

std::string keepalive_piece(ProgressMode mode, std::string_view model, const WaitFigures& figures,
                            std::string_view created_at) {
  switch (mode) {
    case ProgressMode::ndjson_generate:
    case ProgressMode::ndjson_chat: {
      nlohmann::ordered_json line = {{"model", model}, {"created_at", created_at}};
      if (mode == ProgressMode::ndjson_chat) {
        line["message"] = {{"role", "assistant"}, {"content", ""}};
      } else {
        line["response"] = "";
      }
      line["done"] = false;
      line["sluice"] = {{"queue_position", figures.position}, {"eta_ms", nullptr}};
      if (figures.eta) {
        line["sluice"]["eta_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(*figures.eta).count();
      }
      return line.dump() + "\n";
    }
    case ProgressMode::sse:
      return ": sluice queue_position=" + std::to_string(figures.position) +
             " eta_ms=" + eta_text(figures) + "\n\n";
    case ProgressMode::json:
    case ProgressMode::none:
      break;
  }
  return " ";
}

std::string progress_error_piece(ProgressMode mode, Dialect dialect, std::string_view message,
                                 std::string_view openai_type) {
  switch (mode) {
    case ProgressMode::ndjson_generate:
    case ProgressMode::ndjson_chat:
      return stream_error_chunk(false, dialect, message);
    case ProgressMode::sse:
      return stream_error_chunk(true, dialect, message);
    case ProgressMode::json:
    case ProgressMode::none:
      break;
  }
  return error_body(dialect, message, openai_type);
}

std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count() %
      1'000'000'000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 48> text{};
  std::snprintf(text.data(), text.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                utc.tm_sec, static_cast<long long>(nanos));
  return text.data();
}

namespace {

// A wait for admission (gate.admit or gate.requeue) raced against the keep-alives.
asio::awaitable<AdmitResult> inform_while(asio::awaitable<AdmitResult> admission, Client& client,
                                          RequestContext& ctx, TrackedRequest& tracked,
                                          std::string model) {
  using namespace asio::experimental::awaitable_operators;
  auto informing = keep_alive(client, ctx, tracked, std::move(model));
  auto winner = co_await (std::move(admission) || std::move(informing));
  if (winner.index() == 0) co_return std::get<0>(std::move(winner));
  AdmitResult gone;  // a keep-alive could not be written: the client left
  gone.kind = AdmitResult::Kind::cancelled;
  co_return gone;
}

}  // namespace

asio::awaitable<AdmitResult> admit_with_progress(Proxy::Impl& proxy, Client& client,
                                                 RequestContext& ctx, core::Request request,
                                                 TrackedRequest& tracked, std::string model) {
  return inform_while(proxy.gate.admit(request, &tracked), client, ctx, tracked, std::move(model));
}

asio::awaitable<AdmitResult> requeue_with_progress(Proxy::Impl& proxy, Client& client,
                                                   RequestContext& ctx, Slot& slot,
                                                   TrackedRequest& tracked, std::string model) {
  return inform_while(proxy.gate.requeue(slot, &tracked), client, ctx, tracked, std::move(model));
}

}  // namespace sluice::net
