// sluice-sim's HTTP server (see server.hpp and docs/simulator.md).
//
// Shape: one accept loop; one coroutine per connection that reads one request at a time with a
// fresh parser (header and body limits, timeouts) and answers it. A GPU request runs as
// `run_gpu(...) || watch_disconnect(...)`: the watcher reads the raw socket while the request
// waits for a slot or generates, so a client that leaves (EOF, reset, half-close) cancels the
// request at once, as Ollama's request context does. Times: the simulated clock runs
// `time_scale` times faster than the steady clock; every wait is computed in simulated
// nanoseconds against absolute deadlines (no drift) and every reported duration is simulated.
//
// Invariants: a GPU request's record is finished exactly once on every path (completed, error,
// fault, rejected, or cancelled by the guard in handle_gpu); a slot is held only inside run_gpu
// (RAII permit); nothing is written to a connection after it was closed or reset.
#include "server.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>

#include "api.hpp"
#include "slots.hpp"
#include "sluice/obs/escaped.hpp"
#include "stats.hpp"

namespace sluice::sim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Request = http::request<http::string_body>;
using asio::use_awaitable;

constexpr std::size_t kMaxRecordedHeaders = 64;
constexpr std::size_t kMaxRecordedHeaderValue = 512;
constexpr std::size_t kContentLengthThreshold = 2048;  // Go sends Content-Length below this
constexpr std::size_t kMaxStatsRecords = 1'000'000;

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
};

std::string_view trim_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  const auto colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) return host.substr(0, colon);
  return host;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Ollama's allowedHostsMiddleware for a loopback bind (server/routes.go).
bool host_allowed(std::string_view raw) {
  std::string host(trim_host(raw));
  for (auto& ch : host)
    ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (host.empty() || host == "localhost") return true;
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (!ec) {
    if (addr.is_loopback() || addr.is_unspecified()) return true;
    if (addr.is_v4()) {
      const auto b = addr.to_v4().to_bytes();
      return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168);
    }
    const auto b = addr.to_v6().to_bytes();
    return (b[0] & 0xfe) == 0xfc;
  }
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) == 0) {
    std::string hn = name;
    for (auto& ch : hn)
      ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (host == hn) return true;
  }
  return ends_with(host, ".localhost") || ends_with(host, ".local") || ends_with(host, ".internal");
}

// Value of `key` in a query string like "since=5&limit=10" as an unsigned integer.
std::optional<std::uint64_t> query_uint(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || item.substr(0, eq) != key) continue;
    const auto value = item.substr(eq + 1);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec == std::errc() && p == value.data() + value.size()) return v;
  }
  return std::nullopt;
}

// GPU routes (the ones sluice schedules) and the constants of cheap responses. Kept out of the
// coroutines: GCC 12 cannot put an initializer_list's array into a coroutine frame.
std::optional<Route> gpu_route(std::string_view path) {
  static const std::map<std::string_view, Route, std::less<>> routes = {
      {"/api/generate", Route::generate},
      {"/api/chat", Route::chat},
      {"/api/embed", Route::embed},
      {"/api/embeddings", Route::embeddings},
      {"/v1/chat/completions", Route::v1_chat},
      {"/v1/completions", Route::v1_completions},
      {"/v1/embeddings", Route::v1_embeddings}};
  auto it = routes.find(path);
  if (it == routes.end()) return std::nullopt;
  return it->second;
}
std::string version_body() {
  return nlohmann::json{{"version", kOllamaVersion}}.dump();
}
constexpr std::string_view kPost = "POST";
constexpr std::string_view kGet = "GET, HEAD";
constexpr std::string_view kJsonNative = "application/json; charset=utf-8";

}  // namespace

