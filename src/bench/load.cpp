// The load generator (see include/sluice/bench/load.hpp).
//
// Shape: one io_context on the calling thread. A dispatcher coroutine walks the burst and
// Poisson requests in due order and spawns one coroutine per request when it is due; each
// closed-loop user is one coroutine that sends, waits for the answer, thinks, and sends again.
// A request coroutine takes an in-flight slot (FIFO hand-off, so no request is overtaken while
// waiting), connects, writes, and reads the response head and then the body chunk by chunk into a
// fixed buffer (buffer_body), feeding the NDJSON scanner. Around the run (load_watch.cpp): the
// simulators' clocks and records before and after it, and the watcher thread during it.
//
// Invariants: every planned request gets exactly one record with an outcome; every network
// operation runs under the request's absolute deadline (min(send + request timeout, run
// deadline)), so the run ends by max_duration_s whatever the target does; a slot taken is
// released exactly once (RAII guard); the records vector is sized once and never reallocated
// while coroutines hold references into it.
#include "sluice/bench/load.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "load_watch.hpp"
#include "sluice/bench/report.hpp"
#include "sluice/bench/stream.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using asio::use_awaitable;
constexpr auto as_tuple = asio::as_tuple(use_awaitable);

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 4096;

Clock::duration real_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string short_error_text(int status, std::string_view body) {
  std::string message;
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_string()) {
      message = e.get<std::string>();
    } else if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      message = e["message"].get<std::string>();
    }
  }
  if (message.empty()) message = std::string(body.substr(0, 200));
  return "HTTP " + std::to_string(status) + (message.empty() ? "" : ": " + message);
}

std::string request_body(const Scenario& s, const std::string& model, const std::string& prompt,
                         const std::optional<int>& num_predict) {
  nlohmann::ordered_json j;
  j["model"] = model;
  if (s.api == Api::chat) {
    j["messages"] = nlohmann::ordered_json::array({{{"role", "user"}, {"content", prompt}}});
  } else {
    j["prompt"] = prompt;
  }
  j["stream"] = true;
  if (num_predict) j["options"] = {{"num_predict", *num_predict}};
  return j.dump();
}

class LoadRun {
 public:
  LoadRun(const Scenario& s, const Plan& plan, const LoadOptions& opt, asio::io_context& ioc)
      : s_(s), plan_(plan), opt_(opt), ioc_(ioc), records_(plan.total_requests) {}

  /// `endpoints[i]` is where LoadOptions::targets[i] answers.
  void start(std::vector<tcp::endpoint> endpoints) {
    endpoints_ = std::move(endpoints);
    start_ = Clock::now();
    deadline_ = start_ + real_duration(s_.max_duration_s / opt_.time_scale);
    tty_ = opt_.progress && isatty(STDERR_FILENO);
    init_records();

    // Burst and Poisson requests, in due order; requests due at the same instant in a seeded
    // random order, so no user is systematically first in the target's queue.
    std::vector<std::pair<std::size_t, std::size_t>> open_loop;  // (user, request)
    for (std::size_t u = 0; u < plan_.users.size(); ++u) {
      const auto& user = plan_.users[u];
      if (s_.groups[user.group].arrival.mode == Arrival::Mode::closed_loop) {
        spawn(closed_loop_user(u));
        continue;
      }
      for (std::size_t k = 0; k < user.requests.size(); ++k)
        open_loop.emplace_back(u, k);
    }
    Rng rng(s_.seed ^ 0xd15a7c4ULL);
    for (std::size_t i = open_loop.size(); i > 1; --i)
      std::swap(open_loop[i - 1], open_loop[rng.below(i)]);
    std::stable_sort(open_loop.begin(), open_loop.end(), [&](const auto& a, const auto& b) {
      return plan_.users[a.first].requests[a.second].send_at_s <
             plan_.users[b.first].requests[b.second].send_at_s;
    });
    spawn(dispatch(std::move(open_loop)));
    if (opt_.progress) spawn(progress());
  }

