// The load generator (see include/sluice/bench/load.hpp).
//
// Shape: one io_context on the calling thread. A dispatcher coroutine walks the burst and
// Poisson requests in due order and spawns one coroutine per request when it is due; each
// closed-loop user is one coroutine that sends, waits for the answer, thinks, and sends again.
// A request coroutine takes an in-flight slot (FIFO hand-off, so no request is overtaken while
// waiting), connects, writes, and reads the response head and then the body chunk by chunk into a
// fixed buffer (buffer_body), feeding the NDJSON scanner.
//
// Invariants: every planned request gets exactly one record with an outcome; every network
// operation runs under the request's absolute deadline (min(send + request timeout, run
// deadline)), so the run ends by max_duration_s whatever the target does; a slot taken is
// released exactly once (RAII guard); the records vector is sized once and never reallocated
// while coroutines hold references into it.
#include "sluice/bench/load.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
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
#include <thread>

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
constexpr std::size_t kMaxStatsBytes = 256 * 1024 * 1024;

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

// A GET on its own io_context (before and after the run): status and body, or why not.
struct GetResult {
  int status = 0;
  std::string body;
  std::string error;
  Clock::time_point sent, received;
};

// A GET, or a POST of a JSON body when `post_body` is given.
GetResult http_get(const HttpTarget& target, const std::string& path, std::chrono::seconds timeout,
                   const std::string* post_body = nullptr) {
  GetResult result;
  asio::io_context ioc(1);
  auto op = [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(target.host, std::to_string(target.port), as_tuple);
    if (rec) {
      result.error = "resolve " + target.host + ": " + rec.message();
      co_return;
    }
    beast::tcp_stream stream(ex);
    stream.expires_after(timeout);
    auto [cec, ep] = co_await stream.async_connect(endpoints, as_tuple);
    if (cec) {
      result.error = "connect " + target.to_string() + ": " + cec.message();
      co_return;
    }
    http::request<http::string_body> req{post_body ? http::verb::post : http::verb::get,
                                         target.base_path + path, 11};
    req.set(http::field::host, target.host_header);
    req.set(http::field::user_agent, "sluice-bench");
    if (post_body) {
      req.set(http::field::content_type, "application/json");
      req.body() = *post_body;
      req.prepare_payload();
    }
    result.sent = Clock::now();
    stream.expires_after(timeout);
    auto [wec, wn] = co_await http::async_write(stream, req, as_tuple);
    if (wec) {
      result.error = "write: " + wec.message();
      co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxStatsBytes);
    stream.expires_after(timeout);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, as_tuple);
    result.received = Clock::now();
    if (hec) {
      result.error = "read: " + hec.message();
      co_return;
    }
    stream.expires_after(timeout);
    auto [bec, bn] = co_await http::async_read(stream, buffer, parser, as_tuple);
    if (bec) {
      result.error = "read: " + bec.message();
      co_return;
    }
    result.status = parser.get().result_int();
    result.body = std::move(parser.get().body());
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  };
  asio::co_spawn(ioc, op(), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      result.error = ex.what();
    }
  });
  ioc.run();
  return result;
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

std::optional<double> probe_time_scale(const std::vector<HttpTarget>& stats, std::string* why) {
  std::optional<double> scale;
  for (const auto& target : stats) {
    const auto got = http_get(target, "/sim/stats?limit=0", std::chrono::seconds(10));
    if (!got.error.empty() || got.status != 200) {
      if (why)
        *why = target.to_string() + ": " +
               (got.error.empty() ? "HTTP " + std::to_string(got.status) : got.error);
      return std::nullopt;
    }
    const auto parsed = parse_sim_stats(got.body, "", why);
    if (!parsed) return std::nullopt;
    if (scale && std::abs(*scale - parsed->time_scale) > 1e-9) {
      if (why)
        *why = "the simulators run at different time scales (" + std::to_string(*scale) + " and " +
               std::to_string(parsed->time_scale) + ")";
      return std::nullopt;
    }
    scale = parsed->time_scale;
  }
  if (!scale && why) *why = "no simulator given";
  return scale;
}

