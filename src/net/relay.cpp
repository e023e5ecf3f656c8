// The upstream exchange and the streaming relay (see relay.hpp).
#include "relay.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>
#include <span>
#include <tuple>
#include <type_traits>

#include "failure.hpp"
#include "wire.hpp"

namespace sluice::net {

using wire::chunk_size_line;
using wire::kChunkEnd;
using wire::kLastChunk;
using wire::serialize_head;
using wire::strip_hop_by_hop;

namespace {

/// Upstream response headers larger than this are a bad response.
constexpr std::uint32_t kUpstreamHeaderLimit = 64 * 1024;
/// Pass-through responses (pulls, pushes, model creation) may be silent for minutes: they only
/// get this generous bound on silence, and are cancelled when the client leaves.
constexpr auto kPassthroughSilence = std::chrono::hours(1);
/// A first body piece up to this size is copied behind the response head (one buffer, one
/// send()); larger ones are written as a second buffer.
constexpr std::size_t kCoalesceBytes = 4096;

bool is_stale_connection_error(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == http::error::partial_message;
}

Failure connect_failure(const Client& client, const RequestContext& ctx,
                        const AcquireResult& acquired) {
  FailureFacts facts =
      facts_of(Phase::connect, acquired.error, client, Clock::time_point::max(), {});
  facts.lookup = acquired.lookup_failed;
  if (acquired.timed_out) facts.error = beast::error::timeout;
  return classify_failure(facts, *ctx.config, *ctx.upstream);
}

/// Longest upstream error body read for its message (after progress).
constexpr std::size_t kMaxErrorBody = 64 * 1024;

/// The message of an upstream error answer: its body's "error" (a string, or OpenAI's
/// error.message) when it has one within kMaxErrorBody, else the status.
asio::awaitable<std::string> read_error_message(std::unique_ptr<UpstreamConnection>& connection,
                                                http::response_parser<http::buffer_body>& parser,
                                                Clock::duration silence, unsigned status,
                                                bool body_expected) {
  std::string body;
  std::array<char, 4096> piece{};
  while (body_expected && !parser.is_done() && body.size() < kMaxErrorBody) {
    parser.get().body().data = piece.data();
    parser.get().body().size = piece.size();
    error_code ec;
    if (!parse_buffered(parser, connection->buffer, ec) && !ec) {
      connection->stream.expires_after(silence);
      std::tie(ec, std::ignore) =
          co_await http::async_read_some(connection->stream, connection->buffer, parser, use_tuple);
      if (ec == http::error::need_buffer) ec = {};
    }
    if (ec) break;
    body.append(piece.data(), piece.size() - parser.get().body().size);
  }
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_object() && doc.contains("error")) {
    const auto& error = doc["error"];
    if (error.is_string()) co_return error.get<std::string>();
    if (error.is_object() && error.contains("message") && error["message"].is_string())
      co_return error["message"].get<std::string>();
  }
  co_return "upstream answered " + std::to_string(status);
}

}  // namespace

/// Rewrites a client request header into the upstream request header (in place).
void prepare_upstream_request(http::request_header<>& header, std::string_view target,
                              const RequestContext& ctx, UpstreamFraming framing) {
  const auto& upstream = *ctx.upstream;
  strip_hop_by_hop(header);
  header.erase(http::field::host);
  header.erase(http::field::expect);
  header.set(http::field::host, upstream.host_header);
  header.set(ctx.config->headers.request_id, ctx.request_id);
  // sluice's own request header (it picks a fleet's backend) never reaches a backend.
  if (ctx.config->fleet) header.erase(kBackendHeader);
  if (ctx.authenticator->enabled()) {
    // sluice's own credentials never reach the upstream.
    header.erase(http::field::authorization);
    header.erase("X-Api-Key");
  }
  if (framing.chunked) {
    header.set(http::field::transfer_encoding, "chunked");
  } else if (framing.content_length) {
    header.set(http::field::content_length, std::to_string(*framing.content_length));
  }
  std::string full_target = upstream.base_path;
  full_target.append(target);
  header.target(full_target);
  header.version(11);
}

