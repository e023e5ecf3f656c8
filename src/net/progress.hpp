// Progress while parked (opt-in: X-Sluice-Progress: 1, or a workload's `progress: true`): sluice
// answers 200 with headers as soon as the request parks, then every scheduler.progress_interval
// sends a keep-alive the client's parser accepts and ignores, in the route's dialect:
//  * NDJSON (/api/generate, /api/chat streaming): an empty streaming chunk (model, created_at,
//    response "" or message {role: assistant, content: ""}, done: false) plus
//    "sluice": {"queue_position": N, "eta_ms": M};
//  * SSE (/v1/* with stream: true): a comment line ": sluice queue_position=N eta_ms=M";
//  * a non-streamed answer (stream: false, embeddings): a space before the JSON body.
// Once admitted, the upstream's answer continues the same chunked body (relay.cpp); a failure
// after the head went out (an upstream error status, queue timeout, shutdown, 502/504) ends it
// with one error line/event in the dialect, or the error JSON as the body (send_local()).
//
// Only for HTTP/1.1 clients (the body is chunked) and not for HEAD. Pure helpers first, then the
// coroutine that races admission against the keep-alive loop. Internal to src/net.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "request_context.hpp"
#include "waiting.hpp"

namespace sluice::net {

/// The request header that asks for progress.
inline constexpr std::string_view kProgressHeader = "X-Sluice-Progress";

/// The value of X-Sluice-Progress: "1"/"true" on, "0"/"false" off (case-insensitive); nullopt
/// for anything else (a 400 naming the header).
std::optional<bool> parse_progress_header(std::string_view value);

/// How a request to `path` whose body says `body` is kept alive while parked.
ProgressMode progress_mode(std::string_view path, Dialect dialect, const BodyInfo& body);

/// The Content-Type of the response head sent at parking.
std::string_view progress_content_type(ProgressMode mode);

/// One keep-alive piece (the chunk's data): `created_at` is an RFC 3339 UTC time.
std::string keepalive_piece(ProgressMode mode, std::string_view model, const WaitFigures& figures,
                            std::string_view created_at);

/// The last piece of a progress response that failed: an error line (NDJSON), an error event
/// (SSE) or the error JSON body (non-streamed), in `dialect`.
std::string progress_error_piece(ProgressMode mode, Dialect dialect, std::string_view message,
                                 std::string_view openai_type);

/// Now as RFC 3339 UTC with nanoseconds, as Ollama's created_at.
std::string rfc3339_now();

/// Waits for admission like gate.admit(), and while parked keeps the client informed (the head
/// at once, then a keep-alive every progress_interval). A keep-alive that cannot be written ends
/// the wait as cancelled (the client is gone). Writes are never cut halfway: cancellation stops
/// the loop only between writes.
asio::awaitable<AdmitResult> admit_with_progress(Proxy::Impl& proxy, Client& client,
                                                 RequestContext& ctx, core::Request request,
                                                 TrackedRequest& tracked, std::string model);

/// The same for a request that failed over back into the queue (gate.requeue(slot)): while
/// parked again it is kept informed likewise — the head first if none went out yet (it was
/// admitted at once the first time), else keep-alives continuing the body already begun.
asio::awaitable<AdmitResult> requeue_with_progress(Proxy::Impl& proxy, Client& client,
                                                   RequestContext& ctx, Slot& slot,
                                                   TrackedRequest& tracked, std::string model);

}  // namespace sluice::net
