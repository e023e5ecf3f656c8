// One client connection: HTTP/1.1 keep-alive, one request at a time, each either scheduled
// (classified, admitted by the gate, relayed) or passed straight through.
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
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "admission_plan.hpp"
#include "proxy_impl.hpp"
#include "request_info.hpp"
#include "sluice/core/cost.hpp"
#include "sluice/core/duration.hpp"
#include "sluice/obs/access_log.hpp"
#include "sluice/obs/logging.hpp"
#include "sluice/obs/metrics.hpp"
#include "usage_scanner.hpp"
#include "wire.hpp"

namespace sluice::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using wire::chunk_size_line;
using wire::kChunkEnd;
using wire::kLastChunk;
using wire::serialize_head;
using wire::strip_hop_by_hop;

/// First read of a request: enough for the headers of typical requests.
constexpr std::size_t kFirstReadBytes = 2048;
/// Upstream response headers larger than this are a bad response.
constexpr std::uint32_t kUpstreamHeaderLimit = 64 * 1024;
/// Pass-through responses (pulls, pushes, model creation) may be silent for minutes: they only
/// get this generous bound on silence, and are cancelled when the client leaves.
constexpr auto kPassthroughSilence = std::chrono::hours(1);
/// Closing a connection whose request body was not read: keep reading (and discarding) this long
/// so the client sees our response instead of a reset.
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr std::size_t kLingerMaxBytes = 1024 * 1024;
/// A first body piece up to this size is copied behind the response head (one buffer, one
/// send()); larger ones are written as a second buffer.
constexpr std::size_t kCoalesceBytes = 4096;

constexpr std::string_view kWorkloadHeader = "X-Sluice-Workload";
constexpr std::string_view kQueueMsHeader = "X-Sluice-Queue-Ms";
constexpr std::string_view kReasonHeader = "X-Sluice-Reason";

struct Client {
  TimedStream stream;
  beast::flat_buffer buffer;
  std::string address;  ///< peer address, the fairness key of requests without one
  SessionRecord& record;
  std::shared_ptr<DeferredWatch> watch;  ///< for pass-through requests (see proxy_impl.hpp)
};

/// What one request did, for the response headers, the metrics and the access log.
struct Exchange {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const auth::Authenticator> authenticator;
  const config::ApiKey* key =
      nullptr;  ///< the API key presented (auth enabled), into authenticator
  Clock::time_point arrival;
  std::string method;
  std::string path;
  Dialect dialect = Dialect::ollama;
  unsigned client_version = 11;
  bool client_keep_alive = true;
  bool is_head = false;
  bool scheduled = false;
  std::string request_id;
  std::string user;
  std::string workload_name{config::kUnclassifiedWorkload};
  obs::Metrics::Workload metrics_workload;
  // results
  int status = 0;
  obs::Outcome outcome = obs::Outcome::ok;
  std::optional<obs::UpstreamError> upstream_error;
  std::optional<core::Duration> queue_wait;
  std::optional<core::Duration> ttfb;
  std::int64_t prompt_tokens = -1;
  std::int64_t output_tokens = -1;
  bool client_reusable = true;  ///< the connection may carry another request
  bool linger = false;          ///< request body left unread: linger before closing
};

/// Marks the session busy with a request for as long as it lives.
struct ActiveRequest {
  ActiveRequest(Proxy::Impl& proxy, SessionRecord& record) : proxy(proxy), record(record) {
    record.busy = true;
    ++proxy.active_requests;
  }
  ~ActiveRequest() {
    record.busy = false;
    --proxy.active_requests;
  }
  Proxy::Impl& proxy;
  SessionRecord& record;
};

/// Publishes the upstream connection in use in the session record (for close_all()).
struct UpstreamInUse {
  UpstreamInUse(SessionRecord& record, TimedStream& stream) : record(record) {
    record.upstream = &stream;
  }
  ~UpstreamInUse() { record.upstream = nullptr; }
  SessionRecord& record;
};

core::Duration since(Clock::time_point start) {
  return std::chrono::duration_cast<core::Duration>(Clock::now() - start);
}

/// `timeout`, shortened so that it ends no later than `deadline`.
Clock::duration bounded(Clock::duration timeout, Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return timeout;
  auto left = deadline - Clock::now();
  if (left < Clock::duration::zero()) left = Clock::duration::zero();
  return std::min(timeout, left);
}

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

std::optional<std::uint64_t> to_std(const boost::optional<std::uint64_t>& value) {
  return value ? std::optional<std::uint64_t>(*value) : std::nullopt;
}

/// How the body of a request sent upstream is framed. sluice decides it from what it knows of
/// the body; nothing the client sent about framing is forwarded (see wire.hpp).
struct UpstreamFraming {
  bool chunked = false;                         ///< streamed as chunks
  std::optional<std::uint64_t> content_length;  ///< else this many bytes; neither: no body
};

