// The inside of sluice-sim's server (server.hpp), shared by its translation units:
//   server.cpp       accept loop, connection sessions, routing, start/stop
//   http_write.cpp   writing responses (whole bodies, chunked streams, partial bodies, resets)
//   gpu_request.cpp  a GPU request: faults, model residency, slot, prefill, tokens, the end
//   control.cpp      introspection and control: /api/ps, /sim/stats, /sim/reset, /sim/config
// Included only by those files (it pulls in Beast).
//
// Shape: one accept loop; one coroutine per connection that reads one request at a time with a
// fresh parser (header and body limits, timeouts) and answers it. A GPU request runs as
// `run_gpu(...) || watch_disconnect(...)`: the watcher reads the raw socket while the request
// waits for its model, for a slot or generates, so a client that leaves (EOF, reset,
// half-close) cancels the request at once, as Ollama's request context does. Times: the
// simulated clock runs `time_scale` times faster than the steady clock; every wait is computed
// in simulated nanoseconds against absolute deadlines (no drift) and every reported duration
// is simulated.
//
// Invariants: a GPU request's record is finished exactly once on every path (completed, error,
// fault, rejected, or cancelled by the guard in handle_gpu); a model reference (ModelRef) and a
// slot (SlotPool::Permit) are held only inside run_gpu / wait_loaded (RAII); nothing is written
// to a connection after it was closed or reset; `residency` is pumped (pump_residency) after
// every change, and its timer is armed for its next deadline.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "api.hpp"
#include "live_config.hpp"
#include "residency.hpp"
#include "server.hpp"
#include "slots.hpp"
#include "stats.hpp"

namespace sluice::sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;

inline constexpr std::string_view kJsonNative = "application/json; charset=utf-8";

// The simulated clock: sim time = real elapsed time * scale, from process start.
class SimClock {
 public:
  explicit SimClock(double scale)
      : scale_(scale),
        start_(std::chrono::steady_clock::now()),
        wall_start_(std::chrono::system_clock::now()) {}

  std::int64_t now_ns() const {
    const auto real = std::chrono::steady_clock::now() - start_;
    return std::int64_t(double(std::chrono::nanoseconds(real).count()) * scale_);
  }
  std::chrono::steady_clock::time_point real_at(std::int64_t sim_ns) const {
    return start_ + std::chrono::nanoseconds(std::int64_t(double(sim_ns) / scale_));
  }
  std::chrono::system_clock::time_point wall_at(std::int64_t sim_ns) const {
    return wall_start_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::nanoseconds(sim_ns));
  }

 private:
  double scale_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::system_clock::time_point wall_start_;
};

enum class After { keep_alive, close };

struct Conn {
  // Reads take up to 4 KiB at once, as Go's bufio.Reader in Ollama's server does. (A fresh
  // flat_buffer reads 512 bytes first, so a larger request needed one more trip through the
  // io_context than a small one, and of many requests sent at once the larger ones reached the
  // slot queue last.)
  explicit Conn(tcp::socket socket, std::size_t max_buffer)
      : stream(std::move(socket)), buffer(max_buffer) {
    buffer.reserve(std::min<std::size_t>(4096, max_buffer));
  }
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool closed = false;
};

// Everything one GPU request needs while it runs; lives in handle_gpu's frame.
struct Job {
  Route route;
  SimRequest request;
  FaultPlan faults;
  std::shared_ptr<Record> record;
  ResponseContext ctx;
  int planned_tokens = 0;
  std::string done_reason;
  std::uint64_t seed = 0;
  std::size_t model_index = 0;  ///< position in the catalog (and in residency)
};

