// A GPU request in sluice-sim: faults, then its model (residency: wait for a place, load, or
// join a load in progress), then a slot (SlotPool), prefill, one token per interval of the
// timing model, and the final object. Also the waits it is made of and the residency pump.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "server_impl.hpp"

namespace sluice::sim {
namespace {

using namespace asio::experimental::awaitable_operators;
using asio::use_awaitable;

constexpr std::size_t kMaxRecordedHeaders = 64;
constexpr std::size_t kMaxRecordedHeaderValue = 512;

}  // namespace

// ---- waiting ----

asio::awaitable<void> SimServer::Impl::sleep_until(std::int64_t sim_ns) {
  asio::steady_timer timer(co_await asio::this_coro::executor, clock.real_at(sim_ns));
  co_await timer.async_wait(use_awaitable);
}

asio::awaitable<void> SimServer::Impl::hang() {
  asio::steady_timer timer(co_await asio::this_coro::executor, cfg.hang_limit);
  co_await timer.async_wait(use_awaitable);
}

asio::awaitable<void> SimServer::Impl::watch_disconnect(Conn& c) {
  auto space = c.buffer.prepare(std::min<std::size_t>(4096, c.buffer.max_size() - c.buffer.size()));
  auto [ec, n] = co_await c.stream.socket().async_read_some(space, asio::as_tuple(use_awaitable));
  if (ec) co_return;
  c.buffer.commit(n);
  asio::steady_timer forever(co_await asio::this_coro::executor,
                             asio::steady_timer::time_point::max());
  co_await forever.async_wait(use_awaitable);
}

// ---- model residency ----

void SimServer::Impl::ModelRef::reset() {
  if (!impl_) return;
  Impl* impl = std::exchange(impl_, nullptr);
  impl->residency.leave(ticket_, impl->clock.now_ns());
  impl->pump_residency();
}

void SimServer::Impl::pump_residency() {
  residency.advance(clock.now_ns());
  for (const auto ticket : residency.take_ready())
    if (auto it = model_waiters.find(ticket); it != model_waiters.end()) it->second->cancel();
  if (stopping) return;
  const auto next = residency.next_deadline();
  if (!next) {
    residency_timer.cancel();
    return;
  }
  // Re-arming cancels the previous wait (its handler sees operation_aborted and returns).
  residency_timer.expires_at(clock.real_at(*next));
  std::weak_ptr<Impl> weak = weak_from_this();
  residency_timer.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->pump_residency();
  });
}

asio::awaitable<SimServer::Impl::ModelRef> SimServer::Impl::await_model(const Job& job) {
  const auto ticket = residency.arrive(job.model_index, job.request.keep_alive_ns, clock.now_ns());
  ModelRef ref(this, ticket);
  pump_residency();
  if (residency.ready(ticket)) co_return std::move(ref);
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  model_waiters[ticket] = &timer;
  struct Unlink {
    Impl& impl;
    Residency::Ticket ticket;
    ~Unlink() { impl.model_waiters.erase(ticket); }
  } unlink{*this, ticket};
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
  if (residency.ready(ticket)) co_return std::move(ref);
  throw boost::system::system_error(asio::error::operation_aborted, "waiting for the model");
}

asio::awaitable<void> SimServer::Impl::wait_loaded(Job& job) {
  ModelRef ref = co_await await_model(job);
  const auto view = residency.ticket(ref.ticket());
  job.record->load_ns =
      view->scheduled_ns().value_or(job.record->arrival_ns) - job.record->arrival_ns;
  job.record->triggered_load = view->triggered_load;
}

// ---- GPU requests ----

Metrics SimServer::Impl::metrics_of(const Record& r, std::int64_t prefill_end,
                                    std::int64_t end) const {
  Metrics m;
  const std::int64_t start = r.start_ns.value_or(r.arrival_ns);
  m.total_ns = end - r.arrival_ns;
  m.load_ns = r.load_ns;
  m.prompt_eval_count = r.prompt_tokens;
  m.prompt_eval_ns = prefill_end - start;
  m.eval_count = r.tokens;
  m.eval_ns = end - prefill_end;
  if (cfg.wall_durations && cfg.time_scale != 1.0) {
    for (std::int64_t* ns : {&m.total_ns, &m.load_ns, &m.prompt_eval_ns, &m.eval_ns})
      *ns = static_cast<std::int64_t>(static_cast<double>(*ns) / cfg.time_scale);
  }
  return m;
}