/// Rewrites a client request header into the upstream request header (in place).
void prepare_upstream_request(http::request_header<>& header, std::string_view target,
                              const Exchange& x, UpstreamFraming framing) {
  const auto& upstream = x.config->upstream;
  strip_hop_by_hop(header);
  header.erase(http::field::host);
  header.erase(http::field::expect);
  header.set(http::field::host, upstream.host_header);
  header.set(x.config->headers.request_id, x.request_id);
  if (x.authenticator->enabled()) {
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

/// Finds a header that must appear at most once. Sets `duplicate` when it appears twice.
std::optional<std::string_view> single_header(const http::fields& fields, std::string_view name,
                                              std::string& duplicate) {
  auto range = fields.equal_range(name);
  if (range.first == range.second) return std::nullopt;
  if (std::next(range.first) != range.second && duplicate.empty()) {
    duplicate = "invalid ";
    duplicate.append(name).append(" header: given more than once");
  }
  return range.first->value();
}

/// The client's request id when it sent a valid one, else a fresh one. Also used for sluice's
/// own errors (400, 401, 413), so a client can always match an answer to its log line.
std::string client_request_id(const http::fields& fields, const config::Config& config) {
  auto id = fields.find(config.headers.request_id);
  return id != fields.end() && core::valid_label_value(id->value()) ? std::string(id->value())
                                                                    : generate_request_id();
}

bool expects_continue(const http::fields& fields) {
  auto it = fields.find(http::field::expect);
  return it != fields.end() && iequals(it->value(), "100-continue");
}

std::string queue_ms_text(core::Duration waited) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count());
}

/// Adds sluice's own response headers.
template <class Fields>
void add_sluice_headers(Fields& fields, const Exchange& x) {
  fields.set(x.config->headers.request_id, x.request_id);
  if (!x.scheduled || x.workload_name == config::kUnclassifiedWorkload) return;
  fields.set(kWorkloadHeader, x.workload_name);
  if (x.queue_wait) fields.set(kQueueMsHeader, queue_ms_text(*x.queue_wait));
}

struct LocalResponse {
  http::status status = http::status::bad_request;
  std::string message;
  std::string_view reason;                  ///< X-Sluice-Reason, "" for none
  std::optional<std::int64_t> retry_after;  ///< Retry-After seconds
  bool close = false;                       ///< close the connection after it
  bool authenticate = false;                ///< add WWW-Authenticate (401)
};

/// Sends a response generated by sluice (errors, rejections) in the request's dialect.
asio::awaitable<void> send_local(Client& client, Exchange& x, LocalResponse response) {
  const unsigned status_code = static_cast<unsigned>(response.status);
  const char* openai_type =
      status_code < 500 && status_code != 429 ? "invalid_request_error" : "api_error";
  http::response<http::string_body> res{response.status, x.client_version < 11 ? 10u : 11u};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  add_sluice_headers(res, x);
  if (!response.reason.empty()) res.set(kReasonHeader, response.reason);
  if (response.retry_after)
    res.set(http::field::retry_after, std::to_string(*response.retry_after));
  if (response.authenticate) res.set(http::field::www_authenticate, "Bearer realm=\"sluice\"");
  if (!x.is_head) res.body() = error_body(x.dialect, response.message, openai_type);
  const bool keep = !response.close && x.client_keep_alive && x.client_reusable;
  res.keep_alive(keep);
  res.prepare_payload();
  client.stream.expires_after(x.config->limits.write_timeout);
  auto [ec, written] = co_await http::async_write(client.stream, res, use_tuple);
  if (!ec) x.status = static_cast<int>(status_code);  // an answer the client never got: none
  if (!x.ttfb) x.ttfb = since(x.arrival);
  if (ec || !keep) x.client_reusable = false;
  if (response.close) x.linger = x.linger || !ec;
}

/// Completes when the client has gone (EOF, reset, or its socket closed by close_all()); never
/// completes while the client merely pipelines its next request. On detection it closes the
/// session's upstream connection so that a pending upstream operation ends at once. Used for
/// scheduled requests, raced against their admission and relay.
///
/// It waits for readability and peeks rather than reading, so a parked connection holds no read
/// buffer (10 000 parked requests are 10 000 of these).
asio::awaitable<void> watch_client(Client& client) {
  auto& socket = client.stream.socket();
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_tuple);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;  // the request finished
    if (!ec) {
      char byte;
      ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) {
        // Pipelined bytes: the client is still there. We cannot watch further without
        // consuming them, so wait until the request ends (and cancels this watch).
        asio::steady_timer forever(socket.get_executor(), Clock::time_point::max());
        co_await forever.async_wait(use_tuple);
        co_return;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    }
    client.record.client_left = true;
    if (client.record.upstream) {
      error_code ignored;
      client.record.upstream->socket().close(ignored);
    }
    co_return;
  }
}

/// After a request raced against watch_client(): who ended it. A request whose client left (or
/// whose connection close_all() cut) is attributed to that, not to the upstream connection that
/// was closed because of it, so sluice_upstream_errors_total counts only the upstream's failures.
void settle_departure(Exchange& x, const SessionRecord& record, bool watcher_won) {
  if (!watcher_won && !record.client_left && !record.cut) return;
  x.outcome = record.cut ? obs::Outcome::shutting_down : obs::Outcome::client_gone;
  x.upstream_error.reset();
  x.client_reusable = false;
}

