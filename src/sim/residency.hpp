// Which models the simulated GPU holds in memory, as Ollama's scheduler (server/sched.go)
// decides it: at most `max_loaded` models resident at once; a request for a model that is not
// resident loads it, evicting the least recently used idle model when the GPU is full; if every
// resident model is busy, the request waits. Pure and sans-I/O: no Asio, no clock; every call
// takes `now_ns` (simulated nanoseconds) and the caller asks next_deadline() when to call
// advance() again. Runs on one thread.
//
// A request's path: arrive() gives it a ticket and queues it; it is *admitted* when it reaches
// the head of the FIFO and its model is resident, loading, or can be made resident (a free
// place, or an idle model to evict); it is *ready* when its model has finished loading. It holds
// a reference to its model from admission until leave(). A model is busy while it has
// references, idle otherwise; only idle models are evicted or expire.
//
// Invariants:
// - loaded (resident + loading) <= max_loaded, except after set_config() lowered max_loaded
//   while models were busy: the excess is unloaded as soon as it is idle.
// - The FIFO is served strictly in order (Ollama's single pending queue): a request waiting for
//   a place blocks the requests behind it, even those for resident models.
// - Only one load per model at a time: requests for a loading model wait for it (dedup).
// - A load whose requests all left is abandoned (the model is unloaded, the load not counted);
//   if the requester that triggered it leaves but others wait, the oldest of them inherits it.
// - leave() is idempotent and accepts tickets in any state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

namespace sluice::sim {

struct ResidencyConfig {
  int max_loaded = 1;        ///< models resident at once, >= 1
  std::int64_t load_ns = 0;  ///< time one load takes, >= 0
  /// Idle time before a model is unloaded when no request set keep_alive; < 0 = never.
  std::int64_t keep_alive_ns = 5LL * 60 * 1'000'000'000;
};

class Residency {
 public:
  using Ticket = std::uint64_t;
  enum class Phase { unloaded, loading, resident };

  struct TicketView {
    std::size_t model = 0;
    std::int64_t arrival_ns = 0;
    std::optional<std::int64_t> admitted_ns;    ///< holds a reference to its model
    std::optional<std::int64_t> ready_ns;       ///< its model is loaded
    bool triggered_load = false;                ///< this request's arrival caused the load
    std::optional<std::int64_t> keep_alive_ns;  ///< the request's keep_alive, if set
    /// What Ollama reports as load_duration: the time until the request was scheduled onto
    /// its model, including the load when it triggered one. (A request that joined a load in
    /// progress was scheduled at once and waits for the runner afterwards, as in Ollama.)
    std::int64_t load_duration_ns() const;
    /// When it was scheduled onto its model: ready_ns if it triggered the load, else
    /// admitted_ns (nullopt while waiting).
    std::optional<std::int64_t> scheduled_ns() const;
  };

  struct ModelView {
    Phase phase = Phase::unloaded;
    int refs = 0;  ///< requests admitted and not yet gone
    std::int64_t last_used_ns = 0;
    std::uint64_t loads = 0;  ///< completed loads since start or reset_counters()
    std::int64_t load_ns_total = 0;
  };

  /// `models` models, numbered in catalog order. The first min(max_loaded, models) start
  /// resident and idle at `now_ns` (a box that has been serving them).
  Residency(std::size_t models, ResidencyConfig config, std::int64_t now_ns);

  /// A request for `model` arrives. `keep_alive_ns`: its keep_alive field when set (< 0 =
  /// forever); it becomes the model's keep-alive until the model is unloaded (sticky, as in
  /// Ollama). The ticket may be ready at once (see ready()).
  Ticket arrive(std::size_t model, std::optional<std::int64_t> keep_alive_ns, std::int64_t now_ns);
  /// The request is gone (finished, failed or cancelled, waiting or not). Idempotent.
  void leave(Ticket ticket, std::int64_t now_ns);
  /// Unload `model` as soon as it is idle (an empty request with keep_alive 0).
  void expire(std::size_t model, std::int64_t now_ns);
  /// Applies what is due by `now_ns`: finished loads, expired keep-alives, admissions.
  void advance(std::int64_t now_ns);
  /// When advance() next has work of its own (a load ends, an idle model expires).
  std::optional<std::int64_t> next_deadline() const;
  /// Tickets that became ready since the last call (including at arrive()).
  std::vector<Ticket> take_ready();

  /// Changes the limits; applies to loads started and expiries checked from now on.
  void set_config(ResidencyConfig config, std::int64_t now_ns);
  const ResidencyConfig& config() const { return config_; }

  bool ready(Ticket ticket) const;
  std::optional<TicketView> ticket(Ticket ticket) const;
  std::size_t models() const { return models_.size(); }
  ModelView model(std::size_t model) const;
  /// When an idle `model` will be unloaded if nothing uses it (for a busy or loading one: now
  /// plus its keep-alive); nullopt when it never expires or is not loaded.
  std::optional<std::int64_t> expires_ns(std::size_t model, std::int64_t now_ns) const;
  /// Models resident or loading.
  int loaded() const;
  /// Requests waiting to be admitted.
  std::size_t waiting() const { return fifo_.size(); }
  std::uint64_t total_loads() const;
  /// Zeroes the load counters.
  void reset_counters();

 private:
  struct ModelState {
    Phase phase = Phase::unloaded;
    int refs = 0;
    std::int64_t last_used_ns = 0;
    std::int64_t idle_since_ns = 0;
    std::int64_t load_started_ns = 0;
    std::int64_t load_done_ns = 0;
    std::optional<std::int64_t> keep_alive_ns;  ///< set by a request; cleared on unload
    std::uint64_t loads = 0;
    std::int64_t load_ns_total = 0;
  };

  std::int64_t keep_alive_of(const ModelState& m) const;
  void step(std::int64_t now_ns);
  bool admit(Ticket ticket, std::int64_t now_ns);
  void start_load(std::size_t model, std::int64_t now_ns);
  void finish_load(std::size_t model);
  void unload(std::size_t model);
  std::optional<std::size_t> lru_idle() const;

  ResidencyConfig config_;
  std::vector<ModelState> models_;
  std::map<Ticket, TicketView> tickets_;  ///< every ticket not yet gone, oldest first
  std::deque<Ticket> fifo_;
  std::vector<Ticket> newly_ready_;
  Ticket next_ticket_ = 1;
};

}  // namespace sluice::sim
