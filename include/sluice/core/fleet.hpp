// Placement across a fleet of backends: which Ollama a request for a model should run on.
//
// A pure state machine like the scheduler (no I/O, no clock: `now` is an argument). The I/O
// layer feeds it what it observes — health, each backend's model list (/api/tags), what is
// resident (/api/ps), the timings in each finished request's final object — and the scheduler
// asks it, for the request that fair order puts next, where that request should go now.
//
// Eligibility. A request for model M is eligible for the backends that are up and serve M (M
// is in their static `models` list, or in their discovered /api/tags; a backend whose catalog is
// not known yet serves every model). Model names that no backend lists share one id,
// kUnlistedModel, eligible only for backends with an unknown catalog, so a client cannot grow
// the fleet's memory by inventing model names.
//
// Choice by expected finish. Among eligible backends with a free slot, the one where the
// request is expected to finish first:
//     service(b) x (1 + in_flight(b) / max_concurrency(b))        the backend's speed and load
//   + load(b, M)                        when M is not resident on b (learned from load_duration)
//   + load(b, V)                        when loading M evicts a model V that parked requests
//                                       need and no other backend holds resident
//   + service(b)                        when b is full of models that are all busy: Ollama
//                                       makes the load wait until one of them goes idle
// Ties go to the less utilised backend, then to the earlier one in the configuration.
//
// Staying warm. When the best backend with a free slot would have to load M while another
// eligible backend holds M resident but is full, the request waits for a warm slot:
//  * at least as long as the load would take (until `waiting_since + load(b, M)`): waiting up
//    to the price of the alternative before paying it is the classic rent-or-buy rule, so a
//    short burst never loads a model that a warm slot would have served sooner;
//  * after that, it goes cold on a free backend only where the load is worth it: where nothing
//    parked is warm (the slot would idle otherwise), or where the copy of M lowers the fleet's
//    congestion (congestion.hpp: the most demand per slot that some set of models forces on
//    the backends holding them, counting the model the load evicts) by at least a fifth.
//    Otherwise it is judged again when the demand or the fleet changes, or a load time later.
// Under a standing queue almost every request has waited a load time, so the first rule alone
// would load a model wherever its turn came (thrashing); the second keeps each model where it
// is hot and adds a copy only when its share of the demand outgrows the slots that hold it.
// The scheduler places warm requests meanwhile (work conservation: a slot stays idle only while
// every request eligible for it is waiting this way).
//
// Waiting for a faster slot (faster_slot(), fleet_finish.cpp). A free slot on a slow backend
// can finish a request later than the next slot of a busy fast one: faster_slot() names the
// busy backend, warm for the model like the free one, whose streams decode at least 1.5x as
// fast and whose next slot (the expected end of its requests in flight, admit()) plus the
// expected finish there beats the free backend's by at least a fifth, and only while the
// request has waited less than the free backend would take to serve it (rent-or-buy again).
// The scheduler uses it to let a lower-priority request take the slow slot meanwhile; it never
// lets the slot idle for it (scheduler.hpp, "a faster slot").
//
// Residency. A backend's resident models are what /api/ps last said, plus what sluice placed
// since (a placed model is resident from the moment it is sent: Ollama loads it once and makes
// the others wait). A backend holds at most `resident_capacity` models, learned as the most
// its /api/ps ever listed at once; a load beyond that evicts the least recently used idle one,
// as Ollama does, and when every resident model is busy the load waits for the first of them
// to go idle and evicts that one (until then the backend counts one model too many).
//
// Bounds: at most kMaxBackends backends (a mask per model), kMaxModels model names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/core/concurrency.hpp"
#include "sluice/core/health.hpp"
#include "sluice/core/time.hpp"