/// Arms `watch` for its current request: waits for the client socket to become readable, then
/// tells EOF or a reset (the client left) from pipelined bytes with MSG_PEEK.
void arm_deferred_watch(const std::shared_ptr<DeferredWatch>& watch) {
  const std::uint64_t request = watch->request;
  watch->armed_for = request;
  auto on_readable = [watch, request](error_code ec) {
    if (watch->armed_for == request) watch->armed_for = 0;
    if (ec || watch->request != request || !watch->record || !watch->record->client) return;
    SessionRecord& record = *watch->record;
    auto& socket = record.client->socket();
    char byte;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return;  // pipelined bytes: the client is still there
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      arm_deferred_watch(watch);
      return;
    }
    record.client_left = true;
    if (record.upstream) {
      error_code ignored;
      record.upstream->socket().close(ignored);
    }
  };
  watch->record->client->socket().async_wait(
      tcp::socket::wait_read,
      asio::bind_cancellation_slot(watch->cancel.slot(), std::move(on_readable)));
}

/// Starts watching a pass-through request (armed later by the ticker, if it is still running).
void begin_deferred_watch(Proxy::Impl& proxy, Client& client) {
  DeferredWatch& watch = *client.watch;
  watch.request = ++proxy.watched_requests;
  watch.since = Clock::now();
  proxy.defer_watch(client.watch);
}

/// The request ended: its watch (pending or armed) is dropped.
void end_deferred_watch(Client& client) {
  DeferredWatch& watch = *client.watch;
  watch.request = 0;
  if (watch.armed_for != 0) watch.cancel.emit(asio::cancellation_type::terminal);
}

obs::UpstreamError classify_read_error(const error_code& ec) {
  if (ec == beast::error::timeout) return obs::UpstreamError::idle_timeout;
  if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return obs::UpstreamError::bad_response;
  }
  return obs::UpstreamError::reset;
}

/// A parse error in what the client sent (not its connection ending or timing out).
bool is_malformed(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_buffer;
}

bool is_stale_connection_error(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == http::error::partial_message;
}

/// Parses what `buffer` already holds into `parser`, without I/O. Beast's async reads post
/// their completion when the buffer alone satisfies them (a scheduler round trip), which is the
/// common case twice per request: a request header that arrived whole with the connection's
/// first read, and the first body bytes of a response that arrived with its header. Returns
/// whether the parser made progress; parse errors go to `ec` (need_more/need_buffer are not
/// errors here). When it returns false without an error, the caller reads from the socket.
template <bool isRequest>
bool parse_buffered(http::basic_parser<isRequest>& parser, beast::flat_buffer& buffer,
                    error_code& ec) {
  ec = {};
  if (buffer.size() == 0) return false;
  const std::size_t used = parser.put(buffer.data(), ec);
  buffer.consume(used);
  if (ec == http::error::need_more || ec == http::error::need_buffer) ec = {};
  return used > 0 || parser.is_done();
}

std::string format_seconds(Clock::duration d) {
  return core::format_duration(std::chrono::duration_cast<core::Duration>(d));
}

enum class RelayResult { finished, retry };

