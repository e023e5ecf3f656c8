// The state one proxied request carries through the session's steps (read the head, route,
// plan, admit, relay, log), and the helpers every step shares: answers sluice makes itself in the
// request's dialect, time bounds, parsing what a buffer already holds. Internal to src/net.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/optional/optional.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "failure.hpp"
#include "proxy_impl.hpp"
#include "request_info.hpp"
#include "sluice/core/time.hpp"
#include "sluice/obs/metrics.hpp"

namespace sluice::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

inline constexpr std::string_view kWorkloadHeader = "X-Sluice-Workload";
inline constexpr std::string_view kQueueMsHeader = "X-Sluice-Queue-Ms";
inline constexpr std::string_view kReasonHeader = "X-Sluice-Reason";
inline constexpr std::string_view kBackendHeader = "X-Sluice-Backend";
inline constexpr std::string_view kEtaMsHeader = "X-Sluice-Eta-Ms";
inline constexpr std::string_view kEtaRateMsHeader = "X-Sluice-Eta-Rate-Ms";
inline constexpr std::string_view kEtaAfterMsHeader = "X-Sluice-Eta-After-Ms";

/// How a parked request with progress on is kept alive (progress.hpp); none: no progress.
enum class ProgressMode : std::uint8_t { none, ndjson_generate, ndjson_chat, sse, json };

struct Client {
  TimedStream stream;
  beast::flat_buffer buffer;
  std::string address;  ///< peer address, the fairness key of requests without one
  SessionRecord& record;
  std::shared_ptr<DepartureWatch> watch;  ///< see client_watch.hpp
};

