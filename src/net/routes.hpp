// The two ways a request is served once its head was read and checked (session.cpp routes it):
// scheduled (planned, admitted by the gate, relayed; serve_scheduled.cpp) or passed straight
// through (serve_passthrough.cpp; in a fleet first serve_fleet.cpp). Internal to src/net.
#pragma once

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "request_context.hpp"

namespace sluice::net {

/// Everything about a scheduled route after its header was read.
asio::awaitable<void> serve_scheduled(Proxy::Impl& proxy, Client& client,
                                      http::request_parser<http::empty_body>& head,
                                      RequestContext& ctx);

/// The path prefix of GET /sluice/requests/{id} (serve_status.cpp).
inline constexpr std::string_view kRequestStatusPrefix = "/sluice/requests/";

/// GET /sluice/requests/{id}: where a request stands. `authenticated`: the session's API-key
/// check passed (ctx.key is the key) or keys are off; the admin token is checked here.
asio::awaitable<void> serve_request_status(Proxy::Impl& proxy, Client& client,
                                           http::request_parser<http::empty_body>& head,
                                           RequestContext& ctx, bool authenticated);

/// Everything about a pass-through request after its header was read.
asio::awaitable<void> serve_passthrough(Proxy::Impl& proxy, Client& client,
                                        http::request_parser<http::empty_body>& head,
                                        RequestContext& ctx);

/// In a configured fleet, the pass-through requests whose backend is not simply the first one
/// up (serve_fleet.cpp, rules in passthrough_route.hpp): merged lists answered, /api/show and
/// management calls aimed at their backend. Returns true when it served the request; false when
/// the caller passes it through to ctx.backend (which it may have re-aimed).
asio::awaitable<bool> serve_in_fleet(Proxy::Impl& proxy, Client& client,
                                     http::request_parser<http::empty_body>& head,
                                     RequestContext& ctx);

}  // namespace sluice::net
