// Adaptive concurrency: one backend's concurrency limit learned from Ollama's own timings.
//
// A pure state machine like the scheduler (no I/O, no clock: `now` is an argument). It is fed
// one sample per finished request and answers with the limit to use from now on.
//
// The signal. Ollama sends response headers only with the first token, and its final object
// says how long loading and prompt evaluation took. What is left of the time to first byte,
//     wait = TTFB - load_duration - prompt_eval_duration - one token interval
// (the whole eval_duration when the answer was not streamed: its head came with its end),
// is time the request spent queued *inside* Ollama (its FIFO semaphore of OLLAMA_NUM_PARALLEL
// slots), where sluice can no longer order it. Part of it is fixed, whatever the load: the
// network, HTTP, tokenizing the prompt. That part is learned where nothing of sluice's can make a
// request wait — requests admitted alone on the backend (level 1): the *alone wait* is the median
// raw wait of the last kAloneWindow of them, and what counts is the excess over it. A request
// "waited" when the excess is above a small share of its service time (prompt evaluation +
// decoding). Without it, a few milliseconds of overhead beside a short service (a fast GPU, short
// answers) look like waits and hold the limit down.
//
// Levels. Each sample is filed under the number of requests in flight on the backend when it
// was admitted, itself included (its level n). A request admitted at level n that did not wait
// shows that the backend ran n at once; one that waited shows it could not. Each level keeps
// its last kLevelWindow samples; a level is *bad* when at least two of them (and at least half)
// waited: one slow sample is noise, two are a pattern. Decode throughput at level n is
// T(n) = n x (median per-stream speed of its samples).
//
// The rules, checked after every sample:
//  * Decrease (quick). The lowest bad level n <= limit sets limit = n - 1, or lower still when
//    the waits say so: by Little's law a backend that runs P at once, holding n, makes each
//    request wait about (n - P) / P of its service, so P ~= n x service / (service + wait)
//    (median over the waiting samples), never below ceil(n / 2) in one step. The level above
//    the new limit is then not probed for the probe backoff (below). After any decrease the new
//    limit's level forgets its samples: they ran beside more requests than it will run.
//  * Per-stream floor. With min_stream_tokens_per_s, a limit whose median per-stream speed is
//    below it (min_samples at the level) is lowered by one, like a failed probe.
//  * Probe up. When the limit is binding (min_samples at level == limit, so demand reached it),
//    none of them waited, and the level above is not backed off: limit + 1, with that level's
//    old samples forgotten. The probe is judged on min_samples samples at the new level, and
//    not before twice their median service time has passed since it began (requests that
//    waited finish last; the first samples alone would never show a wait): one
//    waiting sample, a throughput gain below min_gain over the level below (T(n) < (1 +
//    min_gain) T(n-1): it flattened), or a per-stream speed under the floor reverts it (back by
//    one) and backs the level off; otherwise it is kept and the next probe may follow at once.
//    The gain is measured against T(n-1) as it was when the probe began: the level below later
//    also gets samples of requests that ran partly beside the probe's, and looks worse.
//  * Worth it (latency). A slot that adds throughput also slows every stream when the GPU does
//    not scale (the simulator's curve: the 3rd slot adds 2.9 % tokens/s and makes each stream
//    46 % slower). It pays only when enough requests wait for it. In units of one service time:
//    the request it admits saves about 1/(n-1) (the wait for one of n-1 busy slots), each of the
//    B requests still parked behind it (the sample's backlog, median over the level) saves the
//    throughput gain g = T(n)/T(n-1) - 1 of a wait that is at least a service, and each of the
//    n streams running takes longer by the stretch x = s(n-1)/s(n) - 1 (s: per-stream speed).
//    Level n is worth its last slot when 1/(n-1) + g B >= n x. A probe that is not worth it
//    reverts like a flat one; a kept level that stops being worth it (the burst that justified
//    it drained) steps down by one and is backed off like a failed probe. On a GPU that scales
//    (x ~ 0) every level the waits allow is worth it; on a flat one the limit rises above the
//    knee only while a long queue waits.
//    A level refused as not worth it remembers the gain and stretch it measured, and for
//    max_probe_backoff is probed again only when the backlog at the limit would make it worth
//    it on those figures: under a load that stays short of the queue it needs, a probe would
//    only slow every stream again (and, on a backend that meanwhile shrank, make requests wait
//    inside it) to learn what is known.
//  * Backoff (hysteresis). A level that failed is not probed again for probe_backoff, doubling
//    with each failure of the same level up to max_probe_backoff; it resets when a probe of it
//    succeeds. So a steady state moves by at most one slot, at most once per backoff, and a
//    backend whose parallelism grows is found by the next probe.
//  * The GPU changed. While the level above the limit is backed off or refused, the per-stream
//    speed first seen at the limit is its reference; when the speed there moves by more than
//    kCurveChange from it (a second tenant came or left, another model runs), the backoff and
//    the refusal are forgotten, the limit's samples too, and a probe may follow as soon as the
//    limit is binding again: what held the level back was learned on another curve.
//
// OpenAI-compatible answers carry no durations. Then the wait is estimated from the time to
// first byte alone: TTFB - the median TTFB of the lowest level that has samples (at level 1
// nothing of sluice's runs beside it, so nothing of sluice's makes it wait), and the speed from
// the output tokens (usage.completion_tokens) over the time after the first byte. Coarser: a
// prompt much longer than usual looks like a wait.
//
// What it cannot see: a second tenant's requests that queue in Ollama beside sluice's look like
// a smaller backend (that is the right reaction); a wait caused by a model load of another model
// is in load_duration and not counted; requests whose final object never arrives (errors,
// cancellations) teach nothing.
//
// Bounds: min <= limit <= max <= kMaxAutoConcurrency; memory O(max x kLevelWindow).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/time.hpp"

