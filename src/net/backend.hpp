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
#include <string>

#include "upstream_pool.hpp"

namespace sluice::net {

struct Backend {
  Backend(boost::asio::any_io_executor executor, std::string backend_name, std::size_t max_idle)
      : name(std::move(backend_name)), pool(std::move(executor), max_idle) {}

  std::string name;
  UpstreamPool pool;
};

}  // namespace sluice::net
