// `sluice` entry point: parse the command line, load and validate the config, then either check
// it (--check-config), probe a running server with it (healthcheck) or run the server. Config
// problems are printed to stderr, one per line with file, line and field, and end the process with
// kExitConfigError before anything is bound.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "sluice/app/cli.hpp"
#include "sluice/app/healthcheck.hpp"
#include "sluice/app/server.hpp"
#include "sluice/obs/logging.hpp"

namespace {

using sluice::config::ConfigResult;

void print_diagnostics(const ConfigResult& result) {
  for (const auto& w : result.warnings)
    std::fprintf(stderr, "warning: %s\n", w.to_string().c_str());
  for (const auto& e : result.errors)
    std::fprintf(stderr, "error: %s\n", e.to_string().c_str());
}

int check_config(const std::string& file, const sluice::app::Overrides& overrides) {
  ConfigResult result = sluice::app::load_effective_config(file, overrides);
  print_diagnostics(result);
  if (!result.ok()) {
    std::fprintf(stderr, "%s: invalid (%zu %s)\n", file.c_str(), result.errors.size(),
                 result.errors.size() == 1 ? "error" : "errors");
    return sluice::app::kExitConfigError;
  }
  const auto& c = *result.config;
  // A fleet is named by its backends: "upstreams gpu-a, gpu-b".
  std::string upstream = c.fleet ? "upstreams " : "upstream ";
  if (!c.fleet) upstream += c.upstream.url;
  for (std::size_t i = 0; c.fleet && i < c.backends.size(); ++i) {
    if (i > 0) upstream += ", ";
    upstream += c.backends[i].name;
  }
  std::printf("%s: ok (listen %s, %s, max_concurrency %lld, %zu workloads + default)\n",
              file.c_str(), c.listen.to_string().c_str(), upstream.c_str(),
              static_cast<long long>(c.scheduler.core.max_concurrency),
              c.scheduler.core.workloads.size());
  return sluice::app::kExitOk;
}

// `sluice hash-key`: reads the key from stdin (at most 4 KiB), so it never shows in argv or
// shell history.
int hash_key(bool generate) {
  std::string input;
  if (!generate) {
    if (::isatty(STDIN_FILENO)) std::fputs("key (then Enter): ", stderr);
    char buffer[4096];
    std::size_t n = std::fread(buffer, 1, sizeof buffer, stdin);
    input.assign(buffer, n);
  }
  std::optional<std::string> out = sluice::app::hash_key_output(generate, input);
  if (!out) {
    std::fputs("sluice hash-key: no key on standard input (try: sluice hash-key --generate)\n",
               stderr);
    return sluice::app::kExitUsage;
  }
  std::fputs(out->c_str(), stdout);
  return sluice::app::kExitOk;
}

// `sluice healthcheck`: 0 when the server the effective config describes answers, else 1 (also
// for a config it cannot use: container health checks know only 0 and 1).
int healthcheck(const sluice::app::CliOptions& options) {
  ConfigResult result = sluice::app::load_effective_config(options.config_file, options.overrides);
  if (!result.ok()) {
    for (const auto& e : result.errors)
      std::fprintf(stderr, "error: %s\n", e.to_string().c_str());
    std::fputs("sluice healthcheck: unhealthy: the configuration is invalid\n", stderr);
    return 1;
  }
  auto target = sluice::app::health_target(*result.config, options.health_ready);
  if (const std::string* why = std::get_if<std::string>(&target)) {
    std::fprintf(stderr, "sluice healthcheck: cannot check: %s\n", why->c_str());
    return 1;
  }
  sluice::app::HealthResult health = sluice::app::probe_health(
      std::get<sluice::app::HealthTarget>(target), options.health_timeout);
  std::FILE* out = health.healthy ? stdout : stderr;
  std::fprintf(out, "sluice healthcheck: %s: %s\n", health.healthy ? "healthy" : "unhealthy",
               health.message.c_str());
  return health.healthy ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  sluice::app::CliParse cli = sluice::app::parse_command_line(argc, argv);
  if (cli.exit_code) {
    std::fputs(cli.output.c_str(), stdout);
    std::fputs(cli.error_output.c_str(), stderr);
    return *cli.exit_code;
  }
  const sluice::app::CliOptions& options = cli.options;
  if (options.hash_key) return hash_key(options.generate_key);
  if (options.healthcheck) return healthcheck(options);
  if (options.check_config) return check_config(*options.check_config, options.overrides);

  ConfigResult result = sluice::app::load_effective_config(options.config_file, options.overrides);
  if (!result.ok()) {
    print_diagnostics(result);
    std::fprintf(stderr, "sluice: not started: the configuration has %zu %s\n",
                 result.errors.size(), result.errors.size() == 1 ? "error" : "errors");
    return sluice::app::kExitConfigError;
  }
  try {
    sluice::obs::init_logging(result.config->log);
    for (const auto& w : result.warnings)
      spdlog::warn("config warning: {}", w.to_string());
    sluice::app::Server server(options, std::move(*result.config));
    return server.run();
  } catch (const std::exception& e) {
    spdlog::critical("sluice: fatal: {}", e.what());
    std::fprintf(stderr, "sluice: fatal: %s\n", e.what());
    sluice::obs::flush_logs();
    return sluice::app::kExitRuntimeError;
  }
}