namespace sluice::core {

inline constexpr std::size_t kMaxBackends = 64;
inline constexpr std::size_t kMaxModels = 4096;
/// The load time assumed for a model on a backend before any load of it was observed there
/// (default of the config's fleet.load_time).
inline constexpr Duration kDefaultLoadTime = std::chrono::seconds(5);
/// A request whose load_duration is at least this loaded its model (a warm model reports a few
/// milliseconds). Default of the config's fleet.load_threshold.
inline constexpr Duration kLoadSeen = std::chrono::milliseconds(250);
/// Decode speed assumed for a backend before its first timed response, tokens per second.
inline constexpr double kDefaultTokensPerSecond = 30.0;

/// Index of a backend in the fleet, stable across reconfigure() (a removed backend keeps its
/// index until its last request ends; a new one takes a free index).
using BackendId = std::uint32_t;
/// A model name interned by the fleet; kUnlistedModel stands for every name nobody lists.
using ModelId = std::uint32_t;
inline constexpr ModelId kUnlistedModel = 0;
/// A set of backends, bit b = backend b.
using BackendSet = std::uint64_t;
/// The set holding backend b alone.
constexpr BackendSet backend_bit(BackendId b) {
  return BackendSet{1} << b;
}

struct BackendSpec {
  std::string name;
  std::int64_t max_concurrency = 1;  ///< >= 1; with auto_concurrency, where it starts
  /// `"max_concurrency": "auto"`: the limit is learned (concurrency.hpp), within these bounds.
  std::optional<AutoConcurrency> auto_concurrency;
  /// Static catalog; empty = discovered (set_catalog()); unknown until then.
  std::vector<std::string> models;
};

/// Ollama's spelling of a model name: a name without a tag means ":latest" ("mistral" and
/// "mistral:latest" are one model).
std::string canonical_model(std::string_view name);

/// Returns "" when the specs are valid, else a message naming the backend and field.
std::string validate(std::span<const BackendSpec> backends);

/// What the final object of a finished request said (absent fields: nullopt / 0), and what
/// sluice measured of it.
struct Timings {
  std::optional<Duration> load_duration;
  std::int64_t eval_count = 0;  ///< also OpenAI's usage.completion_tokens (then no durations)
  std::optional<Duration> eval_duration;
  std::optional<Duration> prompt_eval_duration;
  // Measured by sluice (the adaptive limit's signal), not in the final object:
  std::optional<Duration> time_to_first_byte;  ///< request sent upstream -> response head
  std::optional<Duration> response_time;       ///< request sent upstream -> response end
  bool streamed = true;  ///< false: "stream": false, the head came with the whole answer
};

struct Placement {
  enum class Kind : std::uint8_t {
    place,      ///< run on `backend` now
    full,       ///< eligible backends are up, none has a free slot
    wait_warm,  ///< free slots exist only where the model must load; retry at `until`
    /// A busy `backend` finishes it sooner than the free slot does; the scheduler lets work of
    /// lower priority have the free slot first (never returned by Fleet::choose()).
    wait_faster,
    down,      ///< backends serve the model, none of them is up
    unserved,  ///< no backend serves the model
  };
  Kind kind = Kind::unserved;
  BackendId backend = 0;
  Time until{};
};

struct ResidentView {
  std::string model;
  std::int64_t in_flight = 0;
};

/// A load time the fleet learned for a model on a backend (from load_duration).
struct LoadTimeView {
  std::string model;
  Duration load_time{};
};

struct BackendView {
  BackendId id = 0;
  std::string name;
  bool up = false;
  bool retired = false;  ///< removed by reconfigure(), finishing its requests
  std::int64_t in_flight = 0;
  std::int64_t max_concurrency = 0;
  bool catalog_known = false;
  std::vector<std::string> models;   ///< its catalog (static or discovered)
  std::vector<ResidentView> loaded;  ///< resident now, most recently used first
  std::size_t resident_capacity = 0;
  double tokens_per_second = 0;          ///< per stream, smoothed
  bool speed_known = false;              ///< false: tokens_per_second is kDefaultTokensPerSecond
  std::vector<LoadTimeView> load_times;  ///< learned ones only, by model name
  /// Requests that let a free slot elsewhere go to lower-priority work, waited for a faster
  /// one (Fleet::faster_slot) and then ran here, since the backend was added.
  std::uint64_t faster_slot_waits = 0;
  /// With `"max_concurrency": "auto"`: the controller's state (max_concurrency is its limit).
  std::optional<ConcurrencyView> auto_concurrency;