namespace sluice::core {

/// The largest auto_concurrency.max.
inline constexpr std::int64_t kMaxAutoConcurrency = 1024;
/// Samples remembered per level.
inline constexpr std::size_t kLevelWindow = 4;
/// Raw waits of requests admitted alone remembered for the alone wait (the fixed overhead).
inline constexpr std::size_t kAloneWindow = 8;
/// How far a request's mean concurrency may be from its level for its speed to count there.
inline constexpr double kSpeedLevelSlack = 0.5;
/// A per-stream speed at the limit this far (relative) from the one a level above was backed off
/// at means the GPU changed under it (a second tenant came or left, another model runs): the
/// backoff and a "not worth it" are forgotten and the level may be probed at once.
inline constexpr double kCurveChange = 0.25;

/// Notes (ConcurrencyController::take_notes) kept until taken; older ones are dropped.
inline constexpr std::size_t kMaxNotes = 16;

/// The config's `auto_concurrency` (bounds and the per-stream floor) and the controller's
/// tuning, which the config does not expose.
struct AutoConcurrency {
  std::int64_t min = 1;                ///< >= 1; also the limit it starts at
  std::int64_t max = 32;               ///< >= min, <= kMaxAutoConcurrency
  double min_stream_tokens_per_s = 0;  ///< 0 = no floor

  // Tuning.
  double wait_share = 0.03;  ///< a request waited when wait > wait_share x its service time...
  Duration wait_floor = std::chrono::milliseconds(5);  ///< ...and > wait_floor
  double min_gain = 0.02;                              ///< least throughput gain for one more slot
  std::size_t min_samples = 3;  ///< samples at a level before it is judged (1..kLevelWindow)
  Duration probe_backoff = std::chrono::seconds(60);
  Duration max_probe_backoff = std::chrono::minutes(10);