LoadResult run_load(const Scenario& scenario, const Plan& plan, const LoadOptions& options) {
  LoadResult result;

  // Anchor each simulator's clock to ours: its now_ns at the midpoint of a stats round trip.
  struct Anchor {
    SimStats before;
    Clock::time_point wall{};
  };
  std::vector<Anchor> anchors;
  std::string stats_note;
  for (const auto& target : options.sim_stats) {
    const auto got = http_get(target, "/sim/stats?limit=1", std::chrono::seconds(10));
    std::optional<SimStats> before;
    if (got.error.empty() && got.status == 200) {
      before = parse_sim_stats(got.body, "", &stats_note);
    } else {
      stats_note = "GET " + target.to_string() + "/sim/stats: " +
                   (got.error.empty() ? "HTTP " + std::to_string(got.status) : got.error);
    }
    if (!before) {
      anchors.clear();
      break;
    }
    anchors.push_back({*before, got.sent + (got.received - got.sent) / 2});
  }
  if (options.sim_stats.empty()) stats_note = "no --sim-stats given";

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
  // The watcher: live changes at their time, and the limit sluice has in force. Its own thread
  // with blocking calls, so the load's io_context is not slowed by it; it only reads the run's
  // start time (fixed before it starts) and writes what it owns until it is joined.
  std::atomic<bool> stop_watch{false};
  std::vector<LimitPoint> limits;
  std::vector<std::string> watch_notes;
  std::thread watcher;
  if (options.watch_state || !options.live_changes.empty()) {
    watcher = std::thread([&] {
      std::size_t next_change = 0;
      std::optional<long> last;
      std::string why;
      while (!stop_watch) {
        const double now_s = run.run_seconds(Clock::now());
        while (next_change < options.live_changes.size() &&
               options.live_changes[next_change].at_s <= now_s) {
          const LiveChange& change = options.live_changes[next_change++];
          std::string note = "live change at " + format_number(now_s) + " s: " + change.body;
          if (options.sim_stats.empty()) {
            note += " not applied: no --sim-stats";
          } else {
            const auto got = http_get(options.sim_stats[0], "/sim/config", std::chrono::seconds(5),
                                      &change.body);
            if (!got.error.empty() || got.status != 200)
              note += " failed: " + (got.error.empty() ? got.body : got.error);
          }
          watch_notes.push_back(std::move(note));
        }
        if (options.watch_state) {
          const auto got = http_get(*options.watch_state, "/admin/state", std::chrono::seconds(5));
          std::optional<long> limit;
          if (got.error.empty() && got.status == 200) limit = parse_state_limit(got.body, &why);
          if (limit && limit != last) {
            limits.push_back({run.run_seconds(got.sent + (got.received - got.sent) / 2), *limit});
            last = limit;
          } else if (!limit && why.empty()) {
            why = got.error.empty() ? "HTTP " + std::to_string(got.status) : got.error;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(options.watch_interval_ms));
      }
      if (options.watch_state && limits.empty())
        watch_notes.push_back("GET /admin/state gave no limit: " + why);
    });
  }
  ioc.run();
  stop_watch = true;
  if (watcher.joinable()) watcher.join();
  result.limits = std::move(limits);
  result.notes = std::move(watch_notes);
  result.wall_s = std::chrono::duration<double>(Clock::now() - run.started()).count();
  result.records = run.take_records();
  result.truncated = run.truncated();

  std::vector<UpstreamObservation> observed;
  std::string scale_note;
  for (std::size_t i = 0; i < anchors.size(); ++i) {
    const auto& target = options.sim_stats[i];
    const auto& before = anchors[i].before;
    const auto since = "/sim/stats?since=" + std::to_string(before.last_id);
    const auto got = http_get(target, since, std::chrono::seconds(30));
    std::optional<SimStats> after;
    if (got.error.empty() && got.status == 200) {
      after = parse_sim_stats(got.body, options.run_id, &stats_note);
    } else {
      stats_note = "GET " + target.to_string() + "/sim/stats after the run: " +
                   (got.error.empty() ? "HTTP " + std::to_string(got.status) : got.error);
    }
    if (!after) {
      observed.clear();
      break;
    }
    UpstreamObservation o;
    o.target = target.to_string();
    o.intervals = to_run_time(*after, before.now_ns, run.run_seconds(anchors[i].wall));
    result.intervals.insert(result.intervals.end(), o.intervals.begin(), o.intervals.end());
    if (before.loads && after->loads && *after->loads >= *before.loads) {
      o.model_loads = *after->loads - *before.loads;
      o.load_s = double(after->load_ns_total.value_or(0) - before.load_ns_total.value_or(0)) / 1e9;
    }
    if (std::abs(after->time_scale - options.time_scale) > 1e-9)
      scale_note = "the simulator's time scale (" + std::to_string(after->time_scale) +
                   ") differs from --time-scale";
    observed.push_back(std::move(o));
  }
  if (!observed.empty()) {
    result.upstream = upstream_usage(result.records, observed);
    result.upstream.note = scale_note;
    return result;
  }
  result.upstream.available = false;
  result.upstream.note = stats_note;
  return result;
}

}  // namespace sluice::bench
