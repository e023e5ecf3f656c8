// The two ways a request is served once its head was read and checked (session.cpp routes it):
// scheduled (planned, admitted by the gate, relayed; serve_scheduled.cpp) or passed straight
// through (serve_passthrough.cpp). Internal to src/net.
#pragma once

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "request_context.hpp"

namespace sluice::net {

/// Everything about a scheduled route after its header was read.
asio::awaitable<void> serve_scheduled(Proxy::Impl& proxy, Client& client,
                                      http::request_parser<http::empty_body>& head,
                                      RequestContext& ctx);

/// Everything about a pass-through request after its header was read.
asio::awaitable<void> serve_passthrough(Proxy::Impl& proxy, Client& client,
                                        http::request_parser<http::empty_body>& head,
                                        RequestContext& ctx);

}  // namespace sluice::net