  Clock::time_point started() const { return start_; }
  bool truncated() const { return truncated_; }
  std::vector<RequestRecord> take_records() { return std::move(records_); }

  double run_seconds(Clock::time_point t) const {
    return std::chrono::duration<double>(t - start_).count() * opt_.time_scale;
  }

 private:
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    bool granted = false;
  };

  // Releases the in-flight slot it holds, handing it to the longest waiter.
  class SlotGuard {
   public:
    explicit SlotGuard(LoadRun& run) : run_(run) {}
    ~SlotGuard() { run_.release_slot(); }
    SlotGuard(const SlotGuard&) = delete;
    SlotGuard& operator=(const SlotGuard&) = delete;

   private:
    LoadRun& run_;
  };

  template <typename Awaitable>
  void spawn(Awaitable&& a) {
    asio::co_spawn(ioc_, std::forward<Awaitable>(a), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "sluice-bench: internal error: %s\n", ex.what());
      }
    });
  }

  void init_records() {
    for (const auto& user : plan_.users) {
      const Group& g = s_.groups[user.group];
      for (const auto& pr : user.requests) {
        RequestRecord& r = records_[pr.index];
        r.index = pr.index;
        r.user = user.name;
        r.tier = g.tier;
        r.group = g.name;
        r.request_id = opt_.run_id + "-" + std::to_string(pr.index);
        r.num_predict = pr.num_predict;
        r.model = model_of(s_, pr);
        r.outcome = "not_sent";
      }
    }
  }

  double now_s() const { return run_seconds(Clock::now()); }
  Clock::time_point at(double run_s) const {
    return start_ + real_duration(run_s / opt_.time_scale);
  }

  // Waits until `when` or the run deadline; false if the deadline came first.
  asio::awaitable<bool> wait_until(Clock::time_point when) {
    if (when >= deadline_) {
      asio::steady_timer t(co_await asio::this_coro::executor, deadline_);
      co_await t.async_wait(as_tuple);
      co_return false;
    }
    if (when > Clock::now()) {
      asio::steady_timer t(co_await asio::this_coro::executor, when);
      co_await t.async_wait(as_tuple);
    }
    co_return true;
  }

  asio::awaitable<bool> acquire_slot() {
    if (in_flight_ < opt_.max_in_flight && waiters_.empty()) {
      ++in_flight_;
      co_return true;
    }
    Waiter w(co_await asio::this_coro::executor);
    w.timer.expires_at(deadline_);
    waiters_.push_back(&w);
    co_await w.timer.async_wait(as_tuple);
    if (!w.granted) std::erase(waiters_, &w);
    co_return w.granted;
  }

  void release_slot() {
    if (!waiters_.empty()) {
      Waiter* next = waiters_.front();
      waiters_.pop_front();
      next->granted = true;
      next->timer.cancel();
      return;
    }
    --in_flight_;
  }

  void finish(RequestRecord& r) {
    ++done_;
    if (!r.ok()) ++failed_;
    if (r.outcome == "timeout" || r.outcome == "not_sent") truncated_ = true;
    if (done_ == records_.size() && progress_timer_) progress_timer_->cancel();
  }

  // Open-loop requests write their request in dispatch order (their `turn`), whatever order
  // their connections complete in, so the target sees them arrive in the seeded order.
  asio::awaitable<void> wait_turn(std::size_t turn) {
    if (turn <= next_turn_) co_return;
    Waiter w(co_await asio::this_coro::executor);
    w.timer.expires_at(deadline_);
    turn_waiters_[turn] = &w;
    co_await w.timer.async_wait(as_tuple);
    turn_waiters_.erase(turn);
  }

  void turn_done(std::size_t turn) {
    turns_done_.insert(turn);
    while (!turns_done_.empty() && *turns_done_.begin() == next_turn_) {
      turns_done_.erase(turns_done_.begin());
      ++next_turn_;
    }
    if (auto it = turn_waiters_.find(next_turn_); it != turn_waiters_.end())
      it->second->timer.cancel();
  }

  // Marks a turn done on every exit path.
  class TurnGuard {
   public:
    TurnGuard(LoadRun& run, std::optional<std::size_t> turn) : run_(run), turn_(turn) {}
    ~TurnGuard() { release(); }
    void release() {
      if (turn_) run_.turn_done(*std::exchange(turn_, std::nullopt));
    }
    TurnGuard(const TurnGuard&) = delete;
    TurnGuard& operator=(const TurnGuard&) = delete;

   private:
    LoadRun& run_;
    std::optional<std::size_t> turn_;
  };

  asio::awaitable<void> dispatch(std::vector<std::pair<std::size_t, std::size_t>> order) {
    for (std::size_t i = 0; i < order.size(); ++i) {
      const auto [u, k] = order[i];
      const auto& pr = plan_.users[u].requests[k];
      if (!co_await wait_until(at(pr.send_at_s))) {
        for (std::size_t j = i; j < order.size(); ++j) {
          auto& r = records_[plan_.users[order[j].first].requests[order[j].second].index];
          r.error = "run deadline (max_duration_s) before it was due";
          turn_done(j);
          finish(r);
        }
        co_return;
      }
      spawn(one_request(u, k, i));
    }
  }

  asio::awaitable<void> closed_loop_user(std::size_t u) {
    const auto& user = plan_.users[u];
    double next_at = s_.groups[user.group].arrival.start_s;
    for (std::size_t k = 0; k < user.requests.size(); ++k) {
      const auto& pr = user.requests[k];
      if (k > 0) next_at = now_s() + pr.think_before_s;
      if (!co_await wait_until(at(next_at))) {
        for (std::size_t j = k; j < user.requests.size(); ++j) {
          auto& r = records_[user.requests[j].index];
          r.error = "run deadline (max_duration_s) before it was due";
          finish(r);
        }
        co_return;
      }
      co_await one_request(u, k, std::nullopt);
    }
  }

  asio::awaitable<void> one_request(std::size_t u, std::size_t k, std::optional<std::size_t> turn) {
    const PlannedUser& user = plan_.users[u];
    const PlannedRequest& pr = user.requests[k];
    RequestRecord& rec = records_[pr.index];
    TurnGuard turn_guard(*this, turn);
    if (!co_await acquire_slot()) {
      rec.error = "run deadline (max_duration_s) while waiting for an in-flight slot";
      finish(rec);
      co_return;
    }
    SlotGuard slot(*this);
    co_await perform(u, pr, rec, turn_guard, turn);
    finish(rec);
  }

  void fail(RequestRecord& rec, const char* step, const boost::system::error_code& ec,
            Clock::time_point sent) {
    const bool timed_out = ec == beast::error::timeout;
    rec.outcome = timed_out ? "timeout" : "transport_error";
    rec.error =
        std::string(step) + ": " +
        (timed_out ? std::string("deadline (request_timeout_s or max_duration_s)") : ec.message());
    rec.latency_s = run_seconds(Clock::now()) - run_seconds(sent);
  }

  asio::awaitable<void> perform(std::size_t u, const PlannedRequest& pr, RequestRecord& rec,
                                TurnGuard& turn_guard, std::optional<std::size_t> turn) {
    const PlannedUser& user = plan_.users[u];
    const Group& group = s_.groups[user.group];
    const std::size_t target_index = u % endpoints_.size();
    const HttpTarget& target = opt_.targets[target_index];
    const tcp::endpoint endpoint = endpoints_[target_index];
    const auto sent = Clock::now();
    rec.sent_s = run_seconds(sent);
    rec.outcome = "transport_error";
    const auto deadline =
        std::min(deadline_, sent + real_duration(s_.request_timeout_s / opt_.time_scale));
    beast::tcp_stream stream(co_await asio::this_coro::executor);

    stream.expires_at(deadline);
    auto [cec] = co_await stream.async_connect(endpoint, as_tuple);
    if (cec) {
      fail(rec, "connect", cec, sent);
      co_return;
    }

    http::request<http::string_body> req{http::verb::post,
                                         target.base_path + std::string(api_path(s_.api)), 11};
    req.set(http::field::host, target.host_header);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/x-ndjson");
    req.set(http::field::user_agent, "sluice-bench/0.1");
    for (const auto& h : user.headers)
      req.set(h.name, h.value);
    req.set("X-Request-Id", rec.request_id);
    req.set("X-Bench-Run", opt_.run_id);
    req.body() = request_body(s_, rec.model, s_.prompt_lists.at(group.prompt_list).at(pr.prompt),
                              pr.num_predict);
    req.prepare_payload();
    if (turn) co_await wait_turn(*turn);
    stream.expires_at(deadline);
    auto [wec, wn] = co_await http::async_write(stream, req, as_tuple);
    turn_guard.release();
    if (wec) {
      fail(rec, "write", wec, sent);
      co_return;
    }

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(boost::none);  // bounded by the deadline; lines by the scanner
    stream.expires_at(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, as_tuple);
    if (hec) {
      fail(rec, "read head", hec, sent);
      co_return;
    }
    const auto& head = parser.get();
    rec.status = head.result_int();
    if (auto it = head.find("X-Sluice-Queue-Ms"); it != head.end()) {
      char* end = nullptr;
      const std::string v(it->value());
      const double ms = std::strtod(v.c_str(), &end);
      if (end != v.c_str() && ms >= 0) rec.queue_s = ms / 1000.0 * opt_.time_scale;
    }
    for (auto [name, field] : {std::pair{"X-Sluice-Eta-Ms", &rec.eta_s},
                               std::pair{"X-Sluice-Eta-Rate-Ms", &rec.eta_rate_s},
                               std::pair{"X-Sluice-Eta-After-Ms", &rec.eta_after_s}}) {
      if (auto it = head.find(name); it != head.end()) {
        char* end = nullptr;
        const std::string v(it->value());
        const double ms = std::strtod(v.c_str(), &end);
        if (end != v.c_str() && ms >= 0) *field = ms / 1000.0 * opt_.time_scale;
      }
    }
    if (auto it = head.find("X-Sluice-Workload"); it != head.end())
      rec.workload = std::string(it->value());

    NdjsonScanner scanner;
    std::string error_body;
    char chunk[16 * 1024];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      stream.expires_at(deadline);
      auto [rec_ec, n] = co_await http::async_read(stream, buffer, parser, as_tuple);
      if (rec_ec == http::error::need_buffer) rec_ec = {};
      const std::size_t got = sizeof chunk - parser.get().body().size;
      if (got > 0) {
        if (!rec.ttft_s) rec.ttft_s = run_seconds(Clock::now()) - rec.sent_s;
        if (rec.status == 200) {
          scanner.feed(std::string_view(chunk, got));
        } else if (error_body.size() < kMaxErrorBodyBytes) {
          error_body.append(chunk, std::min(got, kMaxErrorBodyBytes - error_body.size()));
        }
      }
      if (rec_ec) {
        fail(rec, "read body", rec_ec, sent);
        if (!scanner.error().empty()) rec.error += " (after: " + scanner.error() + ")";
        rec.output_tokens = scanner.output_tokens();
        co_return;
      }
    }
    scanner.finish();
    rec.latency_s = run_seconds(Clock::now()) - rec.sent_s;
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

    if (rec.status != 200) {
      rec.outcome = "http_error";
      rec.error = short_error_text(rec.status, error_body);
      if (auto it = head.find("X-Sluice-Reason"); it != head.end())
        rec.error += " [" + std::string(it->value()) + "]";
      co_return;
    }
    rec.prompt_tokens = scanner.prompt_tokens();
    rec.output_tokens = scanner.output_tokens();
    rec.done_reason = scanner.done_reason();
    if (!scanner.error().empty()) {
      rec.outcome = "stream_error";
      rec.error = scanner.error();
    } else if (!scanner.done()) {
      rec.outcome = "stream_error";
      rec.error = "stream ended without a done:true object";
    } else {
      rec.outcome = "ok";
    }
  }

  // "[after] done 120/250  in flight 130  failed 0  elapsed 12.0 s (120 s simulated)"
  void print_progress(bool final) {
    const double wall = std::chrono::duration<double>(Clock::now() - start_).count();
    char line[256];
    int n = std::snprintf(line, sizeof line, "[%s] done %zu/%zu  in flight %zu", opt_.label.c_str(),
                          done_, records_.size(), in_flight_);
    if (!waiters_.empty() && n > 0 && std::size_t(n) < sizeof line)
      n += std::snprintf(line + n, sizeof line - std::size_t(n), " (+%zu held back)",
                         waiters_.size());
    if (n > 0 && std::size_t(n) < sizeof line)
      n += std::snprintf(line + n, sizeof line - std::size_t(n), "  failed %zu  elapsed %.1f s",
                         failed_, wall);
    if (opt_.time_scale != 1 && n > 0 && std::size_t(n) < sizeof line)
      std::snprintf(line + n, sizeof line - std::size_t(n), " (%.0f s simulated)",
                    wall * opt_.time_scale);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

  asio::awaitable<void> progress() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    progress_timer_ = &timer;
    const auto every = tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
    while (done_ < records_.size() && Clock::now() < deadline_ + std::chrono::seconds(5)) {
      timer.expires_after(every);
      co_await timer.async_wait(as_tuple);
      if (done_ < records_.size()) print_progress(false);
    }
    progress_timer_ = nullptr;
    print_progress(true);
  }

  const Scenario& s_;
  const Plan& plan_;
  const LoadOptions& opt_;
  asio::io_context& ioc_;
  std::vector<tcp::endpoint> endpoints_;
  Clock::time_point start_, deadline_;
  std::vector<RequestRecord> records_;
  std::size_t done_ = 0, failed_ = 0, in_flight_ = 0;
  std::deque<Waiter*> waiters_;
  std::size_t next_turn_ = 0;
  std::set<std::size_t> turns_done_;
  std::map<std::size_t, Waiter*> turn_waiters_;
  asio::steady_timer* progress_timer_ = nullptr;
  bool truncated_ = false;
  bool tty_ = false;
};

}  // namespace

