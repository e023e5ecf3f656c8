// sluice's configuration: the Config struct, loading it from a JSON file (comments allowed), and
// deciding whether a new Config can replace a running one.
//
// Invariants of a Config returned by parse_config()/load_config_file():
//  * every field holds a validated value; fields absent from the file hold the defaults below, so
//    an empty object `{}` is a complete, valid production config;
//  * scheduler.core passes sluice::core::validate(SchedulerConfig), workload names (including
//    the default workload's) are unique and none is a reserved name (kPassthroughWorkload,
//    kUnclassifiedWorkload), per_key labels are unique, label names are lowercase;
//  * every duration is >= 0 and every count is inside the bounds documented in
//    docs/configuration.md;
//  * a field left out of the file whose default another field bounds holds the derived default
//    (limits.max_scheduled_body_bytes <= max_body_bytes, workload queue_timeout <=
//    queue_timeout_cap; docs/configuration.md, "Derived defaults"), so the defaults below are
//    what an unset field gets only when the field bounding it is unset too;
//  * `backends` is never empty: with `upstreams` (fleet == true) one entry per backend, in file
//    order, and scheduler.core.backends mirrors them; without, one backend derived from
//    `upstream` (scheduler.core.backends stays empty: the core's implicit single backend);
//  * scheduler.core.model_aware == (fleet_settings.placement == Placement::model_aware),
//    scheduler.core.assumed_load_time == fleet_settings.load_time, scheduler.core.load_threshold
//    == fleet_settings.load_threshold.
// A Config is an immutable value once loaded: the network layer shares it as
// std::shared_ptr<const Config> and swaps the pointer on reload (see reload_incompatibility).
//
// Nothing here does I/O except load_config_file(), which reads one bounded file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/core/health.hpp"
#include "sluice/core/scheduler.hpp"
#include "sluice/core/time.hpp"

namespace sluice::config {

using core::Duration;

/// Largest config file accepted, in bytes.
inline constexpr std::size_t kMaxConfigBytes = 1024 * 1024;

/// Pseudo-workload names used in metrics and logs for requests that belong to no configured
/// workload: unscheduled routes (proxied straight through) and requests rejected before they
/// could be classified (e.g. a bad X-Priority). The config refuses workloads with these names.
inline constexpr std::string_view kPassthroughWorkload = "passthrough";
inline constexpr std::string_view kUnclassifiedWorkload = "unclassified";

/// Labels sluice itself sets on a request (from headers, and `model` from the body of a scheduled
/// request). Workload matchers, fairness keys and per-key limits naming another label are
/// accepted with a warning, because such a label is never present.
inline constexpr std::string_view kKnownLabels[] = {"user",     "tier",   "priority",
                                                    "workload", "tokens", "model"};

/// A TCP endpoint to listen on. `host` is an IP literal or a name, IPv6 without brackets.
/// Port 0 means "any free port" (tests use it).
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  /// "127.0.0.1:11435", "[::1]:11435".
  std::string to_string() const;
  friend bool operator==(const HostPort&, const HostPort&) = default;
};

struct UpstreamConfig {
  /// As written in the config (normalised: no trailing '/').
  std::string url = "http://127.0.0.1:11434";
  // Derived from url by the loader:
  std::string host = "127.0.0.1";  ///< what to connect to (IPv6 without brackets)
  std::uint16_t port = 11434;      ///< 80 when the URL has none
  /// Value for the Host header sent upstream: "127.0.0.1:11434" ("[::1]:8080"; no port if 80).
  std::string host_header = "127.0.0.1:11434";
  /// Percent-encoded path prefix prepended to every proxied target, "" or "/x/y" (no trailing '/').
  std::string base_path;

  Duration connect_timeout = std::chrono::seconds(5);
  Duration header_timeout = std::chrono::seconds(300);  ///< request sent -> response headers
  Duration idle_timeout = std::chrono::seconds(60);     ///< silence between two body chunks
  std::int64_t max_idle_connections = 64;               ///< kept-alive upstream connections
  /// The single upstream's `"max_concurrency": "auto"` (its limit learned within these bounds,
  /// scheduler.core.auto_concurrency). Only the top-level `upstream` block reads it, and only
  /// without `upstreams` (whose entries set their own).
  std::optional<core::AutoConcurrency> auto_concurrency;
};