/// Reads the upstream response and relays it to the client: headers as soon as they arrive,
/// each body piece as it arrives. `connection` goes back to the pool when the exchange ended
/// cleanly. Returns retry (nothing sent to the client) when `may_retry` and a reused
/// connection turned out to be closed by the upstream before answering.
asio::awaitable<RelayResult> relay_response(Proxy::Impl& proxy, Client& client, Exchange& x,
                                            std::unique_ptr<UpstreamConnection>& connection,
                                            Clock::time_point deadline, UsageScanner* scanner,
                                            bool may_retry) {
  const auto& upstream = x.config->upstream;
  auto& stream = connection->stream;

  const Clock::duration header_wait =
      x.scheduled ? Clock::duration(upstream.header_timeout)
                  : std::max<Clock::duration>(upstream.header_timeout, kPassthroughSilence);
  const Clock::duration idle_wait =
      x.scheduled ? Clock::duration(upstream.idle_timeout)
                  : std::max<Clock::duration>(upstream.idle_timeout, kPassthroughSilence);

  // The final response head; interim (1xx) heads before it are read and dropped, within the
  // same header_wait (a stream of 1xx cannot keep a request alive past it).
  std::optional<http::response_parser<http::buffer_body>> parsed;
  stream.expires_after(bounded(header_wait, deadline));
  error_code header_error;
  for (int interim = 0;; ++interim) {
    auto& next = parsed.emplace();
    next.header_limit(kUpstreamHeaderLimit);
    next.body_limit(boost::none);
    if (x.is_head) next.skip(true);
    std::tie(header_error, std::ignore) =
        co_await http::async_read_header(stream, connection->buffer, next, use_tuple);
    if (header_error) {
      if (interim == 0 && may_retry && !next.got_some() && is_stale_connection_error(header_error))
        co_return RelayResult::retry;
      break;
    }
    const wire::Interim kind = wire::classify_interim(next.get().result_int());
    if (kind == wire::Interim::final_response) break;
    if (kind == wire::Interim::unexpected_101 || interim == wire::kMaxInterimResponses) {
      x.outcome = obs::Outcome::upstream_error;
      x.upstream_error = obs::UpstreamError::bad_response;
      LocalResponse response{
          .status = http::status::bad_gateway,
          .message = kind == wire::Interim::unexpected_101
                         ? std::string("upstream switched protocols (101) without being asked")
                         : "upstream sent more than " + std::to_string(wire::kMaxInterimResponses) +
                               " interim (1xx) responses"};
      co_await send_local(client, x, std::move(response));
      co_return RelayResult::finished;  // the connection closes with `connection`
    }
  }
  auto& parser = *parsed;
  if (header_error) {
    LocalResponse response{.status = http::status::bad_gateway, .close = false};
    if (header_error == beast::error::timeout) {
      if (Clock::now() >= deadline) {
        x.outcome = obs::Outcome::inflight_timeout;
        response.status = http::status::gateway_timeout;
        response.message = "request exceeded scheduler.max_inflight_duration (" +
                           format_seconds(x.config->scheduler.max_inflight_duration) + ")";
      } else {
        x.outcome = obs::Outcome::upstream_error;
        x.upstream_error = obs::UpstreamError::header_timeout;
        response.status = http::status::gateway_timeout;
        response.message =
            "upstream sent no response headers within " + format_seconds(header_wait);
      }
    } else {
      x.outcome = obs::Outcome::upstream_error;
      x.upstream_error = classify_read_error(header_error);
      response.message = x.upstream_error == obs::UpstreamError::bad_response
                             ? "upstream sent an invalid HTTP response: " + header_error.message()
                             : "upstream closed the connection before responding";
    }
    co_await send_local(client, x, std::move(response));
    co_return RelayResult::finished;
  }

  auto& res = parser.get();
  const bool upstream_keep_alive = parser.keep_alive();
  const std::optional<std::uint64_t> length = to_std(parser.content_length());
  const bool has_length = length.has_value();
  const unsigned status = res.result_int();
  const bool body_expected = !x.is_head && status != 204 && status != 304;
  std::string_view content_type = res[http::field::content_type];
  const bool sse = content_type.substr(0, 17) == "text/event-stream";
  const bool ndjson = content_type.substr(0, 20) == "application/x-ndjson";

  strip_hop_by_hop(res.base());  // framing included: set again below from what the parser read
  if (has_length) res.content_length(*length);
  add_sluice_headers(res, x);
  bool client_keep_alive = x.client_keep_alive && !proxy.shutting_down;
  bool chunked_to_client = false;
  if (x.client_version < 11) {
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
  x.status = static_cast<int>(status);
  x.outcome = status >= 500 ? obs::Outcome::upstream_5xx : obs::Outcome::ok;
  if (!client_keep_alive) x.client_reusable = false;

  std::string head = serialize_head(res.base());
  if (x.is_head || !body_expected) {
    client.stream.expires_after(x.config->limits.write_timeout);
    auto [write_error, written] =
        co_await asio::async_write(client.stream, asio::buffer(head), use_tuple);
    x.ttfb = since(x.arrival);
    if (write_error) {
      x.client_reusable = false;
      x.outcome = obs::Outcome::client_gone;
      co_return RelayResult::finished;
    }
    if (upstream_keep_alive && parser.is_done()) proxy.pool.give_back(std::move(connection));
    co_return RelayResult::finished;
  }

  BufferPool::Lease lease(proxy.buffers);
  char* const buffer = lease.data();
  constexpr std::size_t buffer_size = BufferPool::Lease::size();
  bool header_sent = false;
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
        // The upstream failed mid-response.
        std::string message;
        if (read_error == beast::error::timeout && Clock::now() >= deadline) {
          x.outcome = obs::Outcome::inflight_timeout;
          message = "request exceeded scheduler.max_inflight_duration (" +
                    format_seconds(x.config->scheduler.max_inflight_duration) + ")";
        } else {
          x.outcome = obs::Outcome::upstream_error;
          x.upstream_error = classify_read_error(read_error);
          message = x.upstream_error == obs::UpstreamError::idle_timeout
                        ? "upstream sent nothing for " + format_seconds(idle_wait)
                        : "upstream connection lost mid-response";
        }
        x.client_reusable = false;
        if (!header_sent) {
          x.status = 0;
          LocalResponse response{.status = x.outcome == obs::Outcome::inflight_timeout
                                               ? http::status::gateway_timeout
                                               : http::status::bad_gateway,
                                 .message = std::move(message),
                                 .close = true};
          co_await send_local(client, x, std::move(response));
        } else if (chunked_to_client && (ndjson || sse)) {
          // One error line/event as the stream's last chunk, then the proper end of the body.
          const std::string chunk = stream_error_chunk(sse, x.dialect, message);
          const std::array<asio::const_buffer, 4> parts{
              asio::buffer(chunk_size_line(chunk.size(), size_line)), asio::buffer(chunk),
              asio::buffer(kChunkEnd), asio::buffer(kLastChunk)};
          client.stream.expires_after(x.config->limits.write_timeout);
          co_await asio::async_write(client.stream, parts, use_tuple);
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
    client.stream.expires_after(x.config->limits.write_timeout);
    auto [write_error, written] = co_await asio::async_write(
        client.stream, std::span<const asio::const_buffer>(parts.data(), count), use_tuple);
    if (!header_sent) {
      header_sent = true;
      x.ttfb = since(x.arrival);
    }
    if (write_error) {
      x.client_reusable = false;
      x.outcome = obs::Outcome::client_gone;
      co_return RelayResult::finished;  // the upstream connection closes with `connection`
    }
    if (done) break;
  }
  if (scanner) {
    scanner->finish();
    // Ollama reports a failure after the first token as one {"error": ...} line in a 200 stream:
    // the upstream's own error, counted like a 5xx (the bytes are relayed as they were).
    if ((ndjson || sse) && scanner->saw_error() && !scanner->saw_done() &&
        x.outcome == obs::Outcome::ok) {
      x.outcome = obs::Outcome::upstream_5xx;
    }
  }
  if (upstream_keep_alive && parser.is_done()) proxy.pool.give_back(std::move(connection));
  co_return RelayResult::finished;
}

/// Answers 502 for an upstream connection that could not be made.
asio::awaitable<void> answer_connect_failure(Client& client, Exchange& x,
                                             const AcquireResult& acquired, bool close) {
  x.outcome = obs::Outcome::upstream_error;
  x.upstream_error =
      acquired.timed_out ? obs::UpstreamError::connect_timeout : obs::UpstreamError::connect_failed;
  const auto& upstream = x.config->upstream;
  std::string message;
  if (acquired.lookup_failed) {
    message = "upstream host \"" + upstream.host + "\" could not be resolved: " +
              (acquired.timed_out ? "no answer within " + format_seconds(upstream.connect_timeout)
                                  : acquired.error.message());
  } else if (acquired.timed_out) {
    message = "upstream connect timed out after " + format_seconds(upstream.connect_timeout);
  } else {
    message = "upstream unreachable: " + acquired.error.message();
  }
  LocalResponse response{.status = http::status::bad_gateway, .message = message, .close = close};
  co_await send_local(client, x, std::move(response));
}

/// Sends a request whose body is in memory (or empty) and relays the answer. A reused
/// connection that the upstream had closed is retried once on a fresh one.
template <class Body>
asio::awaitable<void> forward_buffered(Proxy::Impl& proxy, Client& client, Exchange& x,
                                       http::request<Body>& request, Clock::time_point deadline,
                                       UsageScanner* scanner) {
  const auto& upstream = x.config->upstream;
  const std::string head = serialize_head(request.base());
  for (int attempt = 0;; ++attempt) {
    // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
    AcquireResult acquired;
    if (attempt == 0) acquired.connection = proxy.pool.take_idle(/*can_retry=*/true);
    if (!acquired.connection) acquired = co_await proxy.pool.connect(upstream);
    if (!acquired.connection) {
      co_await answer_connect_failure(client, x, acquired, false);
      co_return;
    }
    std::unique_ptr<UpstreamConnection> connection = std::move(acquired.connection);
    UpstreamInUse in_use(client.record, connection->stream);
    const bool may_retry = attempt == 0 && connection->reused;
    connection->stream.expires_after(bounded(upstream.header_timeout, deadline));
    std::array<asio::const_buffer, 2> parts{asio::buffer(head), asio::const_buffer()};
    if constexpr (std::is_same_v<Body, http::string_body>) parts[1] = asio::buffer(request.body());
    auto [write_error, written] = co_await asio::async_write(connection->stream, parts, use_tuple);
    if (write_error) {
      if (may_retry) continue;
      x.outcome = obs::Outcome::upstream_error;
      x.upstream_error = write_error == beast::error::timeout ? obs::UpstreamError::header_timeout
                                                              : obs::UpstreamError::reset;
      LocalResponse response{.status = http::status::bad_gateway,
                             .message = "upstream connection failed while sending the request: " +
                                        write_error.message()};
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    RelayResult result =
        co_await relay_response(proxy, client, x, connection, deadline, scanner, may_retry);
    if (result == RelayResult::retry) continue;
    co_return;
  }
}

/// Admission, then the upstream exchange, for one scheduled request.
asio::awaitable<void> admit_and_forward(Proxy::Impl& proxy, Client& client, Exchange& x,
                                        const AdmissionPlan& plan,
                                        http::request<http::string_body>& upstream_request) {
  const core::Request request = plan.request();
  AdmitResult admission = co_await proxy.gate.admit(request);
  x.queue_wait = admission.waited;
  switch (admission.kind) {
    case AdmitResult::Kind::admitted:
      break;
    case AdmitResult::Kind::rejected: {
      const bool shutdown = admission.reason == core::RejectReason::shutting_down;
      x.outcome = shutdown ? obs::Outcome::shutting_down
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
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    case AdmitResult::Kind::timed_out: {
      x.outcome = obs::Outcome::queue_timeout;
      LocalResponse response{.status = http::status::service_unavailable,
                             .message = "timed out waiting in the queue after " +
                                        queue_ms_text(admission.waited) + " ms",
                             .reason = "queue_timeout",
                             .retry_after = proxy.gate.retry_after_seconds()};
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    case AdmitResult::Kind::cancelled:
      x.outcome = obs::Outcome::client_gone;
      x.client_reusable = false;
      co_return;
  }

  Slot slot = std::move(admission.slot);
  const Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                        x.config->scheduler.max_inflight_duration);
  UsageScanner scanner;
  co_await forward_buffered(proxy, client, x, upstream_request, deadline, &scanner);

  x.prompt_tokens = scanner.prompt_tokens();
  x.output_tokens = scanner.output_tokens();
  if (x.prompt_tokens >= 0 || x.output_tokens >= 0) {
    slot.set_actual_cost(std::max<std::int64_t>(x.prompt_tokens, 0) +
                         std::max<std::int64_t>(x.output_tokens, 0));
  }
  if (!plan.body.embedding && scanner.saw_done() && x.output_tokens >= 0)
    proxy.cost_model.observe(x.workload_name, plan.body.model, x.output_tokens);
  slot.release();
}

/// Reads (and discards) what a client still sends after we answered without reading its
/// request body, so that closing does not reset the connection under our response.
asio::awaitable<void> linger_and_close(Client& client) {
  error_code ec;
  client.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::size_t discarded = 0;
  char sink[4096];
  const auto until = Clock::now() + kLingerTimeout;
  while (!ec && discarded < kLingerMaxBytes && Clock::now() < until) {
    client.stream.expires_at(until);
    auto [read_error, n] = co_await client.stream.async_read_some(asio::buffer(sink), use_tuple);
    ec = read_error;
    discarded += n;
  }
  client.stream.socket().close(ec);
}

/// Everything about a scheduled route after its header was read.
asio::awaitable<void> serve_scheduled(Proxy::Impl& proxy, Client& client,
                                      http::request_parser<http::empty_body>& head, Exchange& x) {
  const config::Config& config = *x.config;
  const auto& fields = head.get().base();
  x.scheduled = true;
  x.metrics_workload = proxy.metrics.unclassified();
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
  LabelPlan labels = plan_labels(config.headers, values, duplicate, x.key, proxy.gate.scheduler());
  if (!labels.labels.request_id.empty()) x.request_id = labels.labels.request_id;
  x.user = std::string(labels.labels.labels.value_or_empty("user"));
  const std::string& error = labels.error;
  // A bad header is answered before the body when the client waits for 100 Continue (then the
  // connection closes); otherwise the body is read first so the connection stays usable.
  const bool send_continue = expects_continue(fields);
  if (!error.empty() && (send_continue || !body_pending)) {
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = error, .close = body_pending};
    co_await send_local(client, x, std::move(response));
    co_return;
  }

  const auto max_body = static_cast<std::uint64_t>(config.limits.max_scheduled_body_bytes);
  if (auto length = head.content_length(); length && *length > max_body) {
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.status = http::status::payload_too_large,
                           .message = "request body larger than limits.max_scheduled_body_bytes (" +
                                      std::to_string(max_body) + " bytes)",
                           .close = true};
    co_await send_local(client, x, std::move(response));
    co_return;
  }

  http::request_parser<http::string_body> parser(std::move(head));
  parser.body_limit(max_body);
  if (send_continue && !parser.is_done()) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    client.stream.expires_after(config.limits.write_timeout);
    auto [ec, n] = co_await asio::async_write(client.stream, asio::buffer(kContinue), use_tuple);
    if (ec) {
      x.outcome = obs::Outcome::client_gone;
      x.client_reusable = false;
      co_return;
    }
  }
  while (!parser.is_done()) {
    client.stream.expires_after(config.limits.header_read_timeout);
    auto [ec, n] = co_await http::async_read_some(client.stream, client.buffer, parser, use_tuple);
    if (ec == http::error::body_limit) {
      x.outcome = obs::Outcome::invalid_request;
      LocalResponse response{.status = http::status::payload_too_large,
                             .message =
                                 "request body larger than "
                                 "limits.max_scheduled_body_bytes (" +
                                 std::to_string(max_body) + " bytes)",
                             .close = true};
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    if (is_malformed(ec)) {
      x.outcome = obs::Outcome::invalid_request;
      LocalResponse response{.message = "malformed request body: " + ec.message(), .close = true};
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    if (ec) {
      x.outcome = obs::Outcome::client_gone;
      x.client_reusable = false;
      co_return;
    }
  }

  if (!error.empty()) {
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = error};
    co_await send_local(client, x, std::move(response));
    co_return;
  }
  AdmissionPlan plan;
  std::string body_error =
      plan_admission(std::move(labels), x.path, parser.get().body(), client.address,
                     proxy.gate.scheduler(), proxy.cost_model, plan);
  if (!body_error.empty()) {
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = std::move(body_error)};
    co_await send_local(client, x, std::move(response));
    co_return;
  }
  x.workload_name = plan.workload_name;
  x.metrics_workload = proxy.metrics.workload(plan.workload_name);

  http::request<http::string_body> upstream_request = parser.release();
  const std::string target(upstream_request.target());
  prepare_upstream_request(upstream_request.base(), target, x,
                           {.content_length = upstream_request.body().size()});

  using namespace asio::experimental::awaitable_operators;
  auto work = admit_and_forward(proxy, client, x, plan, upstream_request);
  auto watch = watch_client(client);
  auto winner = co_await (std::move(work) || std::move(watch));
  settle_departure(x, client.record, winner.index() == 1);
}