LoadResult run_load(const Scenario& scenario, const Plan& plan, const LoadOptions& options) {
  LoadResult result;
  // Each simulator's clock anchored to ours: its now_ns at the midpoint of a stats round trip.
  const SimAnchors sims = anchor_simulators(options.sim_stats);

  asio::io_context ioc(1);
  tcp::resolver resolver(ioc);
  std::vector<tcp::endpoint> endpoints;
  for (const auto& target : options.targets) {
    boost::system::error_code ec;
    auto found = resolver.resolve(target.host, std::to_string(target.port), ec);
    if (ec || found.empty())
      throw std::runtime_error("cannot resolve " + target.host + ": " + ec.message());
    endpoints.push_back(found.begin()->endpoint());
  }
  if (endpoints.empty()) throw std::invalid_argument("no target");

  LoadRun run(scenario, plan, options, ioc);
  run.start(std::move(endpoints));
  const RunClock run_time = [&run](Clock::time_point t) { return run.run_seconds(t); };
  // Live changes and the limit in force, on the watcher's own thread with blocking calls, so
  // the load's io_context is not slowed by them (it only reads the run's fixed start time).
  LoadWatcher watcher(options, run_time);
  ioc.run();
  watcher.stop();
  result.limits = watcher.take_limits();
  result.notes = watcher.take_notes();
  result.wall_s = std::chrono::duration<double>(Clock::now() - run.started()).count();
  result.records = run.take_records();
  result.truncated = run.truncated();
  collect_upstream(sims, options, run_time, result);
  return result;
}

}  // namespace sluice::bench
