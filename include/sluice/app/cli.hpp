// The `sluice` command line: flags, and the effective Config they select.
//
// Flags (CLI11): --config FILE, the overrides --listen, --admin-listen, --upstream,
// --max-concurrency, --log-level, --log-format, and the one-shot modes --check-config FILE,
// --version, --help; and the subcommands `hash-key [--generate]` and
// `healthcheck [--ready] [--timeout DURATION]` (healthcheck.hpp), which reads the same --config
// and overrides as the server (given before or after the subcommand's name).
//
// Overrides are applied on top of the file (or the defaults when there is no --config) and
// validated by the config module's own parser, so a bad override is reported exactly like a bad
// file value, naming the flag. The same overrides are re-applied on every reload, so SIGHUP never
// silently reverts a --listen or --upstream given at start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::app {

/// Values of the command-line overrides; nullopt = not given.
struct Overrides {
  std::optional<std::string> listen;
  std::optional<std::string> admin_listen;
  std::optional<std::string> upstream_url;
  std::optional<std::int64_t> max_concurrency;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  /// --backend NAME=URL[,SLOTS], repeated: replaces the config's upstreams (and upstream.url).
  std::vector<std::string> backends;

  bool empty() const {
    return !listen && !admin_listen && !upstream_url && !max_concurrency && !log_level &&
           !log_format && backends.empty();
  }
};

struct CliOptions {
  /// `sluice hash-key`: print the SHA-256 of the key read from stdin (for auth.keys[].sha256
  /// and auth.admin_token_sha256); with --generate, make a new key and print it and its digest.
  bool hash_key = false;
  bool generate_key = false;
  /// `sluice healthcheck`: probe the admin listener (or the client listener) of the effective
  /// config and exit 0/1 (healthcheck.hpp). --ready asks /readyz instead of /healthz; --timeout
  /// bounds the whole probe.
  bool healthcheck = false;
  bool health_ready = false;
  core::Duration health_timeout = std::chrono::seconds(3);
  std::optional<std::string> config_file;   ///< --config
  std::optional<std::string> check_config;  ///< --check-config FILE: validate and exit
  Overrides overrides;
};

/// What parse_command_line() decided.
struct CliParse {
  /// Set when the process should exit now (help, version, a usage error) with this status;
  /// `output` / `error_output` hold what to print on stdout / stderr.
  std::optional<int> exit_code;
  std::string output;
  std::string error_output;
  CliOptions options;
};

/// Exit statuses of the sluice binary.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;  ///< could not bind, unexpected failure
inline constexpr int kExitConfigError = 2;   ///< invalid config file or override
inline constexpr int kExitUsage = 64;        ///< bad command line (EX_USAGE)

/// Parses argv. Never throws and never prints.
CliParse parse_command_line(int argc, const char* const* argv);

/// Applies `overrides` to `base` and revalidates. Errors name the flag ("--listen").
config::ConfigResult apply_overrides(const config::Config& base, const Overrides& overrides);

/// The effective config: `config_file` (or the defaults when nullopt) plus the overrides.
/// Errors in the file name its path, line and field.
config::ConfigResult load_effective_config(const std::optional<std::string>& config_file,
                                           const Overrides& overrides);

/// The output of `sluice hash-key`: for --generate, "key: K\nsha256: D\n" with a fresh key;
/// else the digest of the first line of `input` (trailing CR/LF and surrounding blanks removed)
/// and a newline. nullopt when the input holds no key.
std::optional<std::string> hash_key_output(bool generate, std::string_view input);

/// "sluice 0.1.0".
std::string version_string();

/// Where requests go, for the start-up log line: "proxying to URL" for a single upstream,
/// "fleet of N backends: NAME=URL, ..." with `upstreams`.
std::string upstreams_summary(const config::Config& config);

}  // namespace sluice::app
