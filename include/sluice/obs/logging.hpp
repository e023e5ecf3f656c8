// Logger setup: the default spdlog logger (application messages: start, reload, errors) and the
// access logger (one line per request, see access_log.hpp), both to standard error.
//
// Formats (log.format):
//   text: 2026-11-26T02:30:00.123Z info listening on http://127.0.0.1:11435
//   json: {"time":"2026-11-26T02:30:00.123Z","level":"info","msg":"listening on ..."}
// Times are UTC. In JSON the message is escaped, so any text a log call includes stays one valid
// JSON line. Access lines are written as format_access_line() made them.
//
// Levels: log.level applies to the default logger only; access lines are controlled by
// log.access_log alone (an operator who turns application logs to "warn" keeps the access log).
//
// init_logging() may be called again (on reload) to apply a new LogConfig; loggers and sinks are
// replaced atomically. Call it from one thread at a time; the loggers it installs are
// thread-safe. Use spdlog::info(...) etc. for application messages.
#pragma once

#include <iosfwd>

#include "sluice/config/config.hpp"
#include "sluice/obs/access_log.hpp"

namespace sluice::obs {

/// Installs the default and access loggers for `config`. They write to `out` when given (tests),
/// else to stderr.
void init_logging(const config::LogConfig& config, std::ostream* out = nullptr);

/// Writes one access line (formatted per the current config); no-op when log.access_log is
/// false or init_logging() was never called.
void log_access(const AccessRecord& record);

/// Whether log_access() currently writes anything (to skip building records needlessly).
bool access_log_enabled();

/// Flushes both loggers (before exit).
void flush_logs();

}  // namespace sluice::obs
