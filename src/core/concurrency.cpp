// Adaptive concurrency of one backend. See concurrency.hpp for the rules and the reasoning.
#include "sluice/core/concurrency.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace sluice::core {
namespace {

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// "%.*f" without iostreams.
std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string milliseconds(double s) {
  return fixed(s * 1000, s < 0.01 ? 1 : 0) + " ms";
}

}  // namespace

std::string validate(const AutoConcurrency& spec) {
  if (spec.min < 1) return "min must be >= 1";
  if (spec.max > kMaxAutoConcurrency)
    return "max must be <= " + std::to_string(kMaxAutoConcurrency);
  if (spec.max < spec.min) return "max must be >= min (" + std::to_string(spec.min) + ")";
  if (!(spec.min_stream_tokens_per_s >= 0) || !std::isfinite(spec.min_stream_tokens_per_s))
    return "min_stream_tokens_per_s must be a number >= 0";
  if (!(spec.wait_share > 0 && spec.wait_share < 1)) return "wait_share must be in (0, 1)";
  if (spec.wait_floor < Duration::zero()) return "wait_floor must be >= 0";
  if (!(spec.min_gain >= 0) || !std::isfinite(spec.min_gain)) return "min_gain must be >= 0";
  if (spec.min_samples < 1 || spec.min_samples > kLevelWindow)
    return "min_samples must be 1 to " + std::to_string(kLevelWindow);
  if (spec.probe_backoff <= Duration::zero()) return "probe_backoff must be > 0";
  if (spec.max_probe_backoff < spec.probe_backoff)
    return "max_probe_backoff must be >= probe_backoff";
  return "";
}

ConcurrencyController::ConcurrencyController(const AutoConcurrency& spec)
    : spec_(spec), limit_(spec.min), levels_(static_cast<std::size_t>(spec.max) + 1) {}

void ConcurrencyController::set_spec(const AutoConcurrency& spec) {
  spec_ = spec;
  levels_.resize(static_cast<std::size_t>(spec.max) + 1);
  const std::int64_t clamped = std::clamp(limit_, spec.min, spec.max);
  if (clamped != limit_) {
    limit_ = clamped;
    probing_ = false;
  }
}

bool ConcurrencyController::waited(const Observation& o, double wait) const {
  return wait > std::max(seconds(spec_.wait_floor), spec_.wait_share * o.service_s);
}

// The usual raw wait of a request that ran alone: what any request waits whatever the load.
double ConcurrencyController::alone_wait() const {
  return median(std::vector<double>(alone_.begin(), alone_.begin() + alone_count_));
}

double ConcurrencyController::excess_wait(const Observation& o, double reference_ttfb,
                                          double alone) const {
  return std::max(0.0, o.wait_s >= 0 ? o.wait_s - alone : o.ttfb_s - reference_ttfb);
}

// The median TTFB of the lowest level with samples: the baseline of answers without durations.
double ConcurrencyController::reference_ttfb() const {
  for (const Level& level : levels_) {
    if (level.count == 0) continue;
    std::vector<double> ttfb;
    for (std::size_t i = 0; i < level.count; ++i)
      ttfb.push_back(level.ring[i].ttfb_s);
    return median(std::move(ttfb));
  }
  return 0;
}

ConcurrencyController::Judgement ConcurrencyController::judge(std::int64_t n) const {
  Judgement j;
  if (n < 1 || n >= static_cast<std::int64_t>(levels_.size())) return j;
  const Level& level = levels_[static_cast<std::size_t>(n)];
  j.samples = level.count;
  if (level.count == 0) return j;
  double reference = 0;
  bool reference_known = false;
  const double alone = alone_wait();
  std::vector<double> waits, all_waits, shares, speeds, backlogs;
  for (std::size_t i = 0; i < level.count; ++i) {
    const Observation& o = level.ring[i];
    backlogs.push_back(o.backlog);
    if (o.wait_s < 0 && !reference_known) {
      reference = reference_ttfb();
      reference_known = true;
    }
    const double wait = excess_wait(o, reference, alone);
    all_waits.push_back(wait);
    if (waited(o, wait)) {
      ++j.waited;
      waits.push_back(wait);
      // Without durations the service is the total minus the wait.
      const double service = o.wait_s >= 0 ? o.service_s : std::max(o.service_s - wait, 1e-9);
      shares.push_back(service / (service + wait));
    }
    if (o.speed >= 0) speeds.push_back(o.speed);
  }
  j.median_wait_s = median(j.waited > 0 ? waits : all_waits);
  j.median_share = shares.empty() ? 1.0 : median(std::move(shares));
  j.speeds = speeds.size();
  j.speed = speeds.empty() ? level.known_speed : median(std::move(speeds));
  j.backlog = median(std::move(backlogs));
  return j;
}