/// What one request did, for the response headers, the metrics and the access log.
struct RequestContext {
  std::shared_ptr<const config::Config> config;
  /// The backend the request goes to, and its settings (inside `config`, or inside
  /// `backend_config` for a backend added by a reload after the request started: aim_at()).
  std::shared_ptr<Backend> backend;
  const config::UpstreamConfig* upstream = nullptr;
  std::shared_ptr<const config::Config> backend_config;
  /// The backend's name once the request was sent to it (X-Sluice-Backend, the access log).
  std::string backend_name;
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
  /// When the request was last sent upstream, and how long the upstream took to send the
  /// response head after that (the adaptive limit's time to first byte).
  std::optional<Clock::time_point> upstream_sent;
  std::optional<core::Duration> upstream_ttfb;
  std::int64_t prompt_tokens = -1;
  std::int64_t output_tokens = -1;
  /// A scheduled request's model (as the client named it), and whether its backend reported
  /// loading it (core::Fleet::counts_as_load() of the final object's load_duration).
  std::string model;
  bool loaded_model = false;
  /// Progress while parked (progress.hpp): its mode, and whether its 200 head went out (from then
  /// on every answer continues that chunked body: relay.cpp, send_local()).
  ProgressMode progress = ProgressMode::none;
  bool progress_sent = false;
  /// The ETAs given when it parked (scheduler.eta_header): X-Sluice-Eta-Ms, X-Sluice-Eta-Rate-Ms.
  std::optional<core::Duration> eta_at_park;
  std::optional<core::Duration> eta_rate_at_park;
  std::optional<core::Duration> eta_after;  ///< X-Sluice-Eta-After-Ms: when they were given
  bool client_reusable = true;              ///< the connection may carry another request
  bool linger = false;                      ///< request body left unread: linger before closing
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

inline core::Duration since(Clock::time_point start) {
  return std::chrono::duration_cast<core::Duration>(Clock::now() - start);
}

/// `timeout`, shortened so that it ends no later than `deadline`.
inline Clock::duration bounded(Clock::duration timeout, Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return timeout;
  auto left = deadline - Clock::now();
  if (left < Clock::duration::zero()) left = Clock::duration::zero();
  return std::min(timeout, left);
}

inline bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

inline std::optional<std::uint64_t> to_std(const boost::optional<std::uint64_t>& value) {
  return value ? std::optional<std::uint64_t>(*value) : std::nullopt;
}

/// Finds a header that must appear at most once. Sets `duplicate` when it appears twice.
std::optional<std::string_view> single_header(const http::fields& fields, std::string_view name,
                                              std::string& duplicate);

/// The client's request id when it sent a valid one, else a fresh one. Also used for sluice's
/// own errors (400, 401, 413), so a client can always match an answer to its log line.
std::string client_request_id(const http::fields& fields, const config::Config& config);

bool expects_continue(const http::fields& fields);

std::string queue_ms_text(core::Duration waited);

std::string format_seconds(Clock::duration d);

/// A parse error in what the client sent (not its connection ending or timing out).
bool is_malformed(const error_code& ec);

/// Adds sluice's own response headers.
template <class Fields>
void add_sluice_headers(Fields& fields, const RequestContext& ctx) {
  fields.set(ctx.config->headers.request_id, ctx.request_id);
  if (!ctx.backend_name.empty()) fields.set(kBackendHeader, ctx.backend_name);
  if (!ctx.scheduled || ctx.workload_name == config::kUnclassifiedWorkload) return;
  fields.set(kWorkloadHeader, ctx.workload_name);
  if (ctx.queue_wait) fields.set(kQueueMsHeader, queue_ms_text(*ctx.queue_wait));
  if (ctx.eta_at_park) fields.set(kEtaMsHeader, queue_ms_text(*ctx.eta_at_park));
  if (ctx.eta_rate_at_park) fields.set(kEtaRateMsHeader, queue_ms_text(*ctx.eta_rate_at_park));
  if (ctx.eta_at_park && ctx.eta_after)
    fields.set(kEtaAfterMsHeader, queue_ms_text(*ctx.eta_after));
}

struct LocalResponse {
  http::status status = http::status::bad_request;
  std::string message;
  std::string_view reason;                  ///< X-Sluice-Reason, "" for none
  std::optional<std::int64_t> retry_after;  ///< Retry-After seconds
  bool close = false;                       ///< close the connection after it
  bool authenticate = false;                ///< add WWW-Authenticate (401)
};

/// 413 naming the limit (`limits.max_body_bytes`, ...) and its value; the connection closes.
LocalResponse body_too_large(std::string_view limit, std::uint64_t bytes);
/// 400 for a request body whose framing (chunks) is malformed; the connection closes.
LocalResponse malformed_body(const error_code& ec);

/// Sends a response generated by sluice (errors, rejections) in the request's dialect.
asio::awaitable<void> send_local(Client& client, RequestContext& ctx, LocalResponse response);

/// Ends a progress response (its head already sent) with one error piece in its dialect and the
/// last chunk; the connection then closes.
asio::awaitable<void> end_progress_with_error(Client& client, RequestContext& ctx,
                                              std::string_view message,
                                              std::string_view openai_type);

/// Reads (and discards) what a client still sends after we answered without reading its
/// request body, so that closing does not reset the connection under our response.
asio::awaitable<void> linger_and_close(Client& client);

/// Writes "100 Continue" to a client that asked for it (Expect: 100-continue). Returns false,
/// with the request marked client_gone, when the client is no longer there.
asio::awaitable<bool> send_continue(Client& client, RequestContext& ctx);

/// Reads the rest of a request body into `parser` (in memory, at most `max_body` bytes, the
/// limit named `limit` in errors): 100 Continue first when the client asked (`send_100`), each
/// read bounded by limits.header_read_timeout. Returns false when the request is over: the
/// body was too large or malformed (answered, answer_body_error) or the client left.
asio::awaitable<bool> read_body_in_memory(Client& client, RequestContext& ctx,
                                          http::request_parser<http::string_body>& parser,
                                          bool send_100, std::string_view limit,
                                          std::uint64_t max_body);

/// Parses what `buffer` already holds into `parser`, without I/O. Beast's async reads post
/// their completion when the buffer alone satisfies them (a scheduler round trip), which is the
/// common case twice per request: a request header that arrived whole with the connection's
/// first read, and the first body bytes of a response that arrived with its header. Returns
/// whether the parser made progress; parse errors go to `ec` (need_more/need_buffer are not
/// errors here). When it returns false without an error, the caller reads from the socket.
template <bool isRequest>
inline bool parse_buffered(http::basic_parser<isRequest>& parser, beast::flat_buffer& buffer,
                           error_code& ec) {
  ec = {};
  if (buffer.size() == 0) return false;
  const std::size_t used = parser.put(buffer.data(), ec);
  buffer.consume(used);
  if (ec == http::error::need_more || ec == http::error::need_buffer) ec = {};
  return used > 0 || parser.is_done();
}

/// The facts the failure map needs about this request's `error` in `phase`.
FailureFacts facts_of(Phase phase, const error_code& error, const Client& client,
                      Clock::time_point deadline, std::chrono::nanoseconds silence);

/// The failure map's verdict (failure.hpp) on `error` in `phase` of this request, given its
/// deadline, whether its client left or was cut, and the silence allowed in the phase.
Failure failure_of(Phase phase, const boost::system::error_code& error, const Client& client,
                   const RequestContext& ctx, Clock::time_point deadline,
                   std::chrono::nanoseconds silence = {});

/// Aims `ctx` at `backend`: its settings from the config the request started with, or — a
/// backend a reload added while the request was parked, which that config does not know —
/// from `current`, the config that added it (kept alive in ctx.backend_config). Without this a
/// parked request placed on a new backend went to the first backend's address.
void aim_at(RequestContext& ctx, std::shared_ptr<Backend> backend,
            const std::shared_ptr<const config::Config>& current);

/// Records a failure's outcome and upstream-error kind in `ctx`.
void record_failure(RequestContext& ctx, const Failure& failure);

/// Records `failure` and, when it has a status (the client is there and no response head went
/// out), answers it; `close` closes the connection after the answer.
asio::awaitable<void> answer_failure(Client& client, RequestContext& ctx, Failure failure,
                                     bool close);

/// A request body read that failed: 413 (over `limit`, `max_bytes`) or 400 (malformed chunks),
/// each closing the connection; else the client left (or was cut) and nothing is answered.
asio::awaitable<void> answer_body_error(Client& client, RequestContext& ctx, const error_code& ec,
                                        std::string_view limit, std::uint64_t max_bytes);

}  // namespace sluice::net
