// One backend (an Ollama) as the network layer holds it: its name, its connection pool and its
// health. Requests hold a shared_ptr to the backend they run on, so a backend that a reload
// removes lives (and its pooled connections close) after its last request ends.
//
// The backend's settings (URL, timeouts) are not here: a request reads them from the Config it
// started with (RequestContext::upstream), so a reload never changes a request in flight.
//
// Single-threaded: use on the io_context's thread. Internal to src/net.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "sluice/config/config.hpp"
#include "sluice/core/fleet.hpp"
#include "sluice/core/health.hpp"
#include "upstream_pool.hpp"

namespace sluice::net {

struct Backend {
  Backend(boost::asio::any_io_executor executor, std::string backend_name, core::BackendId core_id,
          std::size_t max_idle)
      : name(std::move(backend_name)), id(core_id), pool(std::move(executor), max_idle) {}

  std::string name;
  core::BackendId id = 0;  ///< its id in the scheduler's fleet
  UpstreamPool pool;
  core::Health health;         ///< used for a configured fleet only (Config::fleet)
  std::uint64_t requests = 0;  ///< requests sent to it that have ended (/admin/state)
};

/// The settings of backend `name` in `config` (the first backend's when none has that name).
inline const config::UpstreamConfig& upstream_of(const config::Config& config,
                                                 std::string_view name) {
  for (const config::BackendConfig& backend : config.backends) {
    if (backend.name == name) return backend.upstream;
  }
  return config.backends.empty() ? config.upstream : config.backends.front().upstream;
}

}  // namespace sluice::net
