// TimedStream's watchdog (see timed_stream.hpp).
#include "timed_stream.hpp"

namespace sluice::net {

void TimedStream::Impl::arm() {
  // Re-arming an armed timer aborts its wait; that wait's handler sees an old generation and
  // leaves the state alone.
  armed = true;
  armed_at = deadline;
  ++waits;
  const std::uint64_t wait = ++generation;
  watchdog.expires_at(deadline);
  watchdog.async_wait([self = shared_from_this(), wait](const boost::system::error_code& ec) {
    self->on_watchdog(ec, wait);
  });
}

void TimedStream::Impl::on_watchdog(const boost::system::error_code& ec, std::uint64_t wait) {
  if (wait != generation) return;  // superseded by a later arm()
  armed = false;
  if (ec || outstanding == 0 || deadline == Clock::time_point::max()) return;
  if (Clock::now() < deadline) {
    arm();  // the deadline moved later while this wait ran
    return;
  }
  timed_out = true;
  boost::system::error_code ignored;
  socket.close(ignored);  // outstanding operations complete with operation_aborted -> timeout
}

void TimedStream::Impl::shut() {
  boost::system::error_code ignored;
  socket.close(ignored);
  if (armed) {
    armed = false;
    ++generation;
    watchdog.cancel();
  }
}

}  // namespace sluice::net