/// Reads the upstream response and relays it to the client: headers as soon as they arrive,
/// each body piece as it arrives. `connection` goes back to the pool when the exchange ended
/// cleanly. Returns retry (nothing sent to the client) when `may_retry` and a reused
/// connection turned out to be closed by the upstream before answering.
asio::awaitable<RelayResult> relay_response(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                            std::unique_ptr<UpstreamConnection>& connection,
                                            Clock::time_point deadline, UsageScanner* scanner,
                                            bool may_retry, Failure* unanswered) {
  const auto& upstream = *ctx.upstream;
  auto& stream = connection->stream;

  const Clock::duration header_wait =
      ctx.scheduled ? Clock::duration(upstream.header_timeout)
                    : std::max<Clock::duration>(upstream.header_timeout, kPassthroughSilence);
  const Clock::duration idle_wait =
      ctx.scheduled ? Clock::duration(upstream.idle_timeout)
                    : std::max<Clock::duration>(upstream.idle_timeout, kPassthroughSilence);

  // The final response head; interim (1xx) heads before it are read and dropped, within the
  // same header_wait (a stream of 1xx cannot keep a request alive past it).
  std::optional<http::response_parser<http::buffer_body>> parsed;
  const Clock::time_point sent = Clock::now();  // the request was written just before
  ctx.upstream_sent.reset();
  ctx.upstream_ttfb.reset();
  stream.expires_after(bounded(header_wait, deadline));
  error_code header_error;
  for (int interim = 0;; ++interim) {
    auto& next = parsed.emplace();
    next.header_limit(kUpstreamHeaderLimit);
    next.body_limit(boost::none);
    if (ctx.is_head) next.skip(true);
    std::tie(header_error, std::ignore) =
        co_await http::async_read_header(stream, connection->buffer, next, use_tuple);
    if (header_error) {
      // (Not when sluice itself closed the connection because the client left.)
      if (interim == 0 && may_retry && !next.got_some() &&
          is_stale_connection_error(header_error) && !client.record.client_left &&
          !client.record.cut)
        co_return RelayResult::retry;
      break;
    }
    const wire::Interim kind = wire::classify_interim(next.get().result_int());
    if (kind == wire::Interim::final_response) break;
    if (kind == wire::Interim::unexpected_101 || interim == wire::kMaxInterimResponses) {
      header_error = kind == wire::Interim::unexpected_101
                         ? make_error_code(UpstreamProtocol::unexpected_101)
                         : make_error_code(UpstreamProtocol::too_many_interim);
      break;  // the connection closes with `connection`
    }
  }
  auto& parser = *parsed;
  if (header_error) {
    // (Named first: GCC 12 destroys a temporary built inside a co_await expression twice.)
    Failure failure =
        failure_of(Phase::response_head, header_error, client, ctx, deadline, header_wait);
    if (unanswered && retried_elsewhere(Phase::response_head, failure)) {
      *unanswered = std::move(failure);
      co_return RelayResult::failed_unsent;
    }
    co_await answer_failure(client, ctx, std::move(failure), false);
    co_return RelayResult::finished;
  }

  ctx.upstream_sent = sent;
  ctx.upstream_ttfb = since(sent);
  auto& res = parser.get();
  const bool upstream_keep_alive = parser.keep_alive();
  const std::optional<std::uint64_t> length = to_std(parser.content_length());
  const bool has_length = length.has_value();
  const unsigned status = res.result_int();
  ctx.backend->health.request_reached(core::Time{});  // it answered: the failures are not in a row
  const bool body_expected = !ctx.is_head && status != 204 && status != 304;
  std::string_view content_type = res[http::field::content_type];
  // (After progress the client was promised its mode's framing, whatever the upstream says.)
  const bool sse = ctx.progress_sent ? ctx.progress == ProgressMode::sse
                                     : content_type.substr(0, 17) == "text/event-stream";
  const bool ndjson = ctx.progress_sent ? ctx.progress == ProgressMode::ndjson_generate ||
                                              ctx.progress == ProgressMode::ndjson_chat
                                        : content_type.substr(0, 20) == "application/x-ndjson";
  if (ctx.progress_sent && (status < 200 || status >= 300 || !body_expected)) {
    // The 200 of progress went out: an upstream error becomes one error piece in the dialect
    // (with the upstream's own message when its body has one), counted with its real status.
    ctx.status = static_cast<int>(status);
    ctx.outcome = status >= 500 ? obs::Outcome::upstream_5xx : obs::Outcome::ok;
    const std::string message = co_await read_error_message(
        connection, parser, bounded(idle_wait, deadline), status, body_expected);
    co_await end_progress_with_error(client, ctx, message,
                                     status >= 500 ? "api_error" : "invalid_request_error");
    co_return RelayResult::finished;
  }

  strip_hop_by_hop(res.base());  // framing included: set again below from what the parser read
  if (has_length) res.content_length(*length);
  add_sluice_headers(res, ctx);
  bool client_keep_alive = ctx.client_keep_alive && !proxy.shutting_down;
  bool chunked_to_client = ctx.progress_sent;  // progress: the chunked body goes on
  if (ctx.client_version < 11) {
    res.version(10);
    if (body_expected && !has_length) client_keep_alive = false;  // close-delimited
  } else {
    res.version(11);
    if (body_expected && !has_length) {
      res.chunked(true);
      chunked_to_client = true;
    }
  }
  res.keep_alive(client_keep_alive);
  ctx.status = static_cast<int>(status);
  ctx.outcome = status >= 500 ? obs::Outcome::upstream_5xx : obs::Outcome::ok;
  if (!client_keep_alive) ctx.client_reusable = false;

  std::string head = serialize_head(res.base());
  if (ctx.is_head || (!body_expected && !ctx.progress_sent)) {
    client.stream.expires_after(ctx.config->limits.write_timeout);
    auto [write_error, written] =
        co_await asio::async_write(client.stream, asio::buffer(head), use_tuple);
    ctx.ttfb = since(ctx.arrival);
    if (write_error) {
      record_failure(ctx, failure_of(Phase::client, write_error, client, ctx, deadline));
      co_return RelayResult::finished;
    }
    if (upstream_keep_alive && parser.is_done()) ctx.backend->pool.give_back(std::move(connection));
    co_return RelayResult::finished;
  }

  BufferPool::Lease lease(proxy.buffers);
  char* const buffer = lease.data();
  constexpr std::size_t buffer_size = BufferPool::Lease::size();
  bool header_sent = ctx.progress_sent;  // progress sent the head while parked
  auto& body = res.body();
  std::array<char, 24> size_line{};
  for (;;) {
    std::size_t got = 0;
    if (!parser.is_done() && (header_sent || connection->buffer.size() > 0)) {
      // Read the next piece. Before the header went out this only happens when body bytes
      // already arrived with it, so header and first piece leave in one write.
      body.data = buffer;
      body.size = buffer_size;
      error_code read_error;
      if (!parse_buffered(parser, connection->buffer, read_error) && !read_error) {
        stream.expires_after(bounded(idle_wait, deadline));
        std::tie(read_error, std::ignore) =
            co_await http::async_read_some(stream, connection->buffer, parser, use_tuple);
        if (read_error == http::error::need_buffer) read_error = {};
      }
      if (read_error) {
        // The upstream failed mid-response (or the client left, and sluice closed it).
        Failure failure =
            failure_of(Phase::response_body, read_error, client, ctx, deadline, idle_wait);
        ctx.client_reusable = false;
        if (!header_sent) {
          ctx.status = 0;
          co_await answer_failure(client, ctx, std::move(failure), true);
        } else {
          record_failure(ctx, failure);
          if (chunked_to_client && (ndjson || sse) && failure.status) {
            // One error line/event as the stream's last chunk, then the proper end of the body.
            const std::string chunk = stream_error_chunk(sse, ctx.dialect, failure.message);
            const std::array<asio::const_buffer, 4> parts{
                asio::buffer(chunk_size_line(chunk.size(), size_line)), asio::buffer(chunk),
                asio::buffer(kChunkEnd), asio::buffer(kLastChunk)};
            client.stream.expires_after(ctx.config->limits.write_timeout);
            co_await asio::async_write(client.stream, parts, use_tuple);
          }
        }
        co_return RelayResult::finished;
      }
      got = buffer_size - body.size;
      if (scanner && got > 0) scanner->feed(std::string_view(buffer, got));
      if (got == 0 && !parser.is_done() && header_sent) continue;  // only framing was parsed
    }
    const bool done = parser.is_done();
    // One write: [head] [chunk size line, data, CRLF | data] [last chunk]. A zero-sized piece
    // is never framed (a zero-length chunk would end the body). A small first piece is copied
    // behind the head, so the write is one buffer: send() instead of sendmsg() (most answers of
    // the pass-through routes are a head and a few hundred bytes).
    const bool coalesce = !header_sent && got <= kCoalesceBytes;
    std::array<asio::const_buffer, 5> parts;
    std::size_t count = 0;
    if (coalesce) {
      if (got > 0) {
        if (chunked_to_client) head.append(chunk_size_line(got, size_line));
        head.append(buffer, got);
        if (chunked_to_client) head.append(kChunkEnd);
      }
      if (done && chunked_to_client) head.append(kLastChunk);
      parts[count++] = asio::buffer(head);
    } else {
      if (!header_sent) parts[count++] = asio::buffer(head);
      if (got > 0 && chunked_to_client) {
        parts[count++] = asio::buffer(chunk_size_line(got, size_line));
        parts[count++] = asio::buffer(buffer, got);
        parts[count++] = asio::buffer(kChunkEnd);
      } else if (got > 0) {
        parts[count++] = asio::buffer(buffer, got);
      }
      if (done && chunked_to_client) parts[count++] = asio::buffer(kLastChunk);
    }
    client.stream.expires_after(ctx.config->limits.write_timeout);
    auto [write_error, written] = co_await asio::async_write(
        client.stream, std::span<const asio::const_buffer>(parts.data(), count), use_tuple);
    if (!header_sent) {
      header_sent = true;
      ctx.ttfb = since(ctx.arrival);
    }
    if (write_error) {
      // The upstream connection closes with `connection`.
      record_failure(ctx, failure_of(Phase::client, write_error, client, ctx, deadline));
      co_return RelayResult::finished;
    }
    if (done) break;
  }
  if (scanner) {
    scanner->finish();
    // Ollama reports a failure after the first token as one {"error": ...} line in a 200 stream:
    // the upstream's own error, counted like a 5xx (the bytes are relayed as they were).
    if ((ndjson || sse) && scanner->saw_error() && !scanner->saw_done() &&
        ctx.outcome == obs::Outcome::ok) {
      ctx.outcome = obs::Outcome::upstream_5xx;
    }
  }
  if (upstream_keep_alive && parser.is_done()) ctx.backend->pool.give_back(std::move(connection));
  co_return RelayResult::finished;
}