  // Filled in by the network layer (net::Proxy::snapshot()), not by the Fleet:
  std::optional<HealthView> health;  ///< a configured fleet's health checks; nullopt otherwise
  std::uint64_t requests = 0;        ///< requests sent to it since it was added
};

class Fleet {
 public:
  /// Precondition: validate(backends) == "".
  explicit Fleet(std::span<const BackendSpec> backends);

  /// Applies new specs, matched by name: new backends are added (down until set_up()), removed
  /// ones retire (no new placements; their running requests finish), the others take the new
  /// max_concurrency and static catalog. Returns "" or why nothing changed.
  std::string reconfigure(std::span<const BackendSpec> backends);

  /// The id of a model name; kUnlistedModel when no backend lists it.
  ModelId model(std::string_view name) const;
  const std::string& model_name(ModelId m) const;
  /// The id a request for `name` waits and runs under: its model's when a catalog lists it;
  /// while some backend's catalog is not known yet (it may serve the name), the name's own
  /// (interned, within kMaxModels), so the request follows the catalogs when they arrive; else
  /// (and for "", no model named) kUnlistedModel.
  ModelId request_model(std::string_view name);

  /// Where a request for `m` should go now (see the header comment). `cost` in tokens;
  /// `waiting_since` is when it arrived; backends in `exclude` are not considered (a retry
  /// elsewhere). O(backends).
  Placement choose(ModelId m, std::int64_t cost, Time waiting_since, Time now,
                   BackendSet exclude = 0) const;

  /// Model-aware placement (the default) or, when off, the least utilised eligible backend
  /// with a free slot whatever is resident, never waiting for a warm one (for comparison).
  void set_model_aware(bool on) { model_aware_ = on; }
  bool model_aware() const { return model_aware_; }
  /// `assumed`: the load time of a model on a backend until a load of it (of any model there)
  /// was seen; `threshold`: the least load_duration that counts as a load. Both > 0.
  void set_load_policy(Duration assumed, Duration threshold) {
    assumed_load_time_ = assumed;
    load_threshold_ = threshold;
  }
  /// Whether a finished request's timings say it loaded its model (load_duration at least the
  /// threshold): the one rule the fleet learns load times by and
  /// sluice_backend_model_loads_total counts.
  bool counts_as_load(const Timings& timings) const {
    return timings.load_duration && *timings.load_duration >= load_threshold_;
  }
  /// Whether m is resident (or loading) on b, as far as the fleet knows.
  bool is_resident(BackendId b, ModelId m) const { return live(b) && resident_on(b, m); }

  /// Backends a request for m may use when they have room (up, serving m, not retired).
  BackendSet eligible(ModelId m) const;
  /// Backends with a free slot.
  BackendSet free_slots() const;

  /// A request for m of `cost` tokens starts on b: counts it, makes m resident (evicting as
  /// Ollama would). Returns when it is expected to end (now + its expected finish on b), kept
  /// with b's requests in flight until release().
  Time admit(BackendId b, ModelId m, Time now, std::int64_t cost = 1);
  /// It ended; `timings` teaches load time and speed. `expected_end`: what admit() returned for
  /// it (absent: the earliest of b's is forgotten). Returns true when it had loaded m.
  bool release(BackendId b, ModelId m, const Timings& timings, Time now,
               std::optional<Time> expected_end = std::nullopt);
  /// A busy backend, warm for m and with streams at least 1.5x as fast as `here` (a backend with
  /// a free slot, warm for m, as choose() picked), whose next slot finishes a request for m of
  /// `cost` tokens at least a fifth sooner than `here` would, while the request has `waited`
  /// less than `here` would take to serve it; nullopt when none, when `here` must load m, with
  /// least-loaded placement, or when the request has waited that long. O(backends x slots).
  std::optional<BackendId> faster_slot(ModelId m, std::int64_t cost, BackendId here,
                                       Duration waited, Time now) const;

  /// Sets b's concurrency limit (the adaptive limit). A lower one stops admissions until its
  /// in-flight requests drop below it; none is cancelled. Precondition: live(b), limit >= 1.
  void set_max_concurrency(BackendId b, std::int64_t limit);