/// One Ollama of the fleet: an entry of `upstreams`, or the single `upstream` of a config
/// without them (issue 12).
struct BackendConfig {
  /// `upstreams[].name` (1-64 of A-Z a-z 0-9 . _ -, unique); for the single upstream its
  /// host_header ("127.0.0.1:11434").
  std::string name;
  /// Its URL and connection settings; each one the entry leaves out is the shared `upstream`
  /// block's value.
  UpstreamConfig upstream;
  /// Requests running on it at once; for the single upstream, scheduler.max_concurrency. With
  /// auto_concurrency, where the learned limit starts (its min).
  std::int64_t max_concurrency = 1;
  /// `"max_concurrency": "auto"`: the limit is learned (core/concurrency.hpp) within these
  /// bounds (`auto_concurrency`, defaults min 1, max 32).
  std::optional<core::AutoConcurrency> auto_concurrency;
  /// Static catalog; empty = discovered from its /api/tags.
  std::vector<std::string> models;
};

enum class Placement : std::uint8_t {
  model_aware,   ///< expected finish: warm models, load times, eviction cost (core/fleet.hpp)
  least_loaded,  ///< the least utilised eligible backend, whatever is resident (for comparison)
};

std::string_view to_string(Placement placement);

/// The `fleet` section: placement and health of the backends. Accepted without `upstreams`, where
/// health is not gated (a single upstream behaves as before).
struct FleetConfig {
  Placement placement = Placement::model_aware;
  /// Between two active checks (GET /api/version) of one backend.
  Duration health_interval = std::chrono::seconds(5);
  /// Longest one check may take; <= health_interval.
  Duration health_timeout = std::chrono::seconds(2);
  /// Active checks between two refreshes of a backend's /api/tags (and /api/ps).
  std::int64_t discover_every = 6;
  /// unhealthy_after, eject_after, base_ejection, max_ejection (core/health.hpp).
  core::HealthPolicy health;
  /// A reset or timeout before response headers is retried once on another backend.
  bool retry_before_headers = true;
  /// The load time placement assumes for a model on a backend until one was seen there
  /// (scheduler.core.assumed_load_time).
  Duration load_time = core::kDefaultLoadTime;
  /// The least load_duration that counts as a model load (scheduler.core.load_threshold).
  Duration load_threshold = core::kLoadSeen;
};

struct SchedulerSettings {
  /// Limits, bounds, workloads: exactly what sluice::core::Scheduler takes.
  core::SchedulerConfig core;
  /// Longest an admitted request may hold its slot; then the upstream is closed and the slot
  /// freed (the client's stream ends with an error line).
  Duration max_inflight_duration = std::chrono::seconds(600);
  /// How often a request with progress on (X-Sluice-Progress: 1, or its workload's `progress`)
  /// gets a keep-alive while parked; 1s..60s.
  Duration progress_interval = std::chrono::seconds(5);
  /// Every parked request's ETA is computed when it parks and sent on its answer as
  /// X-Sluice-Eta-Ms (and X-Sluice-Eta-Rate-Ms), to measure ETA accuracy (the experiment).
  bool eta_header = false;
};

struct LimitsConfig {
  std::int64_t max_header_bytes = 16 * 1024;
  std::int64_t max_body_bytes = 32 * 1024 * 1024;
  /// On scheduled routes sluice parses the JSON body (prompt length, model, num_predict) and
  /// therefore holds it in memory: a larger body is refused with 413. <= max_body_bytes; unset,
  /// min(8 MiB, max_body_bytes), and an unset max_body_bytes is at least this.
  std::int64_t max_scheduled_body_bytes = 8 * 1024 * 1024;
  Duration header_read_timeout = std::chrono::seconds(10);  ///< first byte -> end of headers
  Duration keepalive_timeout = std::chrono::seconds(60);    ///< idle client between requests
  Duration write_timeout = std::chrono::seconds(60);        ///< per write to the client
  std::int64_t max_connections = 10'000;                    ///< client connections at once
};

/// Names of the request headers sluice reads (compared case-insensitively, as HTTP says).
struct HeaderNames {
  std::string user = "X-User-Id";
  std::string tier = "X-Tier";
  std::string priority = "X-Priority";
  std::string workload = "X-Workload";
  std::string tokens = "X-Tokens";
  std::string queue_timeout = "X-Queue-Timeout";
  std::string request_id = "X-Request-Id";
};

struct RoutesConfig {
  /// Paths whose requests go through the scheduler, matched exactly against the request path
  /// (the target without its query). Every other path is proxied straight through.
  std::vector<std::string> scheduled = {
      "/api/generate",        "/api/chat",       "/api/embed",    "/api/embeddings",
      "/v1/chat/completions", "/v1/completions", "/v1/embeddings"};
};

enum class LogLevel : std::uint8_t { trace, debug, info, warn, error, critical, off };
enum class LogFormat : std::uint8_t { text, json };

std::string_view to_string(LogLevel level);
std::string_view to_string(LogFormat format);

struct LogConfig {
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
  bool access_log = true;  ///< one line per request
};