ConcurrencyController::Worth ConcurrencyController::worth(std::int64_t n, double speed,
                                                          double speed_below, double backlog) {
  Worth w;
  w.backlog = backlog;
  if (n < 2 || speed <= 0 || speed_below <= 0) return w;
  const auto level = static_cast<double>(n);
  w.gain = level * speed / ((level - 1) * speed_below) - 1;
  w.stretch = std::max(0.0, speed_below / speed - 1);
  return worth(n, w, backlog);
}

ConcurrencyController::Worth ConcurrencyController::worth(std::int64_t n, const Worth& measured,
                                                          double backlog) {
  Worth w = measured;
  w.backlog = backlog;
  const auto level = static_cast<double>(n);
  w.worth = n < 2 || 1 / (level - 1) + w.gain * backlog >= level * w.stretch;
  return w;
}

std::string ConcurrencyController::unworthy_reason(std::int64_t n, const Worth& w) {
  std::string reason = "not worth a slot: ";
  reason += std::to_string(n);
  reason += " in flight move ";
  reason += fixed(100 * w.gain, 1);
  reason += "% more tokens/s than ";
  reason += std::to_string(n - 1);
  reason += " and make each stream take ";
  reason += fixed(100 * w.stretch, 0);
  reason += "% longer, with ";
  reason += fixed(w.backlog, w.backlog < 10 && w.backlog != std::floor(w.backlog) ? 1 : 0);
  reason += " requests waiting (p50)";
  return reason;
}

std::string ConcurrencyController::held_back_reason(std::int64_t n, const Worth& w, Duration left) {
  std::string text = "not probing ";
  text += std::to_string(n);
  text += ": found not worth a slot (";
  text += fixed(100 * w.gain, 1);
  text += "% more tokens/s than ";
  text += std::to_string(n - 1);
  text += ", each stream ";
  text += fixed(100 * w.stretch, 0);
  text += "% longer), and ";
  text += fixed(w.backlog, w.backlog < 10 && w.backlog != std::floor(w.backlog) ? 1 : 0);
  text += " requests waiting (p50) do not make it so";
  // 1/(n-1) + g B >= n x: the backlog B that would.
  const auto level = static_cast<double>(n);
  if (w.gain > 0) {
    text += " (about ";
    text += fixed(std::ceil((level * w.stretch - 1 / (level - 1)) / w.gain), 0);
    text += " would)";
  } else {
    text += " (no queue would: it adds no throughput)";
  }
  text += "; probed again only for such a queue for the next ";
  text += fixed(std::ceil(seconds(left)), 0);
  text += " s";
  return text;
}

double ConcurrencyController::throughput(const Judgement& j, std::int64_t n) const {
  return j.speed < 0 ? -1 : static_cast<double>(n) * j.speed;
}

void ConcurrencyController::back_off(std::int64_t n, Time now) {
  if (n < 1 || n >= static_cast<std::int64_t>(levels_.size())) return;
  Level& level = levels_[static_cast<std::size_t>(n)];
  level.backoff = level.backoff == Duration::zero()
                      ? spec_.probe_backoff
                      : std::min(2 * level.backoff, spec_.max_probe_backoff);
  level.backoff_until = now + level.backoff;
  level.backoff_speed = -1;  // learned from the samples at the limit below it (observe())
}