/// Everything about a pass-through request after its header was read.
asio::awaitable<void> serve_passthrough(Proxy::Impl& proxy, Client& client,
                                        http::request_parser<http::empty_body>& head, Exchange& x) {
  const config::Config& config = *x.config;
  x.workload_name = std::string(config::kPassthroughWorkload);
  x.metrics_workload = proxy.metrics.passthrough();
  const std::string target(head.get().target());
  using namespace asio::experimental::awaitable_operators;

  if (head.is_done()) {
    // No request body: the whole exchange can be retried on a stale connection.
    // (A Content-Length the client sent can only be 0 here, and is sent on as such.)
    const std::optional<std::uint64_t> length = to_std(head.content_length());
    http::request<http::empty_body> request = head.release();
    prepare_upstream_request(request.base(), target, x, {.content_length = length});
    begin_deferred_watch(proxy, client);
    co_await forward_buffered(proxy, client, x, request, Clock::time_point::max(), nullptr);
    end_deferred_watch(client);
    settle_departure(x, client.record, false);
    co_return;
  }

  // A request body (a blob upload, a model creation): streamed to the upstream as it arrives.
  const UpstreamFraming framing{
      .chunked = head.chunked(),
      .content_length = head.chunked() ? std::nullopt : to_std(head.content_length())};
  const bool send_continue = expects_continue(head.get());
  http::request_parser<http::buffer_body> parser(std::move(head));
  parser.body_limit(static_cast<std::uint64_t>(config.limits.max_body_bytes));
  prepare_upstream_request(parser.get().base(), target, x, framing);

  AcquireResult acquired = co_await proxy.pool.acquire(config.upstream);
  if (!acquired.connection) {
    co_await answer_connect_failure(client, x, acquired, true);
    co_return;
  }
  std::unique_ptr<UpstreamConnection> connection = std::move(acquired.connection);
  UpstreamInUse in_use(client.record, connection->stream);
  if (send_continue) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    client.stream.expires_after(config.limits.write_timeout);
    auto [ec, n] = co_await asio::async_write(client.stream, asio::buffer(kContinue), use_tuple);
    if (ec) {
      x.outcome = obs::Outcome::client_gone;
      x.client_reusable = false;
      co_return;
    }
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
      if (read_error == http::error::body_limit) {
        x.outcome = obs::Outcome::invalid_request;
        LocalResponse response{.status = http::status::payload_too_large,
                               .message = "request body larger than limits.max_body_bytes (" +
                                          std::to_string(config.limits.max_body_bytes) + " bytes)",
                               .close = true};
        co_await send_local(client, x, std::move(response));
        co_return;
      }
      if (is_malformed(read_error)) {
        x.outcome = obs::Outcome::invalid_request;
        LocalResponse response{.message = "malformed request body: " + read_error.message(),
                               .close = true};
        co_await send_local(client, x, std::move(response));
        co_return;
      }
      if (read_error) {
        x.outcome = obs::Outcome::client_gone;
        x.client_reusable = false;
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
    connection->stream.expires_after(config.upstream.idle_timeout);
    auto [write_error, written] =
        co_await http::async_write(connection->stream, serializer, use_tuple);
    if (write_error == http::error::need_buffer) write_error = {};
    if (write_error) {
      x.outcome = obs::Outcome::upstream_error;
      x.upstream_error = write_error == beast::error::timeout ? obs::UpstreamError::idle_timeout
                                                              : obs::UpstreamError::reset;
      LocalResponse response{.status = http::status::bad_gateway,
                             .message = "upstream connection failed while sending the request: " +
                                        write_error.message(),
                             .close = !parser.is_done()};
      co_await send_local(client, x, std::move(response));
      co_return;
    }
    if (serializer.is_done()) break;
  }

  begin_deferred_watch(proxy, client);
  co_await relay_response(proxy, client, x, connection, Clock::time_point::max(), nullptr, false);
  end_deferred_watch(client);
  settle_departure(x, client.record, false);
}

