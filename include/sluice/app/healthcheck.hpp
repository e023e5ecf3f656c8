// `sluice healthcheck`: a probe of a running sluice, for container health checks (the image has
// no curl). It reads the same config a server would (--config plus the overrides) and asks that
// server's admin listener `GET /healthz` (or `/readyz` with --ready); a wildcard listen address
// (0.0.0.0, ::) is probed on loopback. When the config disables the admin listener, the probe
// checks that the client listener accepts a TCP connection instead (/readyz then cannot be
// asked, which is a failure). Exit status: 0 healthy, 1 anything else.
#pragma once

#include <string>
#include <variant>

#include "sluice/config/config.hpp"

namespace sluice::app {

/// What the probe connects to and asks.
struct HealthTarget {
  std::string host;  ///< IP literal or name to connect to (wildcards already made loopback)
  std::uint16_t port = 0;
  /// "/healthz" or "/readyz"; empty: only check that a TCP connection is accepted.
  std::string path;
  /// "GET http://127.0.0.1:11436/healthz", "connect to 127.0.0.1:11435".
  std::string describe() const;
  friend bool operator==(const HealthTarget&, const HealthTarget&) = default;
};

/// The target for `config`: its admin listener, or (admin disabled, !ready) its client listener.
/// A string when there is nothing the probe can check: --ready without an admin listener, or a
/// listener on port 0 (any free port: the probe cannot know which).
std::variant<HealthTarget, std::string> health_target(const config::Config& config, bool ready);

struct HealthResult {
  bool healthy = false;
  /// One line: "GET http://127.0.0.1:11436/healthz: 200" or why not ("...: connect: Connection
  /// refused", "...: timeout after 3s", "...: 503 {\"status\":\"not ready\",...}").
  std::string message;
};

/// Runs the probe, bounded by `timeout` in total (resolve, connect, request and answer).
/// Healthy when the HTTP answer is 200 (or, for a TCP-only target, when the connection is
/// accepted). Never throws.
HealthResult probe_health(const HealthTarget& target, core::Duration timeout);

}  // namespace sluice::app
