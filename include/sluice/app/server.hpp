// The running `sluice` process: wires the proxy (data path), the admin listener, metrics,
// logging and signals together on one single-threaded io_context.
//
// Start: bind the proxy's listener and the admin listener (port 0 allowed), print
//   listening on http://HOST:PORT
//   admin listening on http://HOST:PORT
// to stdout (tests and scripts parse these lines), log a start-up summary, then serve.
//
// Signals (asio::signal_set; SIGPIPE is ignored):
//   SIGHUP          reload the config file (same as POST /admin/reload; see reload.hpp)
//   SIGTERM/SIGINT  graceful shutdown: stop accepting, parked requests get 503 shutting_down,
//                   running requests get shutdown.drain_timeout to finish, then everything is
//                   closed and run() returns 0. A second SIGTERM/SIGINT closes everything at once.
//
// Invariants: every config the proxy runs with went through plan_reload() (validated, compatible);
// a reload that fails changes nothing; after shutdown begins, reloads are refused.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "sluice/app/cli.hpp"
#include "sluice/config/config.hpp"

namespace sluice::app {

class Server {
 public:
  /// `config` is the effective config (load_effective_config(options.config_file, overrides)).
  Server(CliOptions options, config::Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds, serves until shutdown, returns the process exit status (kExitOk after a graceful
  /// shutdown, kExitRuntimeError when a listener cannot be bound).
  int run();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// "http://127.0.0.1:11435", "http://[::1]:11435".
std::string http_url(const std::string& host, unsigned short port);

}  // namespace sluice::app