  friend bool operator==(const AutoConcurrency&, const AutoConcurrency&) = default;
};

/// "" when valid, else a message naming the field (min, max, min_stream_tokens_per_s, ...).
std::string validate(const AutoConcurrency& spec);

/// What one finished request says. Durations absent from the final object are nullopt.
struct ConcurrencySample {
  std::int64_t in_flight = 1;  ///< on the backend when it was admitted, itself included
  /// Requests still parked in sluice's queue that this backend could take, when it was
  /// admitted (in a fleet: the backend's share by slots of each model's parked requests).
  double backlog = 0;
  /// The mean number in flight on the backend over the request's life (0: unknown, taken as
  /// in_flight). Its speed counts for its level only when it ran at about that level (within
  /// kSpeedLevelSlack): a request admitted at 4 that ran mostly alone says nothing of 4 streams.
  double mean_in_flight = 0;
  Duration time_to_first_byte{};  ///< measured by sluice: request sent -> response head
  Duration total{};               ///< measured by sluice: request sent -> response end
  std::optional<Duration> load_duration;
  std::optional<Duration> prompt_eval_duration;
  std::optional<Duration> eval_duration;
  std::int64_t eval_count = 0;  ///< output tokens (final object, or OpenAI usage); 0 = unknown
  /// false ("stream": false): the response head came with the whole answer, so the time to
  /// first byte includes the decoding (eval_duration) instead of one token interval.
  bool streamed = true;
};

/// A change of the limit and why, for the log.
struct LimitChange {
  std::int64_t from = 0;
  std::int64_t to = 0;
  std::string
      reason;  ///< e.g. "requests waited 420 ms inside the backend (p50 of 3 at 4 in flight)"
};

/// For /admin/state.
struct ConcurrencyView {
  std::int64_t limit = 0;
  std::int64_t min = 0;
  std::int64_t max = 0;
  bool probing = false;     ///< the limit was raised and is being judged
  std::string last_change;  ///< the reason of the last change, "" before any
  /// The alone wait subtracted from every native wait (ms; 0 before any request ran alone).
  double alone_wait_ms = 0;
  /// Per level with samples: level, samples, how many waited, median wait (ms), throughput
  /// T(level) in tokens/s (0 when unknown).
  struct Level {
    std::int64_t in_flight = 0;
    std::size_t samples = 0;
    std::size_t waited = 0;
    double median_wait_ms = 0;
    double tokens_per_second = 0;
    double median_backlog = 0;  ///< requests parked when its samples were admitted (median)
  };
  std::vector<Level> levels;
};

class ConcurrencyController {
 public:
  /// Precondition: validate(spec) == "". Starts at spec.min.
  explicit ConcurrencyController(const AutoConcurrency& spec);

  std::int64_t limit() const { return limit_; }
  const AutoConcurrency& spec() const { return spec_; }

  /// New bounds (a reload): the limit is clamped into them; what was learned stays.
  /// Precondition: validate(spec) == "".
  void set_spec(const AutoConcurrency& spec);

  /// Feeds one finished request. Returns the change of the limit it caused, if any.
  std::optional<LimitChange> observe(const ConcurrencySample& sample, Time now);

  /// What the controller decided without changing the limit that an operator should see in the
  /// log, oldest first: the GPU changed under a level held back (so it may be probed again), a
  /// probe held back by a refusal's memory (once per refusal). At most kMaxNotes.
  std::vector<std::string> take_notes();

  ConcurrencyView view() const;