struct ShutdownConfig {
  /// After SIGTERM: stop accepting, reject parked requests, wait this long for in-flight ones.
  Duration drain_timeout = std::chrono::seconds(30);
};

/// One API key (auth.keys[]). The key itself is never stored: only its SHA-256, as 64 lowercase
/// hex digits (`sluice hash-key` prints it).
struct ApiKey {
  std::string name;    ///< for logs and metrics; unique
  std::string sha256;  ///< lowercase hex digest of the key; unique
  std::string user;    ///< the `user` label of every request made with this key (default: name)
  std::string tier;    ///< the `tier` label; "" = none (the request then matches no tier rule)
  /// Highest X-Priority this key may claim; a higher one is clamped to it. nullopt: X-Priority is
  /// ignored for this key (the workload's priority applies).
  std::optional<double> max_priority;
  /// A gateway that authenticates its own users may pass their X-User-Id / X-Tier through; for
  /// every other key those headers are ignored.
  bool trusted_gateway = false;
};

struct AuthConfig {
  /// When non-empty, every proxied request must present one of these keys
  /// (`Authorization: Bearer KEY` or `X-Api-Key: KEY`), else 401.
  std::vector<ApiKey> keys;
  /// SHA-256 (hex) of the bearer token the admin listener requires; "" = no token.
  std::string admin_token_sha256;

  bool enabled() const { return !keys.empty(); }
};

struct Config {
  HostPort listen{"127.0.0.1", 11435};
  /// nullopt when the config sets "admin_listen": "" (no admin listener).
  std::optional<HostPort> admin_listen = HostPort{"127.0.0.1", 11436};
  /// The shared upstream settings: the single Ollama's URL, and every backend's default timeouts
  /// and idle connections. With `upstreams` its url is unused (the default).
  UpstreamConfig upstream;
  /// The fleet (see the invariants above); never empty.
  std::vector<BackendConfig> backends;
  /// True when the file lists `upstreams`: the network layer health-gates only a configured
  /// fleet, a single `upstream` keeps its behaviour.
  bool fleet = false;
  FleetConfig fleet_settings;
  SchedulerSettings scheduler;
  LimitsConfig limits;
  HeaderNames headers;
  RoutesConfig routes;
  LogConfig log;
  ShutdownConfig shutdown;
  AuthConfig auth;

  /// True when `path` (no query string) is one of routes.scheduled.
  bool is_scheduled_route(std::string_view path) const;
  /// The names of the configured workloads, then the default workload's.
  std::vector<std::string> workload_names() const;
};

/// One problem found in a config file. to_string() gives the operator-facing line:
///   "sluice.json:12: scheduler.workloads[1].priority: must be a number > 0"
/// `line` is 1-based; 0 when unknown (then it is left out). `field` is "" for problems with the
/// file as a whole (syntax, size).
struct ConfigDiagnostic {
  std::string source;
  std::size_t line = 0;
  std::string field;
  std::string message;
  std::string to_string() const;
};

struct ConfigResult {
  /// Present exactly when errors is empty.
  std::optional<Config> config;
  /// At most kMaxDiagnostics, in file order as far as possible.
  std::vector<ConfigDiagnostic> errors;
  /// Legal but suspicious settings (a workload queue_timeout above the cap, an unknown label).
  std::vector<ConfigDiagnostic> warnings;

  bool ok() const { return config.has_value(); }
  /// All errors, one per line (no trailing newline); "" when ok().
  std::string error_text() const;
};

inline constexpr std::size_t kMaxDiagnostics = 20;

/// Parses and validates a config from `text`. `source_name` prefixes every diagnostic (usually
/// the file name). Never throws for bad input.
ConfigResult parse_config(std::string_view text, std::string_view source_name = "config");

/// Reads `path` (at most kMaxConfigBytes) and parses it; I/O errors become diagnostics.
ConfigResult load_config_file(const std::string& path);

/// "" when `next` may replace the running `old` live (SIGHUP, POST /admin/reload), else the
/// reason a restart is needed, naming the fields: listen, admin_listen, upstream.url,
/// upstream.max_idle_connections, the labels of scheduler.per_key (their numbers may change),
/// switching between `upstream.url` and `upstreams`, and the url or max_idle_connections of a
/// backend kept under the same name. Backends added, removed or resized, their models and
/// timeouts, apply live; so does everything else, to requests that start after the swap.
std::string reload_incompatibility(const Config& old, const Config& next);

/// The effective config as JSON (every field, defaults filled in, durations as strings), 2-space
/// indented. parse_config(dump_config(c)) yields c again.
std::string dump_config(const Config& config);

}  // namespace sluice::config
