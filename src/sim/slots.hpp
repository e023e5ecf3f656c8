// The simulated GPU's concurrency: per model, `capacity` slots handed out first come first
// served, like the semaphore in front of a loaded model in Ollama (OLLAMA_NUM_PARALLEL). Extra
// requests wait in an unbounded FIFO. Runs on one io_context thread; not thread-safe.
//
// Invariants: 0 <= active <= capacity (active may exceed a capacity lowered by set_capacity
// until enough slots are released); a waiter is woken only by release() (it then owns the
// slot, so active does not change) or by cancellation (it leaves the queue, no slot taken);
// Permit releases exactly once; the GPU-wide counters equal the sums over all pools.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <list>

namespace sluice::sim {

/// GPU-wide counts across all models' pools (decode speed depends on `active`).
struct GpuLoad {
  int active = 0;
  int waiting = 0;
  int peak_active = 0;
  int peak_waiting = 0;
  void reset_peaks() {
    peak_active = active;
    peak_waiting = waiting;
  }
};

class SlotPool {
 public:
  /// A held slot; releasing hands it to the oldest waiter, if any.
  class Permit {
   public:
    Permit() = default;
    explicit Permit(SlotPool* pool) : pool_(pool) {}
    Permit(Permit&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        reset();
        pool_ = std::exchange(o.pool_, nullptr);
      }
      return *this;
    }
    ~Permit() { reset(); }
    void reset() {
      if (pool_) std::exchange(pool_, nullptr)->release();
    }
    explicit operator bool() const { return pool_ != nullptr; }

   private:
    SlotPool* pool_ = nullptr;
  };

  SlotPool(int capacity, GpuLoad& gpu) : capacity_(capacity), gpu_(gpu) {}
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  /// Waits for a slot. Supports terminal/partial cancellation (throws operation_aborted and
  /// leaves the queue without taking a slot).
  boost::asio::awaitable<Permit> acquire();

  /// Changes the number of slots. Held slots stay held; more slots go to waiters at once,
  /// fewer take effect as slots are released.
  void set_capacity(int capacity);

  bool has_free_slot() const { return active_ < capacity_ && waiters_.empty(); }
  int active() const { return active_; }
  int waiting() const { return int(waiters_.size()); }
  int peak_active() const { return peak_active_; }
  void reset_peak() { peak_active_ = active_; }

 private:
  struct Waiter {
    boost::asio::steady_timer* timer;
    bool granted = false;
  };
  void take();
  void grant_front();
  void release();

  int capacity_;
  GpuLoad& gpu_;
  int active_ = 0;
  int peak_active_ = 0;
  std::list<Waiter*> waiters_;
};

}  // namespace sluice::sim
