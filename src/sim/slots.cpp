// FIFO slot pool of the simulated GPU (see slots.hpp).
#include "slots.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

namespace sluice::sim {

namespace asio = boost::asio;

void SlotPool::take() {
  ++active_;
  ++gpu_.active;
  peak_active_ = std::max(peak_active_, active_);
  gpu_.peak_active = std::max(gpu_.peak_active, gpu_.active);
}

void SlotPool::grant_front() {
  Waiter* next = waiters_.front();
  waiters_.pop_front();
  --gpu_.waiting;
  next->granted = true;
  next->timer->cancel();
}

void SlotPool::set_capacity(int capacity) {
  capacity_ = capacity;
  while (active_ < capacity_ && !waiters_.empty()) {
    take();
    grant_front();
  }
}

void SlotPool::release() {
  if (!waiters_.empty() && active_ <= capacity_) {
    grant_front();  // the slot passes straight to the oldest waiter
    return;
  }
  --active_;
  --gpu_.active;
}

asio::awaitable<SlotPool::Permit> SlotPool::acquire() {
  if (has_free_slot()) {
    take();
    co_return Permit(this);
  }
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  Waiter waiter{&timer};
  auto position = waiters_.insert(waiters_.end(), &waiter);
  ++gpu_.waiting;
  gpu_.peak_waiting = std::max(gpu_.peak_waiting, gpu_.waiting);
  // Leaves the queue on every path that did not receive the slot, including destruction of
  // this frame without resumption.
  struct Unlink {
    SlotPool& pool;
    Waiter& waiter;
    std::list<Waiter*>::iterator position;
    ~Unlink() {
      if (!waiter.granted) {
        pool.waiters_.erase(position);
        --pool.gpu_.waiting;
      }
    }
  } unlink{*this, waiter, position};
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  if (waiter.granted) co_return Permit(this);
  throw boost::system::system_error(asio::error::operation_aborted, "waiting for a GPU slot");
}

}  // namespace sluice::sim
