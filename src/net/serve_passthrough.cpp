// Pass-through routes: never queued; a request without a body is forwarded from memory (and
// retried on a stale pooled connection), one with a body (a blob upload, a model creation) is
// streamed to the upstream as it arrives (see routes.hpp). In a configured fleet,
// serve_in_fleet() (serve_fleet.cpp) first answers the merged lists itself and aims /api/show and
// management calls at their backend; a single upstream is passed through as it always was.
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "client_watch.hpp"
#include "relay.hpp"
#include "routes.hpp"

namespace sluice::net {

/// Everything about a pass-through request after its header was read.
asio::awaitable<void> serve_passthrough(Proxy::Impl& proxy, Client& client,
                                        http::request_parser<http::empty_body>& head,
                                        RequestContext& ctx) {
  const config::Config& config = *ctx.config;
  ctx.workload_name = std::string(config::kPassthroughWorkload);
  ctx.metrics_workload = proxy.metrics.passthrough();
  if (config.fleet) {
    const bool served = co_await serve_in_fleet(proxy, client, head, ctx);
    if (served) co_return;
  }
  const std::string target(head.get().target());

  if (head.is_done()) {
    // No request body: the whole exchange can be retried on a stale connection.
    // (A Content-Length the client sent can only be 0 here, and is sent on as such.)
    const std::optional<std::uint64_t> length = to_std(head.content_length());
    http::request<http::empty_body> request = head.release();
    prepare_upstream_request(request.base(), target, ctx, {.content_length = length});
    begin_watch(proxy, client, WatchFrom::later);
    co_await forward_buffered(proxy, client, ctx, request, Clock::time_point::max(), nullptr);
    end_watch(client);
    co_return;
  }

  // A request body (a blob upload, a model creation): streamed to the upstream as it arrives.
  const UpstreamFraming framing{
      .chunked = head.chunked(),
      .content_length = head.chunked() ? std::nullopt : to_std(head.content_length())};
  const bool send_100 = expects_continue(head.get());
  http::request_parser<http::buffer_body> parser(std::move(head));
  parser.body_limit(static_cast<std::uint64_t>(config.limits.max_body_bytes));
  prepare_upstream_request(parser.get().base(), target, ctx, framing);

  ctx.backend_name = ctx.backend->name;
  AcquireResult acquired = co_await ctx.backend->pool.acquire(*ctx.upstream);
  if (!acquired.connection) {
    proxy.note_unreachable(*ctx.backend, acquired.error.message());
    co_await answer_connect_failure(client, ctx, acquired, true);
    co_return;
  }
  std::unique_ptr<UpstreamConnection> connection = std::move(acquired.connection);
  UpstreamInUse in_use(client.record, connection->stream);
  if (send_100) {
    const bool sent = co_await send_continue(client, ctx);
    if (!sent) co_return;
  }

  http::request_serializer<http::buffer_body> serializer(parser.get());
  BufferPool::Lease lease(proxy.buffers);
  char* const buffer = lease.data();
  constexpr std::size_t buffer_size = BufferPool::Lease::size();
  auto& body = parser.get().body();
  for (;;) {
    if (!parser.is_done()) {
      body.data = buffer;
      body.size = buffer_size;
      client.stream.expires_after(config.limits.header_read_timeout);
      auto [read_error, n] =
          co_await http::async_read_some(client.stream, client.buffer, parser, use_tuple);
      if (read_error == http::error::need_buffer) read_error = {};
      if (read_error) {
        co_await answer_body_error(client, ctx, read_error, "limits.max_body_bytes",
                                   static_cast<std::uint64_t>(config.limits.max_body_bytes));
        co_return;
      }
      body.size = buffer_size - body.size;
      body.data = body.size > 0 ? buffer : nullptr;
      body.more = !parser.is_done();
      if (body.size == 0 && body.more) continue;
    } else {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    }
    connection->stream.expires_after(ctx.upstream->idle_timeout);
    auto [write_error, written] =
        co_await http::async_write(connection->stream, serializer, use_tuple);
    if (write_error == http::error::need_buffer) write_error = {};
    if (write_error) {
      Failure failure =
          failure_of(Phase::send_body, write_error, client, ctx, Clock::time_point::max());
      co_await answer_failure(client, ctx, std::move(failure), !parser.is_done());
      co_return;
    }
    if (serializer.is_done()) break;
  }

  begin_watch(proxy, client, WatchFrom::later);
  co_await relay_response(proxy, client, ctx, connection, Clock::time_point::max(), nullptr, false);
  end_watch(client);
}

}  // namespace sluice::net