std::optional<LimitChange> ConcurrencyController::refuse(std::int64_t n, const Worth& w, Time now) {
  back_off(n, now);
  Level& level = levels_[static_cast<std::size_t>(n)];
  level.refused = w;
  level.refused_until = now + spec_.max_probe_backoff;
  level.refusal_noted = false;
  return change(n - 1, unworthy_reason(n, w));
}

std::optional<LimitChange> ConcurrencyController::change(std::int64_t to, std::string reason) {
  to = std::clamp(to, spec_.min, spec_.max);
  if (to == limit_) return std::nullopt;
  if (to < limit_) {
    // What the new limit's level remembers ran beside more requests than it will: judged afresh
    // (its `kept` stays: the gain and stretch are the GPU's).
    levels_[static_cast<std::size_t>(to)].forget_samples();
  }
  LimitChange c{.from = limit_, .to = to, .reason = std::move(reason)};
  limit_ = to;
  last_change_ = c.reason;
  return c;
}

void ConcurrencyController::note(std::string text) {
  if (notes_.size() >= kMaxNotes) notes_.erase(notes_.begin());
  notes_.push_back(std::move(text));
}

std::vector<std::string> ConcurrencyController::take_notes() {
  return std::exchange(notes_, {});
}

std::optional<LimitChange> ConcurrencyController::observe(const ConcurrencySample& sample,
                                                          Time now) {
  // --- the sample -------------------------------------------------------------------------
  Observation o;
  o.ttfb_s = std::max(0.0, seconds(sample.time_to_first_byte));
  const bool native = sample.load_duration || sample.prompt_eval_duration || sample.eval_duration;
  if (native) {
    const double load = sample.load_duration ? seconds(*sample.load_duration) : 0;
    const double prompt = sample.prompt_eval_duration ? seconds(*sample.prompt_eval_duration) : 0;
    const double decode = sample.eval_duration ? seconds(*sample.eval_duration) : 0;
    const double interval =
        sample.eval_count > 0 ? decode / static_cast<double>(sample.eval_count) : 0;
    o.wait_s = std::max(0.0, o.ttfb_s - load - prompt - (sample.streamed ? interval : decode));
    o.service_s = prompt + decode;
    if (o.service_s <= 0) o.service_s = std::max(0.0, seconds(sample.total) - load - o.wait_s);
    if (sample.eval_count > 0 && decode > 0)
      o.speed = static_cast<double>(sample.eval_count) / decode;
  } else {
    o.wait_s = -1;
    o.service_s = std::max(seconds(sample.total), o.ttfb_s);
    const double after_first = seconds(sample.total) - o.ttfb_s;
    if (sample.eval_count > 0 && after_first > 0)
      o.speed = static_cast<double>(sample.eval_count) / after_first;
  }
  o.backlog = std::isfinite(sample.backlog) ? std::max(0.0, sample.backlog) : 0;
  const std::int64_t n = std::clamp<std::int64_t>(sample.in_flight, 1, spec_.max);
  if (sample.mean_in_flight > 0 &&
      std::abs(sample.mean_in_flight - static_cast<double>(n)) > kSpeedLevelSlack)
    o.speed = -1;  // it did not run at its level for most of its life
  if (n == 1 && o.wait_s >= 0) {
    alone_[alone_next_] = o.wait_s;
    alone_next_ = (alone_next_ + 1) % kAloneWindow;
    alone_count_ = std::min(alone_count_ + 1, kAloneWindow);
  }
  Level& filed = levels_[static_cast<std::size_t>(n)];
  filed.ring[filed.next] = o;
  filed.next = (filed.next + 1) % kLevelWindow;
  filed.count = std::min(filed.count + 1, kLevelWindow);
  if (o.speed >= 0) {
    std::vector<double> speeds;
    for (std::size_t i = 0; i < filed.count; ++i)
      if (filed.ring[i].speed >= 0) speeds.push_back(filed.ring[i].speed);
    filed.known_speed = median(std::move(speeds));
  }

  const double floor = spec_.min_stream_tokens_per_s;
  const auto below_floor = [&](const Judgement& j) {
    return floor > 0 && j.speed >= 0 && j.speed < floor;
  };

  // --- decrease: the lowest level at or under the limit where requests wait ------------------
  for (std::int64_t level = 1; level <= limit_; ++level) {
    const Judgement j = judge(level);
    const bool probe_failed = probing_ && level == limit_ && j.waited >= 1;
    const bool bad = j.waited >= 2 && 2 * j.waited >= j.samples;
    if (!bad && !probe_failed) continue;
    // A failed probe goes back to where it came from; a pattern of waits may go further.
    const auto little =
        static_cast<std::int64_t>(std::floor(static_cast<double>(level) * j.median_share + 0.5));
    const std::int64_t target =
        bad ? std::max(spec_.min, std::min(level - 1, std::max(little, (level + 1) / 2)))
            : std::max(spec_.min, level - 1);
    if (target >= limit_) continue;  // at the minimum already
    probing_ = false;
    back_off(target + 1, now);
    std::string reason = "requests admitted at ";
    reason += std::to_string(level);
    reason += " in flight waited ";
    reason += milliseconds(j.median_wait_s);
    reason += " inside the backend (p50 of ";
    reason += std::to_string(j.waited);
    reason += " of ";
    reason += std::to_string(j.samples);
    reason += " samples; ";
    reason += fixed(100 * (1 / j.median_share - 1), 0);
    reason += "% of their service time";
    if (const double alone = alone_wait(); alone > 0) {
      reason += ", beyond the ";
      reason += milliseconds(alone);
      reason += " a request waits alone";
    }
    reason += ")";
    return change(target, std::move(reason));
  }

  const Judgement at_limit = judge(limit_);
  if (at_limit.samples < spec_.min_samples) return std::nullopt;

  // --- a probe's verdict, or the per-stream floor ---------------------------------------------
  if (below_floor(at_limit) && limit_ > spec_.min) {
    probing_ = false;
    back_off(limit_, now);
    std::string reason = "per-stream speed ";
    reason += fixed(at_limit.speed, 1);
    reason += " tokens/s at ";
    reason += std::to_string(limit_);
    reason += " in flight is below min_stream_tokens_per_s (";
    reason += fixed(floor, 1);
    reason += ")";
    return change(limit_ - 1, std::move(reason));
  }
  if (probing_) {
    // Not before the requests admitted at the new level that waited could have finished: they
    // finish last (a wait of up to one service more), and judging on the first ones only would
    // see none of them.
    std::vector<double> services;
    const Level& probed = levels_[static_cast<std::size_t>(limit_)];
    for (std::size_t i = 0; i < probed.count; ++i)
      services.push_back(probed.ring[i].service_s);
    const auto settle = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(2 * median(std::move(services))));
    if (now < probe_since_ + settle) return std::nullopt;
    // Nor before the new level's speed is known (two samples that ran at it), if the old one's
    // was: the gain and the streams' slowdown are what the probe is for.
    if (probe_baseline_speed_ > 0 && at_limit.speeds < 2) return std::nullopt;
    // Against the throughput measured before the probe: the level below also gets the samples
    // of requests that ran partly beside the probe's, which makes it look worse than it was.
    const double gained = throughput(at_limit, limit_);
    const double before = probe_baseline_;
    probing_ = false;
    if (gained >= 0 && before > 0 && gained < before * (1 + spec_.min_gain)) {
      back_off(limit_, now);
      std::string reason = "throughput flat: ";
      reason += fixed(gained, 1);
      reason += " tokens/s at ";
      reason += std::to_string(limit_);
      reason += " in flight, ";
      reason += fixed(before, 1);
      reason += " at ";
      reason += std::to_string(limit_ - 1);
      reason += " (";
      reason += fixed(100 * (gained / before - 1), 1);
      reason += "%, less than ";
      reason += fixed(100 * spec_.min_gain, 1);
      reason += "%)";
      return change(limit_ - 1, std::move(reason));
    }
    // More tokens/s, but for whom? Not worth the slower streams without a queue to drain.
    if (const Worth w = worth(limit_, at_limit.speed, probe_baseline_speed_, at_limit.backlog);
        !w.worth) {
      return refuse(limit_, w, now);
    }
    // Kept: this level is good, its backoff starts over.
    Level& kept = levels_[static_cast<std::size_t>(limit_)];
    kept.forgive();
    if (at_limit.speed > 0 && probe_baseline_speed_ > 0)
      kept.kept = worth(limit_, at_limit.speed, probe_baseline_speed_, at_limit.backlog);
  } else if (const auto& kept = levels_[static_cast<std::size_t>(limit_)].kept;
             kept && limit_ > spec_.min) {
    // A level kept while a queue justified it steps down once the queue is gone.
    if (const Worth w = worth(limit_, *kept, at_limit.backlog); !w.worth)
      return refuse(limit_, w, now);
  }

  // --- probe up ---------------------------------------------------------------------------------
  if (limit_ >= spec_.max || at_limit.waited > 0) return std::nullopt;
  Level& next = levels_[static_cast<std::size_t>(limit_ + 1)];
  // Held back (backed off, or not worth it): on the curve of the streams at the limit since.
  // When that curve moves, the GPU changed (a second tenant came or left): the level above is
  // judged afresh, by a probe from a baseline measured wholly on the new curve.
  if ((now < next.backoff_until || next.refused) && at_limit.speeds >= 2) {
    if (next.backoff_speed < 0) {
      next.backoff_speed = at_limit.speed;
    } else if (const double moved = at_limit.speed / next.backoff_speed - 1;
               std::abs(moved) > kCurveChange) {
      std::string text = "the GPU changed: per-stream speed at ";
      text += std::to_string(limit_);
      text += " in flight is ";
      text += fixed(at_limit.speed, 1);
      text += " tokens/s, ";
      text += fixed(100 * std::abs(moved), 0);
      text += moved < 0 ? "% slower" : "% faster";
      text += " than the ";
      text += fixed(next.backoff_speed, 1);
      text += " seen since ";
      text += std::to_string(limit_ + 1);
      text += " was held back; ";
      text += std::to_string(limit_ + 1);
      text += " will be probed again on the new speed";
      note(std::move(text));
      next.forgive();
      levels_[static_cast<std::size_t>(limit_)].forget_samples();
      return std::nullopt;
    }
  }
  if (now < next.backoff_until) return std::nullopt;
  // Found not worth its slot lately: probed again only for a queue that would make it worth it.
  if (next.refused && now < next.refused_until) {
    const Worth w = worth(limit_ + 1, *next.refused, at_limit.backlog);
    if (!w.worth) {
      if (!next.refusal_noted) {
        next.refusal_noted = true;
        note(held_back_reason(limit_ + 1, w, next.refused_until - now));
      }
      return std::nullopt;
    }
  }
  next.forget_samples();
  next.kept.reset();
  probing_ = true;
  probe_since_ = now;
  probe_baseline_ = throughput(at_limit, limit_);
  probe_baseline_speed_ = at_limit.speed;
  std::string reason = "probing: no request waited at ";
  reason += std::to_string(limit_);
  reason += " in flight (";
  reason += std::to_string(at_limit.samples);
  reason += " samples";
  if (const double t = throughput(at_limit, limit_); t >= 0) {
    reason += ", ";
    reason += fixed(t, 1);
    reason += " tokens/s";
  }
  reason += ")";
  return change(limit_ + 1, std::move(reason));
}

ConcurrencyView ConcurrencyController::view() const {
  ConcurrencyView v;
  v.limit = limit_;
  v.min = spec_.min;
  v.max = spec_.max;
  v.probing = probing_;
  v.last_change = last_change_;
  v.alone_wait_ms = alone_wait() * 1000;
  for (std::int64_t n = 1; n < static_cast<std::int64_t>(levels_.size()); ++n) {
    const Judgement j = judge(n);
    if (j.samples == 0) continue;
    const double t = throughput(j, n);
    v.levels.push_back({.in_flight = n,
                        .samples = j.samples,
                        .waited = j.waited,
                        .median_wait_ms = j.median_wait_s * 1000,
                        .tokens_per_second = t < 0 ? 0 : t,
                        .median_backlog = j.backlog});
  }
  return v;
}

}  // namespace sluice::core