asio::awaitable<void> answer_connect_failure(Client& client, RequestContext& ctx,
                                             const AcquireResult& acquired, bool close) {
  Failure failure = connect_failure(client, ctx, acquired);
  co_await answer_failure(client, ctx, std::move(failure), close);
}

/// Sends a request whose body is in memory (or empty) and relays the answer (see relay.hpp).
///
/// Attempts are bounded: one stale-connection retry per backend (which does not count against
/// the backend), and the moves `failover` allows (a move may wait in the queue again for a slot
/// elsewhere). A failure that no move is left for is answered as without a fleet: 502, or 504
/// for a header timeout; a request that ended while waiting again was answered by `failover`.
template <class Body>
asio::awaitable<void> forward_buffered(Proxy::Impl& proxy, Client& client, RequestContext& ctx,
                                       http::request<Body>& request, Clock::time_point deadline,
                                       UsageScanner* scanner, Failover* failover) {
  std::string head = serialize_head(request.base());
  ctx.backend_name = ctx.backend->name;
  // Counts the failure against the backend and moves the request (maybe after waiting in the
  // queue again; see Failover).
  auto move_on = [&](const Failure& failure, std::string_view why,
                     int& budget) -> asio::awaitable<Reaimed> {
    proxy.note_unreachable(*ctx.backend, std::string(why));
    if (!failover || budget <= 0 || client.record.client_left || client.record.cut)
      co_return Reaimed::stays;
    const Reaimed reaimed = co_await failover->reaim(why);
    if (reaimed != Reaimed::moved) co_return reaimed;
    --budget;
    if (failure.upstream_error) proxy.metrics.count_upstream_error(*failure.upstream_error);
    head = serialize_head(request.base());
    ctx.backend_name = ctx.backend->name;
    co_return Reaimed::moved;
  };
  int connect_moves = failover ? failover->connect_moves : 0;
  int unsent_moves = failover ? failover->unsent_moves : 0;
  bool fresh_backend = true;  // no attempt on ctx.backend yet
  for (;;) {
    const auto& upstream = *ctx.upstream;
    // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
    AcquireResult acquired;
    if (fresh_backend) acquired.connection = ctx.backend->pool.take_idle(/*can_retry=*/true);
    if (!acquired.connection) acquired = co_await ctx.backend->pool.connect(upstream);
    const bool may_retry = fresh_backend && acquired.connection && acquired.connection->reused;
    fresh_backend = false;
    if (!acquired.connection) {
      const Failure failure = connect_failure(client, ctx, acquired);
      const std::string why =
          acquired.timed_out ? std::string("connect timeout") : acquired.error.message();
      const Reaimed reaimed = co_await move_on(failure, why, connect_moves);
      if (reaimed == Reaimed::moved) {
        fresh_backend = true;
        continue;
      }
      if (reaimed == Reaimed::stays) co_await answer_connect_failure(client, ctx, acquired, false);
      co_return;
    }
    std::unique_ptr<UpstreamConnection> connection = std::move(acquired.connection);
    UpstreamInUse in_use(client.record, connection->stream);
    connection->stream.expires_after(bounded(upstream.header_timeout, deadline));
    std::array<asio::const_buffer, 2> parts{asio::buffer(head), asio::const_buffer()};
    if constexpr (std::is_same_v<Body, http::string_body>) parts[1] = asio::buffer(request.body());
    auto [write_error, written] = co_await asio::async_write(connection->stream, parts, use_tuple);
    if (write_error) {
      if (may_retry && !client.record.client_left && !client.record.cut) continue;
      Failure failure = failure_of(Phase::send_request, write_error, client, ctx, deadline);
      Reaimed reaimed = Reaimed::stays;
      if (failover && retried_elsewhere(Phase::send_request, failure)) {
        const std::string why = failure.message;
        reaimed = co_await move_on(failure, why, unsent_moves);
      }
      if (reaimed == Reaimed::moved) {
        fresh_backend = true;
        continue;
      }
      if (reaimed == Reaimed::stays)
        co_await answer_failure(client, ctx, std::move(failure), false);
      co_return;
    }
    Failure unanswered;
    RelayResult result = co_await relay_response(proxy, client, ctx, connection, deadline, scanner,
                                                 may_retry, failover ? &unanswered : nullptr);
    if (result == RelayResult::retry) continue;
    if (result == RelayResult::failed_unsent) {
      // (`connection` is not given back: it closes at the end of this attempt.)
      const std::string why = unanswered.message;
      const Reaimed reaimed = co_await move_on(unanswered, why, unsent_moves);
      if (reaimed == Reaimed::moved) {
        fresh_backend = true;
        continue;
      }
      if (reaimed == Reaimed::stays)
        co_await answer_failure(client, ctx, std::move(unanswered), false);
    }
    co_return;
  }
}

template asio::awaitable<void> forward_buffered(Proxy::Impl&, Client&, RequestContext&,
                                                http::request<http::string_body>&,
                                                Clock::time_point, UsageScanner*, Failover*);
template asio::awaitable<void> forward_buffered(Proxy::Impl&, Client&, RequestContext&,
                                                http::request<http::empty_body>&, Clock::time_point,
                                                UsageScanner*, Failover*);

}  // namespace sluice::net
