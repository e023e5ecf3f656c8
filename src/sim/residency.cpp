// Model residency of the simulated GPU (see residency.hpp for the rules and invariants).
#include "residency.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace sluice::sim {

std::optional<std::int64_t> Residency::TicketView::scheduled_ns() const {
  return triggered_load ? ready_ns : admitted_ns;
}

std::int64_t Residency::TicketView::load_duration_ns() const {
  const auto scheduled = scheduled_ns();
  return scheduled ? *scheduled - arrival_ns : 0;
}

Residency::Residency(std::size_t models, ResidencyConfig config, std::int64_t now_ns)
    : config_(config), models_(models) {
  const std::size_t preload = std::min<std::size_t>(models, std::size_t(config_.max_loaded));
  for (std::size_t i = 0; i < preload; ++i) {
    models_[i].phase = Phase::resident;
    models_[i].last_used_ns = now_ns;
    models_[i].idle_since_ns = now_ns;
  }
}

std::int64_t Residency::keep_alive_of(const ModelState& m) const {
  return m.keep_alive_ns.value_or(config_.keep_alive_ns);
}

Residency::Ticket Residency::arrive(std::size_t model, std::optional<std::int64_t> keep_alive_ns,
                                    std::int64_t now_ns) {
  const Ticket t = next_ticket_++;
  TicketView view;
  view.model = model;
  view.arrival_ns = now_ns;
  view.keep_alive_ns = keep_alive_ns;
  tickets_.emplace(t, view);
  fifo_.push_back(t);
  step(now_ns);
  return t;
}

void Residency::leave(Ticket ticket, std::int64_t now_ns) {
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return;
  const TicketView view = it->second;
  tickets_.erase(it);
  if (!view.admitted_ns) {
    fifo_.erase(std::find(fifo_.begin(), fifo_.end(), ticket));
    step(now_ns);
    return;
  }
  ModelState& m = models_[view.model];
  --m.refs;
  m.last_used_ns = now_ns;
  if (m.phase == Phase::loading) {
    if (m.refs == 0) {
      unload(view.model);  // nobody wants it any more: the load is abandoned
    } else if (view.triggered_load) {
      for (auto& [other, other_view] : tickets_)
        if (other_view.model == view.model && other_view.admitted_ns) {
          other_view.triggered_load = true;  // the oldest remaining requester inherits it
          break;
        }
    }
  } else if (m.refs == 0) {
    m.idle_since_ns = now_ns;
  }
  step(now_ns);
}

void Residency::expire(std::size_t model, std::int64_t now_ns) {
  ModelState& m = models_[model];
  if (m.phase == Phase::unloaded) return;
  m.keep_alive_ns = 0;
  step(now_ns);
}

void Residency::advance(std::int64_t now_ns) {
  step(now_ns);
}

void Residency::set_config(ResidencyConfig config, std::int64_t now_ns) {
  config_ = config;
  step(now_ns);
}

void Residency::step(std::int64_t now_ns) {
  // 1. Loads that are done.
  for (std::size_t i = 0; i < models_.size(); ++i)
    if (models_[i].phase == Phase::loading && models_[i].load_done_ns <= now_ns) finish_load(i);
  // 2. Idle models whose keep-alive ran out.
  for (std::size_t i = 0; i < models_.size(); ++i) {
    const ModelState& m = models_[i];
    const std::int64_t keep = keep_alive_of(m);
    if (m.phase == Phase::resident && m.refs == 0 && keep >= 0 &&
        m.idle_since_ns + std::min(keep, std::numeric_limits<std::int64_t>::max() / 2) <= now_ns)
      unload(i);
  }
  // 3. Too many models (max_loaded was lowered): the least recently used idle ones go.
  while (loaded() > config_.max_loaded) {
    const auto victim = lru_idle();
    if (!victim) break;
    unload(*victim);
  }
  // 4. Admissions, strictly in arrival order.
  while (!fifo_.empty() && admit(fifo_.front(), now_ns))
    fifo_.pop_front();
}

