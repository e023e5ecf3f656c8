// What happens to an exception that escapes a coroutine started with co_spawn. sluice's
// coroutines report expected failures as error_code values; an exception reaching co_spawn is a
// bug, so it is logged — what ended, and why — and goes no further: one bad session never takes
// the process down. Header-only on spdlog, so the simulator uses it too.
//
//   asio::co_spawn(io, run_session(...), obs::log_escaped("session"));
#pragma once

#include <spdlog/spdlog.h>

#include <exception>

namespace sluice::obs {

/// A co_spawn completion handler that logs an escaped exception as
/// "<what> ended by an unexpected error: <message>" at `level`.
inline auto log_escaped(const char* what, spdlog::level::level_enum level = spdlog::level::err) {
  return [what, level](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::log(level, "{} ended by an unexpected error: {}", what, e.what());
    } catch (...) {
      spdlog::log(level, "{} ended by an unexpected error of unknown type", what);
    }
  };
}

}  // namespace sluice::obs