asio::awaitable<After> SimServer::Impl::mid_stream_fault(Conn& c, Job& job) {
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

asio::awaitable<After> SimServer::Impl::run_gpu(Conn& c, const Request& req, Job& job) {
  Record& rec = *job.record;
  // Ollama's order: the scheduler finds (or loads) the model, then the runner's semaphore.
  ModelRef model_ref = co_await await_model(job);
  const auto view = residency.ticket(model_ref.ticket());
  rec.load_ns = view->scheduled_ns().value_or(rec.arrival_ns) - rec.arrival_ns;
  rec.triggered_load = view->triggered_load;
  rec.model_ready_ns = view->ready_ns;
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
    model_ref.reset();
    co_await write_body(c, req, http::status::ok, complete_content_type(job.route),
                        embedding_body(job.ctx, vectors, m));
    co_return After::keep_alive;
  }

  WordGenerator words(job.seed ^ 0x776f726473ULL);
  std::string text;
  const auto fault_after = job.faults.mid_stream_after();
  for (int i = 0; i < job.planned_tokens; ++i) {
    deadline += model.token_interval(gpu.active + cfg.external_streams).count();
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
    model_ref.reset();
    co_await write_chunk(c, stream_final(job.ctx, job.done_reason, m, wall, job.seed));
    co_await write_last_chunk(c);
    co_return After::keep_alive;
  }
  const std::string body = complete_body(job.ctx, text, job.done_reason, m, wall, job.seed);
  if (!fault_after) {
    log.finish(rec, "completed", end);
    permit.reset();
    model_ref.reset();
    co_await write_body(c, req, http::status::ok, complete_content_type(job.route), body);
    co_return After::keep_alive;
  }
  if (job.faults.error_line) {
    log.finish(rec, "error", end);
    permit.reset();
    model_ref.reset();
    co_await write_error(c, req, job.route, 500, "simulated failure (X-Sim-Fault: error-line)");
    co_return After::keep_alive;
  }
  co_await write_partial(c, req, complete_content_type(job.route), body);
  co_return co_await mid_stream_fault(c, job);
}

Record SimServer::Impl::new_record(const Request& req, const Job& job) {
  Record r;
  r.route = std::string(route_path(job.route));
  r.model = job.request.resolved;
  r.arrival_ns = clock.now_ns();
  r.stream = job.request.stream;
  r.prompt_tokens = job.request.load_only ? 0 : prompt_tokens_for_chars(job.request.prompt_chars);
  r.planned_tokens = is_embedding(job.route) ? 0 : job.planned_tokens;
  r.fault = job.faults.text();
  r.host = std::string(req[http::field::host]);
  r.headers = recorded_headers(req);
  return r;
}

std::vector<std::pair<std::string, std::string>> recorded_headers(const Request& req) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& field : req) {
    if (headers.size() >= kMaxRecordedHeaders) break;
    std::string name(field.name_string());
    for (auto& ch : name)
      ch = char(std::tolower(static_cast<unsigned char>(ch)));
    std::string value(field.value().substr(0, kMaxRecordedHeaderValue));
    headers.emplace_back(std::move(name), std::move(value));
  }
  return headers;
}

asio::awaitable<After> SimServer::Impl::handle_gpu(Conn& c, const Request& req, Route route) {
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
  job.model_index =
      std::size_t(std::find(catalog.names().begin(), catalog.names().end(), sreq.resolved) -
                  catalog.names().begin());

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
    // Ollama loads the model for an empty request (or, with keep_alive 0, unloads it).
    if (sreq.unload) {
      residency.expire(job.model_index, clock.now_ns());
      pump_residency();
    } else {
      auto loaded = co_await (wait_loaded(job) || watch_disconnect(c));
      if (loaded.index() == 1) {
        log.finish(rec, "cancelled", clock.now_ns());
        close(c);
        co_return After::close;
      }
    }
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
  if (cfg.max_queue > 0 && !pool.has_free_slot() && std::size_t(pool.waiting()) >= cfg.max_queue) {
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

}  // namespace sluice::sim
