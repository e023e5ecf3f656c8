// Small GET requests sluice makes to a backend on its own behalf: the health check
// (/api/version), model discovery (/api/tags), residency (/api/ps), the readiness probe, and the
// per-backend halves of a merged /api/tags. Each uses a fresh connection through the backend's
// pool (so host names resolve and cache as for requests), is bounded in time and in size, and
// never throws for network errors. Internal to src/net.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <string>

#include "sluice/config/config.hpp"
#include "upstream_pool.hpp"

namespace sluice::net {

struct ProbeResult {
  std::string error;  ///< "" when an HTTP response arrived; else "connect: ...", "timeout", ...
  unsigned status = 0;
  std::string body;  ///< at most the limit given
  std::chrono::steady_clock::duration elapsed{};
};

/// Largest body a probe reads (a /api/tags of a few thousand models fits).
inline constexpr std::size_t kMaxProbeBody = 4 * 1024 * 1024;

/// GET `path` from the backend within `timeout` in all (connect, send, whole response).
boost::asio::awaitable<ProbeResult> probe_get(UpstreamPool& pool,
                                              const config::UpstreamConfig& upstream,
                                              std::string path,
                                              std::chrono::steady_clock::duration timeout,
                                              std::size_t max_body = kMaxProbeBody);

/// The one-line reason a probe shows the backend unusable ("" when it answered below 500).
std::string probe_problem(const ProbeResult& result);

}  // namespace sluice::net