void record_exchange(Proxy::Impl& proxy, const Exchange& x) {
  obs::Metrics& metrics = proxy.metrics;
  const core::Duration total = since(x.arrival);
  metrics.count_request(x.metrics_workload, x.outcome);
  metrics.observe_request_duration(x.metrics_workload, total);
  if (x.ttfb) metrics.observe_ttfb(x.metrics_workload, *x.ttfb);
  if (x.queue_wait) metrics.observe_queue_wait(x.metrics_workload, *x.queue_wait);
  metrics.add_tokens(x.metrics_workload, obs::TokenKind::prompt, x.prompt_tokens);
  metrics.add_tokens(x.metrics_workload, obs::TokenKind::output, x.output_tokens);
  if (x.upstream_error) metrics.count_upstream_error(*x.upstream_error);
  if (!obs::access_log_enabled()) return;
  obs::AccessRecord record;
  record.time = std::chrono::system_clock::now();
  record.request_id = x.request_id;
  record.method = x.method;
  record.path = x.path;
  record.user = x.user;
  record.workload = x.workload_name;
  record.status = x.status;
  record.outcome = x.outcome;
  record.queue = x.queue_wait;
  record.ttfb = x.ttfb;
  record.total = total;
  record.prompt_tokens = x.prompt_tokens;
  record.output_tokens = x.output_tokens;
  record.upstream_error = x.upstream_error;
  obs::log_access(record);
}