bool Residency::admit(Ticket ticket, std::int64_t now_ns) {
  TicketView& view = tickets_.at(ticket);
  ModelState& m = models_[view.model];
  if (m.phase == Phase::unloaded) {
    if (loaded() >= config_.max_loaded) {
      const auto victim = lru_idle();
      if (!victim) return false;  // every resident model is busy: wait for one to go idle
      unload(*victim);
      if (loaded() >= config_.max_loaded) return false;  // still over a lowered limit
    }
    view.triggered_load = true;
    start_load(view.model, now_ns);
  }
  view.admitted_ns = now_ns;
  ++m.refs;
  m.last_used_ns = now_ns;
  if (view.keep_alive_ns) m.keep_alive_ns = view.keep_alive_ns;
  if (m.phase == Phase::loading && m.load_done_ns <= now_ns) finish_load(view.model);
  if (m.phase == Phase::resident && !view.ready_ns) {
    view.ready_ns = now_ns;
    newly_ready_.push_back(ticket);
  }
  return true;
}

void Residency::start_load(std::size_t model, std::int64_t now_ns) {
  ModelState& m = models_[model];
  m.phase = Phase::loading;
  m.load_started_ns = now_ns;
  m.load_done_ns = now_ns + std::max<std::int64_t>(0, config_.load_ns);
}

void Residency::finish_load(std::size_t model) {
  ModelState& m = models_[model];
  m.phase = Phase::resident;
  ++m.loads;
  m.load_ns_total += m.load_done_ns - m.load_started_ns;
  m.last_used_ns = std::max(m.last_used_ns, m.load_done_ns);
  m.idle_since_ns = m.load_done_ns;
  for (auto& [t, view] : tickets_)
    if (view.model == model && view.admitted_ns && !view.ready_ns) {
      view.ready_ns = m.load_done_ns;
      newly_ready_.push_back(t);
    }
}

void Residency::unload(std::size_t model) {
  ModelState& m = models_[model];
  m.phase = Phase::unloaded;
  m.keep_alive_ns.reset();
}

std::optional<std::size_t> Residency::lru_idle() const {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < models_.size(); ++i) {
    const ModelState& m = models_[i];
    if (m.phase != Phase::resident || m.refs > 0) continue;
    if (!best || m.last_used_ns < models_[*best].last_used_ns) best = i;
  }
  return best;
}

std::optional<std::int64_t> Residency::next_deadline() const {
  std::optional<std::int64_t> next;
  auto consider = [&](std::int64_t t) { next = next ? std::min(*next, t) : t; };
  for (const ModelState& m : models_) {
    if (m.phase == Phase::loading) consider(m.load_done_ns);
    const std::int64_t keep = keep_alive_of(m);
    if (m.phase == Phase::resident && m.refs == 0 && keep >= 0 &&
        keep < std::numeric_limits<std::int64_t>::max() - m.idle_since_ns)
      consider(m.idle_since_ns + keep);
  }
  return next;
}

std::vector<Residency::Ticket> Residency::take_ready() {
  return std::exchange(newly_ready_, {});
}

bool Residency::ready(Ticket ticket) const {
  auto it = tickets_.find(ticket);
  return it != tickets_.end() && it->second.ready_ns.has_value();
}

std::optional<Residency::TicketView> Residency::ticket(Ticket ticket) const {
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return std::nullopt;
  return it->second;
}

Residency::ModelView Residency::model(std::size_t model) const {
  const ModelState& m = models_[model];
  return ModelView{m.phase, m.refs, m.last_used_ns, m.loads, m.load_ns_total};
}

std::optional<std::int64_t> Residency::expires_ns(std::size_t model, std::int64_t now_ns) const {
  const ModelState& m = models_[model];
  const std::int64_t keep = keep_alive_of(m);
  if (m.phase == Phase::unloaded || keep < 0) return std::nullopt;
  const std::int64_t from = m.phase == Phase::resident && m.refs == 0 ? m.idle_since_ns : now_ns;
  if (keep >= std::numeric_limits<std::int64_t>::max() - from) return std::nullopt;
  return from + keep;
}

int Residency::loaded() const {
  return int(std::count_if(models_.begin(), models_.end(),
                           [](const ModelState& m) { return m.phase != Phase::unloaded; }));
}

std::uint64_t Residency::total_loads() const {
  std::uint64_t n = 0;
  for (const ModelState& m : models_)
    n += m.loads;
  return n;
}

void Residency::reset_counters() {
  for (ModelState& m : models_) {
    m.loads = 0;
    m.load_ns_total = 0;
  }
}

}  // namespace sluice::sim