  /// Observations. Each returns true when it may let a parked request run or go elsewhere.
  bool set_up(BackendId b, bool up);
  bool set_catalog(BackendId b, std::span<const std::string> models);
  bool set_resident(BackendId b, std::span<const std::string> models, Time now);
  /// Parked requests per model (kept by the scheduler): the eviction cost reads it.
  void note_parked(ModelId m, int delta);
  /// The queue b could drain: for each model b may serve, its parked requests times b's share
  /// of the slots of the backends that may serve it (all of them with one backend). O(models x
  /// backends); read when a request is admitted to a backend with an adaptive limit.
  double backlog(BackendId b) const;
  /// The integral of b's in-flight count over time (request-seconds) up to `now`: the mean
  /// concurrency a request ran at is its difference over the request's life, divided by it.
  double in_flight_seconds(BackendId b, Time now) const;

  std::optional<BackendId> find(std::string_view name) const;
  std::size_t size() const { return backends_.size(); }  ///< including free and retired ids
  bool live(BackendId b) const;
  std::int64_t in_flight(BackendId b) const;
  /// Learned (or default) time to load m on b.
  Duration load_time(BackendId b, ModelId m) const;
  BackendView view(BackendId b) const;
  /// A request that waited for a faster slot (see BackendView::faster_slot_waits) runs on b.
  void count_faster_slot_wait(BackendId b);

  /// Recomputes the counters and masks from scratch; "" or the first violation. For tests.
  std::string check_invariants() const;

 private:
  struct Resident {
    ModelId model = 0;
    std::int64_t in_flight = 0;
    Time last_used{};
  };
  struct Backend {
    BackendSpec spec;
    bool live = false;  ///< index in use (configured or retired with requests in flight)
    bool retired = false;
    bool up = false;
    bool catalog_known = false;
    std::vector<ModelId> catalog;
    std::vector<Resident> resident;
    std::size_t resident_capacity = 1;
    std::int64_t in_flight = 0;
    std::vector<Time> ends;        ///< expected end of each request in flight (admit())
    double in_flight_seconds = 0;  ///< integral of in_flight up to in_flight_since
    Time in_flight_since{};
    double tokens_per_second = kDefaultTokensPerSecond;
    bool speed_known = false;
    std::unordered_map<ModelId, Duration> load_time;
    std::uint64_t faster_slot_waits = 0;
  };

  ModelId intern(std::string_view name);
  void reclaim_unused();
  void apply_catalog(BackendId b, std::vector<ModelId> models, bool known);
  void rebuild_masks();
  bool usable(BackendId b) const;
  bool resident_on(BackendId b, ModelId m) const;
  // `beside`: the requests it would run beside (default: b's in flight now).
  Duration service_time(const Backend& backend, std::int64_t cost, std::int64_t beside) const;
  Duration expected_finish(BackendId b, ModelId m, std::int64_t cost,
                           std::optional<std::int64_t> beside = std::nullopt) const;
  const Resident* eviction_victim(const Backend& backend) const;
  bool worth_loading(BackendId b, ModelId m) const;
  void make_resident(Backend& backend, ModelId m, Time now);
  static void accumulate(Backend& backend, Time now);
  void maybe_free(BackendId b);

  std::vector<Backend> backends_;
  std::vector<std::string> model_names_;  ///< by ModelId; [0] = "" (unlisted)
  std::unordered_map<std::string, ModelId> model_ids_;
  std::vector<BackendSet> served_by_;  ///< by ModelId: backends whose catalog lists it
  BackendSet any_model_ = 0;           ///< backends whose catalog is unknown
  std::vector<std::int64_t> parked_;   ///< by ModelId
  bool model_aware_ = true;
  Duration assumed_load_time_ = kDefaultLoadTime;
  Duration load_threshold_ = kLoadSeen;
  std::vector<ModelId> reusable_;  ///< ids nothing refers to, once kMaxModels were seen
  bool reclaim_scanned_ = false;   ///< reusable_ is complete for this catalog update
};

}  // namespace sluice::core