/// Reads one request's header and serves it. Returns whether the connection may carry another.
asio::awaitable<bool> serve_request(Proxy::Impl& proxy, Client& client) {
  Exchange x;
  x.config = proxy.config;
  x.authenticator = proxy.authenticator;
  x.arrival = Clock::now();
  const config::LimitsConfig& limits = x.config->limits;

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
    x.request_id = generate_request_id();
    x.metrics_workload = proxy.metrics.unclassified();
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = "malformed HTTP request: " + read_error.message(),
                           .close = true};
    if (read_error == http::error::header_limit) {
      response.status = http::status::request_header_fields_too_large;
      response.message = "request headers larger than limits.max_header_bytes (" +
                         std::to_string(limits.max_header_bytes) + " bytes)";
    }
    if (read_error == http::error::body_limit) {  // Content-Length above the limit
      response.status = http::status::payload_too_large;
      response.message = "request body larger than limits.max_body_bytes (" +
                         std::to_string(limits.max_body_bytes) + " bytes)";
    }
    co_await send_local(client, x, std::move(response));
    record_exchange(proxy, x);
    co_return false;
  }

  const auto& request = head.get();
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  x.method = std::string(request.method_string());
  x.path = std::string(path);
  x.dialect = dialect_for(path);
  x.client_version = request.version();
  x.client_keep_alive = request.keep_alive() && !wire::close_after_response(request);
  x.is_head = request.method() == http::verb::head;
  x.request_id = client_request_id(request, *x.config);

  // API keys (auth.keys): every proxied request presents one, or gets 401.
  bool authenticated = true;
  std::string auth_error;
  if (x.authenticator->enabled()) {
    auto result =
        x.authenticator->authenticate(request[http::field::authorization], request["X-Api-Key"]);
    if (result.status == auth::Authenticator::Status::ok) {
      x.key = result.key;
      x.user = result.key->user;
    } else {
      authenticated = false;
      auth_error = result.status == auth::Authenticator::Status::missing
                       ? "missing API key: send Authorization: Bearer KEY or X-Api-Key: KEY"
                       : "invalid API key";
    }
  }

  if (target.empty() || target.front() != '/') {
    x.metrics_workload = proxy.metrics.unclassified();
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.message = "request target must be a path starting with '/'",
                           .close = !head.is_done()};
    co_await send_local(client, x, std::move(response));
  } else if (auto framing_error = wire::check_request_framing(request)) {
    x.metrics_workload = proxy.metrics.unclassified();
    x.outcome = obs::Outcome::invalid_request;
    // (Named first: GCC 12 destroys a temporary built inside a co_await expression twice.)
    LocalResponse response{.status = framing_error->status,
                           .message = std::move(framing_error->message),
                           .close = true};
    co_await send_local(client, x, std::move(response));
  } else if (auto length = head.content_length();
             length && *length > static_cast<std::uint64_t>(limits.max_body_bytes)) {
    x.metrics_workload = proxy.metrics.unclassified();
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.status = http::status::payload_too_large,
                           .message = "request body larger than limits.max_body_bytes (" +
                                      std::to_string(limits.max_body_bytes) + " bytes)",
                           .close = true};
    co_await send_local(client, x, std::move(response));
  } else if (!authenticated) {
    x.metrics_workload = proxy.metrics.unclassified();
    x.outcome = obs::Outcome::invalid_request;
    LocalResponse response{.status = http::status::unauthorized,
                           .message = auth_error,
                           .close = !head.is_done(),
                           .authenticate = true};
    co_await send_local(client, x, std::move(response));
  } else if (request.method() == http::verb::post && x.config->is_scheduled_route(path)) {
    co_await serve_scheduled(proxy, client, head, x);
  } else {
    co_await serve_passthrough(proxy, client, head, x);
  }
  record_exchange(proxy, x);
  if (x.linger) co_await linger_and_close(client);
  co_return x.client_reusable&& x.client_keep_alive && !proxy.shutting_down;
}

}  // namespace

