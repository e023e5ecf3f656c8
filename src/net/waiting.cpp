// The waiting board and the tracked request (see waiting.hpp).
#include "waiting.hpp"

#include <nlohmann/json.hpp>

namespace sluice::net {

namespace {

std::int64_t to_ms(core::Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

const core::QueueOrder& WaitingBoard::order(std::uint64_t needed_epoch) {
  using SteadyClock = std::chrono::steady_clock;
  const std::uint64_t version = gate_.version();
  if (version_ && *version_ == version) return order_;
  const SteadyClock::time_point start = SteadyClock::now();
  const bool forced = !version_ || *version_ <= needed_epoch;
  const SteadyClock::duration floor =
      forced ? SteadyClock::duration::zero() : SteadyClock::duration(kMinRecompute);
  const SteadyClock::duration interval = std::max(floor, cost_ * kCostShare);
  if (version_ && start - computed_at_ < interval) return order_;
  order_ = gate_.scheduler().queue_order(gate_.now(), kOrdered);
  version_ = version;
  computed_at_ = start;
  cost_ = SteadyClock::now() - start;
  return order_;
}

WaitFigures WaitingBoard::figures(core::Ticket ticket, std::uint64_t epoch) {
  const core::QueueOrder& current = order(epoch);
  WaitFigures figures;
  const core::QueuePosition where = current.find(ticket.value, figures.exact);
  figures.position = where.position;
  figures.eta = where.eta();
  figures.eta_rate = where.eta_rate;
  if (!figures.exact) {  // a lower bound is no estimate
    figures.eta.reset();
    figures.eta_rate.reset();
  }
  // The order was computed a little earlier: the time since then has passed.
  const core::Duration since = gate_.now() - current.computed_at;
  for (std::optional<core::Duration>* eta : {&figures.eta, &figures.eta_rate}) {
    if (*eta) *eta = std::max(core::Duration{}, **eta - since);
  }
  return figures;
}

void WaitingBoard::await_eta(TrackedRequest* request) {
  awaiting_eta_.push_back(request);
}

void WaitingBoard::drop_await(TrackedRequest* request) {
  std::erase(awaiting_eta_, request);
}

void WaitingBoard::give_awaited_etas() {
  if (awaiting_eta_.empty()) return;
  order(gate_.version());  // forced (within the CPU bound): the first ETA is wanted at once
  const core::Time now = gate_.now();
  std::erase_if(awaiting_eta_, [&](TrackedRequest* request) {
    const WaitFigures figures = this->figures(request->ticket_, request->epoch_);
    if (!figures.eta) return false;
    request->at_park_ = figures;
    request->eta_after_ = now - request->parked_at_;
    return true;
  });
}

WaitFigures WaitingBoard::figures(const core::RequestRecord& record) {
  if (record.state != core::RequestState::parked || !record.ticket)
    return WaitFigures{.position = 0, .exact = true, .eta = core::Duration{}};
  return figures(record.ticket, record.epoch);
}

TrackedRequest::TrackedRequest(WaitingBoard& board, const AdmissionGate& gate, std::string_view id,
                               std::string_view owner, std::string_view workload)
    : board_(board), gate_(gate), handle_(board.registry.start(id, owner, workload, gate.now())) {}

TrackedRequest::~TrackedRequest() {
  board_.drop_await(this);
  board_.registry.finish(handle_, gate_.now());
}

void TrackedRequest::on_parked(core::Ticket ticket) {
  ticket_ = ticket;
  epoch_ = gate_.version();
  parked_ = true;
  parked_at_ = gate_.now();
  board_.registry.parked(handle_, ticket, epoch_);
  if (record_at_park && !at_park_) {
    at_park_ = board_.figures(ticket, epoch_);
    if (at_park_->eta) {
      eta_after_ = core::Duration{};
    } else {
      board_.await_eta(this);
    }
  }
  if (on_park) on_park();
}

void TrackedRequest::admitted() {
  parked_ = false;
  board_.drop_await(this);
  board_.registry.running(handle_, gate_.now());
  board_.give_awaited_etas();
}

WaitFigures TrackedRequest::figures() {
  if (!parked_) return WaitFigures{.position = 0, .exact = true, .eta = core::Duration{}};
  return board_.figures(ticket_, epoch_);
}

std::string request_status_json(const core::RequestRecord& record, const WaitFigures& figures,
                                core::Time now) {
  nlohmann::ordered_json doc = {
      {"id", record.id},
      {"state", std::string(core::state_name(record.state))},
      {"workload", record.workload},
      {"position", figures.position},
      {"position_exact", figures.exact},
      {"eta_ms", figures.eta ? nlohmann::ordered_json(to_ms(*figures.eta)) : nullptr},
      {"queued_ms", to_ms(record.queued(now))},
  };
  return doc.dump();
}

}  // namespace sluice::net