 private:
  struct Observation {
    double wait_s = 0;  ///< raw time waiting inside the backend; < 0: unknown (no durations)
    double ttfb_s = 0;
    double service_s = 0;  ///< prompt evaluation + decoding (or, without durations, total)
    double speed = -1;     ///< per-stream decode tokens/s; < 0 unknown
    double backlog = 0;    ///< ConcurrencySample::backlog
  };
  /// The "worth it" rule for level n against the level below (speeds per stream, > 0).
  struct Worth {
    bool worth = true;
    double gain = 0;     ///< T(n) / T(n-1) - 1
    double stretch = 0;  ///< s(n-1) / s(n) - 1, >= 0
    double backlog = 0;
  };
  struct Level {
    std::array<Observation, kLevelWindow> ring{};
    std::size_t count = 0;  ///< valid entries, <= kLevelWindow
    std::size_t next = 0;
    double known_speed = -1;  ///< median speed of the samples that ran at it, when last known
    /// Its samples (and the speed they gave) are from another time: judged afresh.
    void forget_samples() {
      count = 0;
      next = 0;
      known_speed = -1;
    }
    /// Set when a probe of this level was kept with the speeds known: the gain and stretch it
    /// measured. A level kept for a queue gives its slot back when the queue has gone, judged
    /// on these (the level below's samples may be from another time: another GPU load).
    std::optional<Worth> kept;
    /// Set when this level was found not worth its slot (a probe, or a kept level whose queue
    /// drained): the gain and stretch measured then. Until refused_until it is probed again
    /// only when the backlog at the limit would make it worth it on those figures.
    std::optional<Worth> refused;
    Time refused_until{};
    bool refusal_noted = false;  ///< the note that the refusal holds a probe back was made
    Time backoff_until{};        ///< not probed before this
    Duration backoff{};          ///< the next failure backs off this long (0: probe_backoff)
    /// While backed off or refused: the per-stream speed first seen at the limit below it since
    /// (< 0 not yet); a move beyond kCurveChange from it forgets the backoff and the refusal.
    double backoff_speed = -1;
    /// Nothing holds it back any more (a probe of it was kept, or the GPU changed): no backoff,
    /// the next failure backs off probe_backoff again, no refusal.
    void forgive() {
      backoff_until = Time{};
      backoff = Duration::zero();
      backoff_speed = -1;
      refused.reset();
      refusal_noted = false;
    }
  };
  struct Judgement {
    std::size_t samples = 0;
    std::size_t waited = 0;
    double median_wait_s = 0;  ///< over the samples that waited (all when none did)
    double median_share = 0;   ///< median of service / (service + wait) over waited ones
    /// Median per-stream speed of the samples that ran at the level; when none of the last
    /// kLevelWindow did, the level's last known one (a drained queue's tail runs below its
    /// level); < 0 unknown.
    double speed = -1;
    std::size_t speeds = 0;  ///< samples with a speed (0 when speed is the remembered one)
    double backlog = 0;      ///< median backlog at admission
  };
  static Worth worth(std::int64_t n, double speed, double speed_below, double backlog);
  /// The same judgement from a gain and stretch measured earlier (Level::kept).
  static Worth worth(std::int64_t n, const Worth& measured, double backlog);
  static std::string unworthy_reason(std::int64_t n, const Worth& w);
  /// The note that a refusal's memory holds a probe of n back (Level::refused), for `left` more.
  static std::string held_back_reason(std::int64_t n, const Worth& w, Duration left);

  Judgement judge(std::int64_t n) const;
  bool waited(const Observation& o, double wait) const;
  double reference_ttfb() const;
  double alone_wait() const;
  /// The wait that counts: the excess over the alone wait (native) or over the reference TTFB.
  double excess_wait(const Observation& o, double reference_ttfb, double alone) const;
  double throughput(const Judgement& j, std::int64_t n) const;
  void back_off(std::int64_t n, Time now);
  /// Backs level n off and remembers why it was not worth its slot (Level::refused).
  std::optional<LimitChange> refuse(std::int64_t n, const Worth& w, Time now);
  std::optional<LimitChange> change(std::int64_t to, std::string reason);
  void note(std::string text);

  AutoConcurrency spec_;
  std::int64_t limit_ = 1;
  bool probing_ = false;
  double probe_baseline_ = -1;        ///< throughput at the limit a probe came from; < 0 unknown
  double probe_baseline_speed_ = -1;  ///< its per-stream speed; < 0 unknown
  Time probe_since_{};                ///< when the probe began
  std::string last_change_;
  std::vector<Level> levels_;                 ///< [n] for n in 1..max; [0] unused
  std::array<double, kAloneWindow> alone_{};  ///< raw native waits at level 1 (ring)
  std::size_t alone_count_ = 0;
  std::size_t alone_next_ = 0;
  std::vector<std::string> notes_;  ///< not yet taken, <= kMaxNotes
};

}  // namespace sluice::core
