// sluice-sim's HTTP server: an Ollama-compatible API in front of the simulated GPU
// (sluice/sim/model.hpp) and its model residency (residency.hpp), plus /sim/stats, /sim/reset
// and /sim/config for tests and benchmarks. One io_context thread;
// one coroutine per connection; a GPU request is a coroutine that waits per token on a timer.
// See docs/simulator.md for the behaviour and the faults.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "faults.hpp"
#include "sluice/sim/model.hpp"

namespace boost::asio {
class io_context;
}

namespace sluice::sim {

struct SimConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 11434;
  int parallel = 1;           ///< slots per model (OLLAMA_NUM_PARALLEL)
  std::size_t max_queue = 0;  ///< waiting requests per model before 503; 0 = unbounded
  double time_scale = 1.0;    ///< simulated seconds per real second
  /// Durations in final objects in real elapsed time (simulated / time_scale), so that they
  /// agree with what a proxy measures with its own clock; default: simulated time.
  bool wall_durations = false;
  std::uint64_t seed = 1;
  std::vector<std::string> models = {"mistral:latest"};
  GpuParams gpu;
  int max_loaded = 0;        ///< models resident at once; 0 = all of `models`
  std::int64_t load_ns = 0;  ///< simulated time to load a model that is not resident
  std::int64_t keep_alive_ns = 5LL * 60 * 1'000'000'000;  ///< idle time before unload; < 0 never
  int external_streams = 0;  ///< another tenant's streams decoding on the same GPU
  int embedding_dims = 4096;
  double fault_rate = 0.0;  ///< probability that a GPU request gets a fault from fault_mix
  std::vector<FaultPlan> fault_mix = default_fault_mix();
  std::size_t max_records = 100000;
  std::size_t max_body_bytes = 32 * 1024 * 1024;
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_connections = 10000;
  std::chrono::seconds read_timeout{30};   ///< real time to receive a request once it starts
  std::chrono::seconds idle_timeout{300};  ///< real time a kept-alive connection may idle
  std::chrono::seconds write_timeout{60};  ///< real time for one write to complete
  std::chrono::seconds hang_limit{3600};   ///< real time a hang fault lasts at most
  bool allow_any_host = false;  ///< skip Ollama's Host check (403 for foreign Host headers)
};

class SimServer {
 public:
  /// Binds the listening socket. Throws on bad configuration or bind failure.
  SimServer(boost::asio::io_context& ioc, SimConfig config);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  std::uint16_t port() const;
  /// Starts accepting (spawns the accept loop on the io_context).
  void start();
  /// Stops accepting and closes open connections.
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::sim