void Proxy::Impl::defer_watch(const std::shared_ptr<DeferredWatch>& watch) {
  if (!watch->queued) {
    watch->queued = true;
    deferred_watches.push_back(watch);
  }
  if (watch_ticker_running) return;
  watch_ticker_running = true;
  watch_ticker.expires_after(kDeferredWatchDelay / 2);
  std::weak_ptr<Impl> self = weak_from_this();
  watch_ticker.async_wait([self](error_code ec) {
    if (auto proxy = self.lock()) proxy->on_watch_tick(ec);
  });
}

void Proxy::Impl::on_watch_tick(const error_code& ec) {
  watch_ticker_running = false;
  const auto now = Clock::now();
  std::size_t kept = 0;
  for (auto& watch : deferred_watches) {
    const bool live = !ec && watch->request != 0 && watch->record && watch->record->client;
    if (live && now - watch->since < kDeferredWatchDelay) {
      deferred_watches[kept++] = std::move(watch);  // not due yet
      continue;
    }
    watch->queued = false;
    if (live) arm_deferred_watch(watch);
  }
  deferred_watches.resize(kept);
  if (!deferred_watches.empty()) defer_watch(deferred_watches.front());
}

asio::awaitable<void> run_session(std::shared_ptr<Proxy::Impl> proxy, tcp::socket socket,
                                  std::list<SessionRecord>::iterator record) {
  struct Unregister {
    Proxy::Impl& proxy;
    std::list<SessionRecord>::iterator record;
    ~Unregister() { proxy.session_ended(record); }
  } unregister{*proxy, record};

  error_code ec;
  auto peer = socket.remote_endpoint(ec);
  Client client{TimedStream(std::move(socket)), beast::flat_buffer(),
                ec ? std::string("unknown") : peer.address().to_string(), *record,
                std::make_shared<DeferredWatch>()};
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
  end_deferred_watch(client);
  client.watch->record = nullptr;
  record->client = nullptr;
  client.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  client.stream.socket().close(ec);
}

}  // namespace sluice::net