struct SimServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, SimConfig c)
      : ioc(io),
        cfg(std::move(c)),
        model(cfg.gpu),
        catalog(cfg.models),
        clock(cfg.time_scale),
        log(cfg.max_records),
        fault_rng(cfg.seed ^ 0x6661756c74ULL),
        acceptor(io) {}

  asio::io_context& ioc;
  SimConfig cfg;
  bool check_host = true;  ///< set at listen(): loopback bind and no --allow-any-host
  GpuModel model;
  Catalog catalog;
  SimClock clock;
  RecordLog log;
  GpuLoad gpu;
  std::map<std::string, std::unique_ptr<SlotPool>> pools;
  Rng fault_rng;
  tcp::acceptor acceptor;
  std::size_t connections = 0;
  std::uint64_t openai_ids = 0;

  // ---- writing ----

  template <typename Body>
  void common_headers(http::response<Body>& res) {
    res.set(http::field::date, http_date(std::chrono::system_clock::now()));
  }

  asio::awaitable<void> write_body(Conn& c, const Request& req, http::status status,
                                   std::string_view content_type, std::string body,
                                   std::string_view allow = {}) {
    http::response<http::string_body> res{status, req.version()};
    common_headers(res);
    if (!content_type.empty()) res.set(http::field::content_type, content_type);
    if (!allow.empty()) res.set(http::field::allow, allow);
    res.keep_alive(req.keep_alive());
    const bool head = req.method() == http::verb::head;
    if (!head && body.size() >= kContentLengthThreshold) {
      res.chunked(true);
      res.body() = std::move(body);
    } else {
      res.content_length(body.size());
      if (!head) res.body() = std::move(body);
    }
    http::response_serializer<http::string_body> sr{res};
    c.stream.expires_after(cfg.write_timeout);
    co_await http::async_write(c.stream, sr, use_awaitable);
  }

  asio::awaitable<void> write_error(Conn& c, const Request& req, Route route, int status,
                                    std::string_view message) {
    co_await write_body(c, req, http::status(status),
                        is_openai(route) ? "application/json" : "application/json; charset=utf-8",
                        error_body(route, status, message));
  }

  asio::awaitable<void> write_stream_header(Conn& c, const Request& req, Route route) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    common_headers(res);
    res.set(http::field::content_type, stream_content_type(route));
    res.keep_alive(req.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    c.stream.expires_after(cfg.write_timeout);
    co_await http::async_write_header(c.stream, sr, use_awaitable);
  }

  asio::awaitable<void> write_chunk(Conn& c, const std::string& data) {
    c.stream.expires_after(cfg.write_timeout);
    co_await asio::async_write(c.stream, http::make_chunk(asio::buffer(data)), use_awaitable);
  }

  asio::awaitable<void> write_last_chunk(Conn& c) {
    c.stream.expires_after(cfg.write_timeout);
    co_await asio::async_write(c.stream, http::make_chunk_last(), use_awaitable);
  }

  // Headers with the full Content-Length, then only the first half of the body.
  asio::awaitable<void> write_partial(Conn& c, const Request& req, std::string_view content_type,
                                      const std::string& body) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    common_headers(res);
    res.set(http::field::content_type, content_type);
    res.content_length(body.size());
    http::response_serializer<http::empty_body> sr{res};
    c.stream.expires_after(cfg.write_timeout);
    co_await http::async_write_header(c.stream, sr, use_awaitable);
    c.stream.expires_after(cfg.write_timeout);
    co_await asio::async_write(c.stream, asio::buffer(body.data(), body.size() / 2), use_awaitable);
  }

  void close(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    boost::system::error_code ec;
    c.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    c.stream.socket().close(ec);
  }

  void reset(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    boost::system::error_code ec;
    c.stream.socket().set_option(asio::socket_base::linger(true, 0), ec);
    c.stream.socket().close(ec);
  }

  // ---- waiting ----

  asio::awaitable<void> sleep_until(std::int64_t sim_ns) {
    asio::steady_timer timer(co_await asio::this_coro::executor, clock.real_at(sim_ns));
    co_await timer.async_wait(use_awaitable);
  }

  asio::awaitable<void> hang() {
    asio::steady_timer timer(co_await asio::this_coro::executor, cfg.hang_limit);
    co_await timer.async_wait(use_awaitable);
  }

  // Completes when the client goes away (EOF, reset, half-close). Bytes that arrive instead
  // (a pipelined request) are kept in the connection's buffer and watching stops.
  asio::awaitable<void> watch_disconnect(Conn& c) {
    auto space =
        c.buffer.prepare(std::min<std::size_t>(4096, c.buffer.max_size() - c.buffer.size()));
    auto [ec, n] = co_await c.stream.socket().async_read_some(space, asio::as_tuple(use_awaitable));
    if (ec) co_return;
    c.buffer.commit(n);
    asio::steady_timer forever(co_await asio::this_coro::executor,
                               asio::steady_timer::time_point::max());
    co_await forever.async_wait(use_awaitable);
  }

  // ---- GPU requests ----

  Metrics metrics_of(const Record& r, std::int64_t prefill_end, std::int64_t end) const {
    Metrics m;
    const std::int64_t start = r.start_ns.value_or(r.arrival_ns);
    m.total_ns = end - r.arrival_ns;
    m.load_ns = start - r.arrival_ns;
    m.prompt_eval_count = r.prompt_tokens;
    m.prompt_eval_ns = prefill_end - start;
    m.eval_count = r.tokens;
    m.eval_ns = end - prefill_end;
    return m;
  }

  asio::awaitable<After> mid_stream_fault(Conn& c, Job& job) {
    Record& rec = *job.record;
    if (job.faults.hang_mid_stream) {
      co_await hang();
      log.finish(rec, "fault", clock.now_ns());
      close(c);
      co_return After::close;
    }
    if (job.faults.reset_mid_stream) {
      log.finish(rec, "fault", clock.now_ns());
      reset(c);
      co_return After::close;
    }
    log.finish(rec, "error", clock.now_ns());
    co_await write_chunk(c, stream_error(job.ctx, "simulated failure (X-Sim-Fault: error-line)"));
    co_await write_last_chunk(c);
    co_return After::keep_alive;
  }

  asio::awaitable<After> run_gpu(Conn& c, const Request& req, Job& job) {
    Record& rec = *job.record;
    SlotPool& pool = *pools.at(job.request.resolved);
    SlotPool::Permit permit = co_await pool.acquire();
    rec.start_ns = clock.now_ns();
    rec.outcome = "running";

    if (job.faults.hang_before_headers) {
      co_await hang();
      log.finish(rec, "fault", clock.now_ns());
      close(c);
      co_return After::close;
    }

    std::int64_t deadline = *rec.start_ns + model.prefill_duration(rec.prompt_tokens).count() +
                            std::chrono::nanoseconds(job.faults.slow_first_token).count();
    co_await sleep_until(deadline);
    // Prompt evaluation is reported as scheduled; a late wake-up (timer jitter times the time
    // scale) shows in eval_duration and total_duration, which are measured, never in a split
    // that would make eval look faster than the model allows.
    const std::int64_t prefill_end = deadline;

    if (is_embedding(job.route)) {
      std::vector<std::vector<float>> vectors;
      for (const auto& input : job.request.inputs)
        vectors.push_back(
            embedding(cfg.seed, input, cfg.embedding_dims, job.route != Route::embeddings));
      const std::int64_t end = clock.now_ns();
      Metrics m = metrics_of(rec, prefill_end, end);
      log.finish(rec, "completed", end);
      permit.reset();
      co_await write_body(c, req, http::status::ok, complete_content_type(job.route),
                          embedding_body(job.ctx, vectors, m));
      co_return After::keep_alive;
    }

    WordGenerator words(job.seed ^ 0x776f726473ULL);
    std::string text;
    const auto fault_after = job.faults.mid_stream_after();
    for (int i = 0; i < job.planned_tokens; ++i) {
      deadline += model.token_interval(gpu.active).count();
      co_await sleep_until(deadline);
      const std::string token = words.next_token();
      const std::int64_t now = clock.now_ns();
      rec.tokens = i + 1;
      if (i == 0) rec.first_token_ns = now;
      if (!job.request.stream) {
        text += token;
        continue;
      }
      if (i == 0) co_await write_stream_header(c, req, job.route);
      co_await write_chunk(c, stream_chunk(job.ctx, token, clock.wall_at(now)));
      if (fault_after && i + 1 == *fault_after) co_return co_await mid_stream_fault(c, job);
    }

    const std::int64_t end = clock.now_ns();
    const Metrics m = metrics_of(rec, prefill_end, end);
    const auto wall = clock.wall_at(end);
    if (job.request.stream) {
      log.finish(rec, "completed", end);
      permit.reset();
      co_await write_chunk(c, stream_final(job.ctx, job.done_reason, m, wall, job.seed));
      co_await write_last_chunk(c);
      co_return After::keep_alive;
    }
    const std::string body = complete_body(job.ctx, text, job.done_reason, m, wall, job.seed);
    if (!fault_after) {
      log.finish(rec, "completed", end);
      permit.reset();
      co_await write_body(c, req, http::status::ok, complete_content_type(job.route), body);
      co_return After::keep_alive;
    }
    if (job.faults.error_line) {
      log.finish(rec, "error", end);
      permit.reset();
      co_await write_error(c, req, job.route, 500, "simulated failure (X-Sim-Fault: error-line)");
      co_return After::keep_alive;
    }
    co_await write_partial(c, req, complete_content_type(job.route), body);
    co_return co_await mid_stream_fault(c, job);
  }

  Record new_record(const Request& req, const Job& job) {
    Record r;
    r.route = std::string(route_path(job.route));
    r.model = job.request.resolved;
    r.arrival_ns = clock.now_ns();
    r.stream = job.request.stream;
    r.prompt_tokens = job.request.load_only ? 0 : prompt_tokens_for_chars(job.request.prompt_chars);
    r.planned_tokens = is_embedding(job.route) ? 0 : job.planned_tokens;
    r.fault = job.faults.text();
    r.host = std::string(req[http::field::host]);
    for (const auto& field : req) {
      if (r.headers.size() >= kMaxRecordedHeaders) break;
      std::string name(field.name_string());
      for (auto& ch : name)
        ch = char(std::tolower(static_cast<unsigned char>(ch)));
      std::string value(field.value().substr(0, kMaxRecordedHeaderValue));
      r.headers.emplace_back(std::move(name), std::move(value));
    }
    return r;
  }

  asio::awaitable<After> handle_gpu(Conn& c, const Request& req, Route route) {
    Job job;
    job.route = route;
    if (auto h = req.find("X-Sim-Fault"); h != req.end()) {
      std::string why;
      auto plan = parse_faults(h->value(), &why);
      if (!plan) {
        co_await write_error(c, req, route, 400, "X-Sim-Fault: " + why);
        co_return After::keep_alive;
      }
      job.faults = *plan;
    }
    auto parsed = parse_request(route, req.body(), catalog);
    if (auto* err = std::get_if<ApiError>(&parsed)) {
      co_await write_error(c, req, route, err->status, err->message);
      co_return After::keep_alive;
    }
    job.request = std::move(std::get<SimRequest>(parsed));
    if (!job.faults.any() && cfg.fault_rate > 0 && !cfg.fault_mix.empty() &&
        fault_rng.uniform() < cfg.fault_rate)
      job.faults = cfg.fault_mix[fault_rng.next() % cfg.fault_mix.size()];

    const auto& sreq = job.request;
    const std::uint64_t options_seed = sreq.seed ? std::uint64_t(*sreq.seed) : 0;
    job.seed = hash_text(cfg.seed ^ (options_seed * 0x9e3779b97f4a7c15ULL),
                         sreq.resolved + "\n" + sreq.seed_text);
    if (sreq.num_predict) {
      job.planned_tokens = std::min(*sreq.num_predict, cfg.gpu.max_output_tokens);
      job.done_reason = "length";
    } else {
      job.planned_tokens = model.drawn_output_tokens(job.seed);
      job.done_reason = "stop";
    }
    if (auto after = job.faults.mid_stream_after())
      job.planned_tokens = std::max(job.planned_tokens, *after + 1);
    if (is_openai(route))
      job.ctx.openai_id =
          (route == Route::v1_completions ? "cmpl-" : "chatcmpl-") + std::to_string(++openai_ids);
    job.ctx.request = &job.request;

    job.record = log.add(new_record(req, job));
    Record& rec = *job.record;
    job.ctx.created = clock.wall_at(rec.arrival_ns);
    // Whatever ends this request (including an exception from a failed write, which means the
    // client left), its record is finished exactly once.
    struct Guard {
      Impl& impl;
      Record& rec;
      ~Guard() { impl.log.finish(rec, "cancelled", impl.clock.now_ns()); }
    } guard{*this, rec};

    if (job.faults.refuse) {
      log.finish(rec, "fault", clock.now_ns());
      close(c);
      co_return After::close;
    }
    if (job.faults.error_500) {
      log.finish(rec, "fault", clock.now_ns());
      co_await write_error(c, req, route, 500, "simulated failure (X-Sim-Fault: error-500)");
      co_return After::keep_alive;
    }
    if (sreq.load_only) {
      log.finish(rec, "load", clock.now_ns());
      if (is_embedding(route)) {
        co_await write_body(c, req, http::status::ok, complete_content_type(route),
                            embedding_body(job.ctx, {}, Metrics{}));
      } else {
        co_await write_body(c, req, http::status::ok, complete_content_type(route),
                            load_body(job.ctx, clock.wall_at(rec.arrival_ns)));
      }
      co_return After::keep_alive;
    }
    SlotPool& pool = *pools.at(sreq.resolved);
    if (cfg.max_queue > 0 && !pool.has_free_slot() &&
        std::size_t(pool.waiting()) >= cfg.max_queue) {
      log.finish(rec, "rejected", clock.now_ns());
      co_await write_error(c, req, route, 503, kBusyMessage);
      co_return After::keep_alive;
    }

    auto outcome = co_await (run_gpu(c, req, job) || watch_disconnect(c));
    if (outcome.index() == 1) {
      spdlog::debug("request {} cancelled: client went away", rec.id);
      log.finish(rec, "cancelled", clock.now_ns());
      close(c);
      co_return After::close;
    }
    co_return std::get<0>(outcome);
  }

  // ---- cheap routes ----

  std::string stats_json(std::string_view query) const {
    const auto since = query_uint(query, "since").value_or(0);
    const auto limit = query_uint(query, "limit").value_or(kMaxStatsRecords);
    const auto& counters = log.counters();
    nlohmann::ordered_json head;
    head["parallel"] = cfg.parallel;
    head["time_scale"] = cfg.time_scale;
    head["now_ns"] = clock.now_ns();
    head["active"] = gpu.active;
    head["waiting"] = gpu.waiting;
    head["peak_active"] = gpu.peak_active;
    head["peak_waiting"] = gpu.peak_waiting;
    head["total"] = counters.total;
    head["completed"] = counters.completed;
    head["cancelled"] = counters.cancelled;
    head["errors"] = counters.errors;
    head["rejected"] = counters.rejected;
    nlohmann::ordered_json per_model = nlohmann::ordered_json::object();
    for (const auto& [name, pool] : pools)
      per_model[name] = {{"active", pool->active()},
                         {"waiting", pool->waiting()},
                         {"peak_active", pool->peak_active()}};
    head["models"] = per_model;
    std::string out = head.dump();
    out.pop_back();  // reopen the object to append the records array
    out += ",\"records\":[";
    const auto& records = log.records();
    std::vector<const Record*> picked;
    for (const auto& r : records)
      if (r->id > since) picked.push_back(r.get());
    const std::size_t skip = picked.size() > limit ? picked.size() - limit : 0;
    for (std::size_t i = skip; i < picked.size(); ++i) {
      if (i > skip) out += ',';
      out += record_json(*picked[i]);
    }
    out += "]}";
    return out;
  }

  asio::awaitable<After> dispatch(Conn& c, Request& req) {
    const std::string_view target = req.target();
    const auto qmark = target.find('?');
    const std::string_view path = target.substr(0, qmark);
    const std::string_view query =
        qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);
    const auto method = req.method();
    const bool get = method == http::verb::get || method == http::verb::head;
    const bool post = method == http::verb::post;
    spdlog::debug("{} {}", std::string(req.method_string()), std::string(target));

    if (check_host && !host_allowed(req[http::field::host])) {
      co_await write_body(c, req, http::status::forbidden, "", "");
      co_return After::keep_alive;
    }

    if (auto route = gpu_route(path)) {
      if (!post) {
        co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                            "405 method not allowed", kPost);
        co_return After::keep_alive;
      }
      co_return co_await handle_gpu(c, req, *route);
    }

    if (path == "/" || path == "/api/version" || path == "/api/tags" || path == "/api/ps" ||
        path == "/v1/models" || path == "/sim/stats" ||
        (path.rfind("/v1/models/", 0) == 0 && path.size() > 11)) {
      if (!get) {
        co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                            "405 method not allowed", kGet);
        co_return After::keep_alive;
      }
      if (path == "/") {
        co_await write_body(c, req, http::status::ok, "text/plain; charset=utf-8",
                            "Ollama is running");
      } else if (path == "/api/version") {
        co_await write_body(c, req, http::status::ok, kJsonNative, version_body());
      } else if (path == "/api/tags") {
        co_await write_body(c, req, http::status::ok, kJsonNative, tags_body(catalog));
      } else if (path == "/api/ps") {
        const auto expires = std::chrono::system_clock::now() + std::chrono::minutes(5);
        co_await write_body(c, req, http::status::ok, kJsonNative, ps_body(catalog, expires));
      } else if (path == "/v1/models") {
        co_await write_body(c, req, http::status::ok, "application/json",
                            openai_models_body(catalog));
      } else if (path == "/sim/stats") {
        co_await write_body(c, req, http::status::ok, "application/json", stats_json(query));
      } else {
        const std::string name(path.substr(11));
        if (catalog.resolve(name)) {
          co_await write_body(c, req, http::status::ok, "application/json",
                              openai_model_body(name));
        } else {
          co_await write_body(c, req, http::status::not_found, "application/json",
                              openai_error_body(404, "model '" + name + "' not found"));
        }
      }
      co_return After::keep_alive;
    }

    if (path == "/api/show" || path == "/sim/reset") {
      if (!post) {
        co_await write_body(c, req, http::status::method_not_allowed, "text/plain",
                            "405 method not allowed", kPost);
        co_return After::keep_alive;
      }
      if (path == "/sim/reset") {
        log.reset();
        gpu.reset_peaks();
        for (auto& [name, pool] : pools)
          pool->reset_peak();
        co_await write_body(c, req, http::status::ok, "application/json", R"({"reset":true})");
        co_return After::keep_alive;
      }
      auto shown = parse_show_request(req.body(), catalog);
      if (auto* err = std::get_if<ApiError>(&shown)) {
        co_await write_body(c, req, http::status(err->status), kJsonNative,
                            native_error_body(err->message));
      } else {
        co_await write_body(c, req, http::status::ok, kJsonNative,
                            show_body(std::get<std::string>(shown)));
      }
      co_return After::keep_alive;
    }

    co_await write_body(c, req, http::status::not_found, "text/plain", "404 page not found");
    co_return After::keep_alive;
  }

  // ---- connections ----

  asio::awaitable<void> session(tcp::socket socket) {
    ++connections;
    struct Count {
      std::size_t& n;
      ~Count() { --n; }
    } count{connections};
    Conn c(std::move(socket), cfg.max_header_bytes + cfg.max_body_bytes + 65536);
    try {
      for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(std::uint32_t(std::min<std::size_t>(cfg.max_header_bytes, UINT32_MAX)));
        parser.body_limit(cfg.max_body_bytes);
        c.stream.expires_after(cfg.idle_timeout);
        auto [ec, n] = co_await http::async_read_header(c.stream, c.buffer, parser,
                                                        asio::as_tuple(use_awaitable));
        if (ec == http::error::body_limit) {  // Content-Length above the limit
          Request dummy{http::verb::get, "/", 11};
          dummy.keep_alive(false);
          co_await write_body(c, dummy, http::status::payload_too_large, kJsonNative,
                              native_error_body("request body too large (limit " +
                                                std::to_string(cfg.max_body_bytes) + " bytes)"));
          break;
        }
        if (ec == http::error::header_limit) {
          Request dummy{http::verb::get, "/", 11};
          dummy.keep_alive(false);
          co_await write_body(c, dummy, http::status::request_header_fields_too_large, "text/plain",
                              "431 Request Header Fields Too Large");
          break;
        }
        if (ec) {
          // Malformed requests get Go's plain 400; a client that left or idled out gets nothing.
          const bool malformed =
              ec.category() == make_error_code(http::error::bad_target).category() &&
              ec != http::error::end_of_stream && ec != http::error::partial_message;
          if (malformed) {
            Request dummy{http::verb::get, "/", 11};
            dummy.keep_alive(false);
            co_await write_body(c, dummy, http::status::bad_request, "text/plain",
                                "400 Bad Request");
          }
          break;
        }
        auto& head = parser.get();
        if (beast::iequals(head[http::field::expect], "100-continue") && !parser.is_done()) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          c.stream.expires_after(cfg.write_timeout);
          co_await asio::async_write(c.stream, asio::buffer(kContinue), use_awaitable);
        }
        if (!parser.is_done()) {
          c.stream.expires_after(cfg.read_timeout);
          auto [bec, bn] =
              co_await http::async_read(c.stream, c.buffer, parser, asio::as_tuple(use_awaitable));
          if (bec == http::error::body_limit) {
            Request dummy{head.method(), head.target(), head.version()};
            dummy.keep_alive(false);
            co_await write_body(c, dummy, http::status::payload_too_large,
                                "application/json; charset=utf-8",
                                native_error_body("request body too large (limit " +
                                                  std::to_string(cfg.max_body_bytes) + " bytes)"));
            break;
          }
          if (bec) break;
        }
        Request req = parser.release();
        const After after = co_await dispatch(c, req);
        if (after == After::close || c.closed || !req.keep_alive()) break;
      }
    } catch (const std::exception& e) {
      spdlog::debug("connection ended: {}", e.what());
    }
    if (!c.closed) {
      boost::system::error_code ec;
      c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      c.stream.socket().close(ec);
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      if (connections >= cfg.max_connections) {
        spdlog::warn("connection limit {} reached; closing new connection", cfg.max_connections);
        boost::system::error_code ignore;
        socket.close(ignore);
        continue;
      }
      boost::system::error_code ignore;
      socket.set_option(tcp::no_delay(true), ignore);
      // (`self` keeps the server alive while the session runs.)
      auto log = obs::log_escaped("simulator session");
      asio::co_spawn(ioc, session(std::move(socket)),
                     [self, log](std::exception_ptr e) { log(e); });
    }
  }
};

SimServer::SimServer(asio::io_context& ioc, SimConfig config) {
  if (auto why = validate(config.gpu)) throw std::invalid_argument(*why);
  if (config.parallel < 1) throw std::invalid_argument("parallel must be at least 1");
  if (!(config.time_scale > 0)) throw std::invalid_argument("time scale must be positive");
  impl_ = std::make_shared<Impl>(ioc, std::move(config));
  if (impl_->catalog.names().empty()) throw std::invalid_argument("no valid model names");
  for (const auto& name : impl_->catalog.names())
    impl_->pools.emplace(name, std::make_unique<SlotPool>(impl_->cfg.parallel, impl_->gpu));
  const tcp::endpoint ep(asio::ip::make_address(impl_->cfg.host), impl_->cfg.port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  // Ollama checks the Host header only when it listens on a loopback address (its defence
  // against DNS rebinding); bound to 0.0.0.0 or a LAN address, as in a container, it accepts any.
  impl_->check_host = !impl_->cfg.allow_any_host && ep.address().is_loopback();
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
}

SimServer::~SimServer() = default;

std::uint16_t SimServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void SimServer::start() {
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
}

void SimServer::stop() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace sluice::sim