struct SimServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, SimConfig c);

  /// A request's reference to its model in `residency`; leaving it (on destruction) lets the
  /// model go idle and wakes whoever waits for a place.
  class ModelRef {
   public:
    ModelRef(Impl* impl, Residency::Ticket ticket) : impl_(impl), ticket_(ticket) {}
    ModelRef(ModelRef&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)), ticket_(o.ticket_) {}
    ModelRef& operator=(ModelRef&&) = delete;
    ~ModelRef() { reset(); }
    void reset();
    Residency::Ticket ticket() const { return ticket_; }

   private:
    Impl* impl_;
    Residency::Ticket ticket_;
  };

  asio::io_context& ioc;
  SimConfig cfg;
  bool check_host = true;  ///< set at listen(): loopback bind and no --allow-any-host
  bool stopping = false;   ///< stop() was called: no more timers are armed
  GpuModel model;
  Catalog catalog;
  SimClock clock;
  RecordLog log;
  GpuLoad gpu;
  std::map<std::string, std::unique_ptr<SlotPool>> pools;
  Residency residency;
  std::map<Residency::Ticket, asio::steady_timer*> model_waiters;
  asio::steady_timer residency_timer;
  Rng fault_rng;
  tcp::acceptor acceptor;
  std::size_t connections = 0;
  std::uint64_t openai_ids = 0;

  // ---- writing (http_write.cpp) ----
  asio::awaitable<void> write_body(Conn& c, const Request& req, http::status status,
                                   std::string_view content_type, std::string body,
                                   std::string_view allow = {});
  asio::awaitable<void> write_error(Conn& c, const Request& req, Route route, int status,
                                    std::string_view message);
  asio::awaitable<void> write_stream_header(Conn& c, const Request& req, Route route);
  asio::awaitable<void> write_chunk(Conn& c, const std::string& data);
  asio::awaitable<void> write_last_chunk(Conn& c);
  /// Headers with the full Content-Length, then only the first half of the body.
  asio::awaitable<void> write_partial(Conn& c, const Request& req, std::string_view content_type,
                                      const std::string& body);
  void close(Conn& c);
  void reset(Conn& c);

  // ---- GPU requests (gpu_request.cpp) ----
  asio::awaitable<void> sleep_until(std::int64_t sim_ns);
  asio::awaitable<void> hang();
  /// Completes when the client goes away (EOF, reset, half-close). Bytes that arrive instead
  /// (a pipelined request) are kept in the connection's buffer and watching stops.
  asio::awaitable<void> watch_disconnect(Conn& c);
  /// Waits until `job`'s model is loaded and this request holds a reference to it. Supports
  /// terminal/partial cancellation (throws operation_aborted; the reference is given back).
  asio::awaitable<ModelRef> await_model(const Job& job);
  /// An empty prompt: waits for the model to load (records what it reports), then lets go.
  asio::awaitable<void> wait_loaded(Job& job);
  /// Applies residency's due work, wakes requests whose model became ready, arms the timer.
  void pump_residency();
  Metrics metrics_of(const Record& r, std::int64_t prefill_end, std::int64_t end) const;
  asio::awaitable<After> mid_stream_fault(Conn& c, Job& job);
  asio::awaitable<After> run_gpu(Conn& c, const Request& req, Job& job);
  Record new_record(const Request& req, const Job& job);
  asio::awaitable<After> handle_gpu(Conn& c, const Request& req, Route route);
  /// POST /api/pull (server.cpp): see parse_pull_request().
  asio::awaitable<After> handle_pull(Conn& c, const Request& req);

  // ---- introspection and control (control.cpp) ----
  std::string ps_json() const;
  std::string stats_json(std::string_view query) const;
  void reset_stats();
  /// Remembers a request to /api/show or /api/pull for /sim/stats "calls" (the last kMaxCalls).
  void note_call(const Request& req, std::string model);
  static constexpr std::size_t kMaxCalls = 64;
  std::deque<CallRecord> calls;
  LiveSettings live_settings() const;
  void apply(const LiveSettings& settings);

  // ---- connections (server.cpp) ----
  asio::awaitable<After> dispatch(Conn& c, Request& req);
  asio::awaitable<void> session(tcp::socket socket);
  asio::awaitable<void> accept_loop();
};

/// The request's headers as /sim/stats shows them: lowercased names, bounded (gpu_request.cpp).
std::vector<std::pair<std::string, std::string>> recorded_headers(const Request& req);

}  // namespace sluice::sim
