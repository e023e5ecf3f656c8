// The fleet's placement policy. See fleet.hpp for the rules and the reasoning behind them.
#include "sluice/core/fleet.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice::core {
namespace {

// Smoothing of the learned values: load times are few and matter at once, speeds are many.
constexpr double kLoadTimeWeight = 0.5;
constexpr double kSpeedWeight = 0.2;

Duration blend(Duration old, Duration sample, double weight) {
  const double value = (1 - weight) * static_cast<double>(old.count()) +
                       weight * static_cast<double>(sample.count());
  return Duration(static_cast<Duration::rep>(value));
}

}  // namespace

std::string canonical_model(std::string_view name) {
  std::string out(name);
  const auto slash = out.rfind('/');
  const auto colon = out.rfind(':');
  if (!out.empty() && (colon == std::string::npos || (slash != std::string::npos && colon < slash)))
    out += ":latest";
  return out;
}

std::string validate(std::span<const BackendSpec> backends) {
  if (backends.empty()) return "at least one backend is required";
  if (backends.size() > kMaxBackends)
    return "at most " + std::to_string(kMaxBackends) + " backends";
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const BackendSpec& b = backends[i];
    const std::string where = "backends[" + std::to_string(i) + "]";
    if (b.name.empty()) return where + ".name must not be empty";
    if (b.max_concurrency < 1) return where + ".max_concurrency must be >= 1";
    if (b.auto_concurrency) {
      if (std::string error = validate(*b.auto_concurrency); !error.empty())
        return where + ".auto_concurrency." + error;
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (backends[j].name == b.name) return where + ".name '" + b.name + "' is used twice";
    }
    for (const std::string& m : b.models) {
      if (m.empty()) return where + ".models must not contain an empty name";
    }
    if (b.models.size() > kMaxModels)
      return where + ".models lists more than " + std::to_string(kMaxModels) + " models";
  }
  return "";
}

Fleet::Fleet(std::span<const BackendSpec> backends) {
  model_names_.emplace_back();  // kUnlistedModel
  served_by_.push_back(0);
  parked_.push_back(0);
  reconfigure(backends);
}

std::string Fleet::reconfigure(std::span<const BackendSpec> backends) {
  if (std::string error = validate(backends); !error.empty()) return error;
  // Ids that stay, and how many new ones are needed: refuse before changing anything.
  std::size_t needed = 0;
  for (const BackendSpec& spec : backends) {
    if (!find(spec.name)) ++needed;
  }
  std::size_t available = kMaxBackends - backends_.size();
  for (const Backend& b : backends_) {
    if (!b.live) ++available;
  }
  // Backends about to retire with nothing in flight free their id at once.
  for (const Backend& b : backends_) {
    if (!b.live || b.in_flight > 0) continue;
    bool kept = std::any_of(backends.begin(), backends.end(),
                            [&](const BackendSpec& s) { return s.name == b.spec.name; });
    if (!kept) ++available;
  }
  if (needed > available) {
    return "too many backends while removed ones finish their requests (at most " +
           std::to_string(kMaxBackends) + ")";
  }

  for (BackendId id = 0; id < backends_.size(); ++id) {
    Backend& b = backends_[id];
    if (!b.live) continue;
    bool kept = std::any_of(backends.begin(), backends.end(),
                            [&](const BackendSpec& s) { return s.name == b.spec.name; });
    if (!kept) {
      b.retired = true;
      maybe_free(id);
    }
  }
  for (const BackendSpec& spec : backends) {
    std::optional<BackendId> existing = find(spec.name);
    BackendId id;
    if (existing) {
      id = *existing;
    } else {
      auto slot = std::find_if(backends_.begin(), backends_.end(),
                               [](const Backend& b) { return !b.live; });
      id = static_cast<BackendId>(slot - backends_.begin());
      if (slot == backends_.end()) backends_.emplace_back();
      backends_[id] = Backend{};
      backends_[id].live = true;
    }
    Backend& b = backends_[id];
    b.retired = false;
    const bool was_static = !b.spec.models.empty();
    b.spec = spec;
    if (!spec.models.empty()) {
      std::vector<ModelId> ids;
      for (const std::string& name : spec.models)
        ids.push_back(intern(name));
      apply_catalog(id, std::move(ids), true);
    } else if (was_static || !existing) {
      apply_catalog(id, {}, false);  // to be discovered
    }
  }
  rebuild_masks();
  return "";
}

std::optional<BackendId> Fleet::find(std::string_view name) const {
  for (BackendId id = 0; id < backends_.size(); ++id) {
    if (backends_[id].live && backends_[id].spec.name == name) return id;
  }
  return std::nullopt;
}

bool Fleet::live(BackendId b) const {
  return b < backends_.size() && backends_[b].live;
}

std::int64_t Fleet::in_flight(BackendId b) const {
  return live(b) ? backends_[b].in_flight : 0;
}

ModelId Fleet::model(std::string_view name) const {
  auto it = model_ids_.find(canonical_model(name));
  if (it == model_ids_.end()) return kUnlistedModel;
  return (served_by_[it->second] != 0) ? it->second : kUnlistedModel;
}

ModelId Fleet::request_model(std::string_view name) {
  const ModelId listed = model(name);
  if (listed != kUnlistedModel || any_model_ == 0 || name.empty()) return listed;
  return intern(name);
}

const std::string& Fleet::model_name(ModelId m) const {
  return model_names_.at(m);
}

ModelId Fleet::intern(std::string_view raw) {
  const std::string name = canonical_model(raw);
  if (auto it = model_ids_.find(name); it != model_ids_.end()) return it->second;
  if (model_names_.size() < kMaxModels) {
    const ModelId m = static_cast<ModelId>(model_names_.size());
    model_names_.push_back(name);
    model_ids_.emplace(name, m);
    served_by_.push_back(0);
    parked_.push_back(0);
    return m;
  }
  if (reusable_.empty() && !reclaim_scanned_) reclaim_unused();
  if (reusable_.empty()) return kUnlistedModel;
  const ModelId m = reusable_.back();
  reusable_.pop_back();
  model_ids_.erase(model_names_[m]);
  model_names_[m] = name;
  model_ids_.emplace(name, m);
  return m;
}

// Collects the ids nothing refers to (no catalog, nothing parked, resident nowhere). O(models +
// catalogs); run at most once per catalog update, and only once kMaxModels names were seen.
void Fleet::reclaim_unused() {
  reclaim_scanned_ = true;
  std::vector<bool> used(model_names_.size(), false);
  used[kUnlistedModel] = true;
  for (const Backend& backend : backends_) {
    for (ModelId m : backend.catalog)
      used[m] = true;
    for (const Resident& r : backend.resident)
      used[r.model] = true;
  }
  for (ModelId m = 0; m < used.size(); ++m) {
    if (used[m] || parked_[m] != 0) continue;
    reusable_.push_back(m);
    for (Backend& backend : backends_)
      backend.load_time.erase(m);  // learned for the name it had
  }
}

void Fleet::apply_catalog(BackendId b, std::vector<ModelId> models, bool known) {
  std::sort(models.begin(), models.end());
  models.erase(std::unique(models.begin(), models.end()), models.end());
  models.erase(std::remove(models.begin(), models.end(), kUnlistedModel), models.end());
  backends_[b].catalog = std::move(models);
  backends_[b].catalog_known = known;
}

void Fleet::rebuild_masks() {
  std::fill(served_by_.begin(), served_by_.end(), 0);
  any_model_ = 0;
  for (BackendId b = 0; b < backends_.size(); ++b) {
    const Backend& backend = backends_[b];
    if (!backend.live || backend.retired) continue;
    if (!backend.catalog_known) {
      any_model_ |= backend_bit(b);
      continue;
    }
    for (ModelId m : backend.catalog)
      served_by_[m] |= backend_bit(b);
  }
}

bool Fleet::usable(BackendId b) const {
  const Backend& backend = backends_[b];
  return backend.live && !backend.retired && backend.up;
}

BackendSet Fleet::eligible(ModelId m) const {
  BackendSet set = (m < served_by_.size() ? served_by_[m] : 0) | any_model_;
  BackendSet out = 0;
  for (BackendSet rest = set; rest != 0; rest &= rest - 1) {
    const auto b = static_cast<BackendId>(std::countr_zero(rest));
    if (usable(b)) out |= backend_bit(b);
  }
  return out;
}

BackendSet Fleet::free_slots() const {
  BackendSet out = 0;
  for (BackendId b = 0; b < backends_.size(); ++b) {
    if (usable(b) && backends_[b].in_flight < backends_[b].spec.max_concurrency)
      out |= backend_bit(b);
  }
  return out;
}

bool Fleet::resident_on(BackendId b, ModelId m) const {
  const auto& resident = backends_[b].resident;
  return std::any_of(resident.begin(), resident.end(),
                     [&](const Resident& r) { return r.model == m; });
}

Duration Fleet::load_time(BackendId b, ModelId m) const {
  const Backend& backend = backends_.at(b);
  if (auto it = backend.load_time.find(m); it != backend.load_time.end()) return it->second;
  // Not seen for this model here: the average of this backend's other models, else the default.
  if (backend.load_time.empty()) return assumed_load_time_;
  Duration sum{};
  for (const auto& [model, time] : backend.load_time)
    sum += time;
  return sum / static_cast<Duration::rep>(backend.load_time.size());
}

const Fleet::Resident* Fleet::eviction_victim(const Backend& backend) const {
  if (backend.resident.size() < backend.resident_capacity) return nullptr;
  const Resident* victim = nullptr;
  for (const Resident& r : backend.resident) {
    if (r.in_flight > 0) continue;
    if (!victim || r.last_used < victim->last_used) victim = &r;
  }
  return victim;
}

Placement Fleet::choose(ModelId m, std::int64_t cost, Time waiting_since, Time now,
                        BackendSet exclude) const {
  const BackendSet candidates = eligible(m) & ~exclude;
  if (candidates == 0) {
    const BackendSet listed = (m < served_by_.size() ? served_by_[m] : 0) | any_model_;
    return {.kind = listed != 0 ? Placement::Kind::down : Placement::Kind::unserved};
  }
  const BackendSet open = candidates & free_slots();
  if (open == 0) return {.kind = Placement::Kind::full};
  // Residency does not matter to a placement that ignores it: every model counts as unlisted.
  const ModelId judged = model_aware_ ? m : kUnlistedModel;

  BackendId best = 0;
  Duration best_finish = Duration::max();
  double best_utilisation = 0;
  for (BackendSet rest = open; rest != 0; rest &= rest - 1) {
    const auto b = static_cast<BackendId>(std::countr_zero(rest));
    const Duration finish = expected_finish(b, judged, cost);
    const double utilisation = static_cast<double>(backends_[b].in_flight) /
                               static_cast<double>(backends_[b].spec.max_concurrency);
    if (finish < best_finish || (finish == best_finish && utilisation < best_utilisation)) {
      best = b;
      best_finish = finish;
      best_utilisation = utilisation;
    }
  }
  if (judged == kUnlistedModel || resident_on(best, m))
    return {.kind = Placement::Kind::place, .backend = best};
  bool warm_but_full = false;
  for (BackendSet rest = candidates & ~open; rest != 0 && !warm_but_full; rest &= rest - 1)
    warm_but_full = resident_on(static_cast<BackendId>(std::countr_zero(rest)), m);
  if (!warm_but_full) return {.kind = Placement::Kind::place, .backend = best};
  const Time spill = waiting_since + load_time(best, m);
  if (now < spill) return {.kind = Placement::Kind::wait_warm, .until = spill};
  // It has waited a load time: it goes cold where that is worth a load (the soonest such).
  std::optional<BackendId> chosen;
  Duration chosen_finish = Duration::max();
  for (BackendSet rest = open; rest != 0; rest &= rest - 1) {
    const auto b = static_cast<BackendId>(std::countr_zero(rest));
    const Duration finish = expected_finish(b, m, cost);
    if (finish < chosen_finish && worth_loading(b, m)) {
      chosen = b;
      chosen_finish = finish;
    }
  }
  if (chosen) return {.kind = Placement::Kind::place, .backend = *chosen};
  return {.kind = Placement::Kind::wait_warm, .until = now + load_time(best, m)};
}

void Fleet::make_resident(Backend& backend, ModelId m, Time now) {
  for (Resident& r : backend.resident) {
    if (r.model == m) {
      r.last_used = now;
      return;
    }
  }
  // At capacity, the least recently used idle model makes room. When every resident model is
  // busy, Ollama makes the load wait until one goes idle and evicts that one (release()): m is
  // resident (loading) meanwhile, and the backend holds one model too many until then. The
  // capacity is what the backend was seen holding, never what sluice asked of it.
  if (const Resident* victim = eviction_victim(backend)) {
    backend.resident.erase(backend.resident.begin() + (victim - backend.resident.data()));
  }
  backend.resident.push_back({.model = m, .in_flight = 0, .last_used = now});
}

void Fleet::accumulate(Backend& backend, Time now) {
  if (now > backend.in_flight_since) {
    backend.in_flight_seconds +=
        static_cast<double>(backend.in_flight) *
        std::chrono::duration<double>(now - backend.in_flight_since).count();
    backend.in_flight_since = now;
  }
}

double Fleet::in_flight_seconds(BackendId b, Time now) const {
  const Backend& backend = backends_.at(b);
  const double open = now > backend.in_flight_since
                          ? std::chrono::duration<double>(now - backend.in_flight_since).count()
                          : 0;
  return backend.in_flight_seconds + static_cast<double>(backend.in_flight) * open;
}

Time Fleet::admit(BackendId b, ModelId m, Time now, std::int64_t cost) {
  // Its learned speed is a stream's at the load it usually runs beside: no load factor here
  // (that factor ranks backends against each other; an end time wants the best guess).
  const Time end = now + expected_finish(b, model_aware_ ? m : kUnlistedModel, cost, 0);
  Backend& backend = backends_.at(b);
  accumulate(backend, now);
  ++backend.in_flight;
  backend.ends.push_back(end);
  if (m == kUnlistedModel) return end;
  make_resident(backend, m, now);
  for (Resident& r : backend.resident) {
    if (r.model == m) ++r.in_flight;
  }
  return end;
}

bool Fleet::release(BackendId b, ModelId m, const Timings& timings, Time now,
                    std::optional<Time> expected_end) {
  Backend& backend = backends_.at(b);
  accumulate(backend, now);
  --backend.in_flight;
  if (!backend.ends.empty()) {
    auto it = expected_end ? std::find(backend.ends.begin(), backend.ends.end(), *expected_end)
                           : backend.ends.end();
    if (it == backend.ends.end()) it = std::min_element(backend.ends.begin(), backend.ends.end());
    *it = backend.ends.back();
    backend.ends.pop_back();
  }
  for (auto r = backend.resident.begin(); r != backend.resident.end(); ++r) {
    if (r->model != m || r->in_flight == 0) continue;
    --r->in_flight;
    r->last_used = now;
    // A load was waiting for a busy model to go idle (make_resident): this one goes.
    if (r->in_flight == 0 && backend.resident.size() > backend.resident_capacity)
      backend.resident.erase(r);
    break;
  }
  if (timings.eval_count > 0 && timings.eval_duration && timings.eval_duration->count() > 0) {
    const double rate = static_cast<double>(timings.eval_count) * 1e9 /
                        static_cast<double>(timings.eval_duration->count());
    backend.tokens_per_second =
        backend.speed_known ? (1 - kSpeedWeight) * backend.tokens_per_second + kSpeedWeight * rate
                            : rate;
    backend.speed_known = true;
  }
  bool loaded = false;
  if (m != kUnlistedModel && counts_as_load(timings)) {
    loaded = true;
    auto [it, inserted] = backend.load_time.try_emplace(m, *timings.load_duration);
    if (!inserted) it->second = blend(it->second, *timings.load_duration, kLoadTimeWeight);
  }
  maybe_free(b);
  return loaded;
}

void Fleet::set_max_concurrency(BackendId b, std::int64_t limit) {
  backends_.at(b).spec.max_concurrency = std::max<std::int64_t>(limit, 1);
}

void Fleet::maybe_free(BackendId b) {
  Backend& backend = backends_[b];
  if (backend.retired && backend.in_flight == 0) backend = Backend{};
}

bool Fleet::set_up(BackendId b, bool up) {
  Backend& backend = backends_.at(b);
  if (backend.up == up) return false;
  backend.up = up;
  return up;
}

bool Fleet::set_catalog(BackendId b, std::span<const std::string> models) {
  Backend& backend = backends_.at(b);
  if (!backend.spec.models.empty()) return false;  // a static catalog wins
  const std::vector<ModelId> before = std::move(backend.catalog);
  const bool was_known = backend.catalog_known;
  // Built in place, so that names this list drops can be reused for the names it adds, and the
  // ones it adds are never reclaimed while it is being read.
  backend.catalog.clear();
  reusable_.clear();
  reclaim_scanned_ = false;
  for (const std::string& name : models) {
    if (backend.catalog.size() >= kMaxModels) break;
    const ModelId m = intern(name);
    if (m != kUnlistedModel) backend.catalog.push_back(m);
  }
  apply_catalog(b, std::move(backend.catalog), true);
  if (was_known && backend.catalog == before) return false;
  rebuild_masks();
  return true;
}

bool Fleet::set_resident(BackendId b, std::span<const std::string> models, Time now) {
  Backend& backend = backends_.at(b);
  std::vector<Resident> next;
  for (const std::string& name : models) {
    auto it = model_ids_.find(canonical_model(name));
    if (it == model_ids_.end()) continue;  // resident but listed by no catalog: never placed
    const ModelId m = it->second;
    if (std::any_of(next.begin(), next.end(), [&](const Resident& r) { return r.model == m; }))
      continue;
    Resident r{.model = m, .in_flight = 0, .last_used = now};
    for (const Resident& old : backend.resident) {
      if (old.model == m) r = old;
    }
    next.push_back(r);
  }
  // A model with requests running is resident (or loading) whatever the report says.
  for (const Resident& old : backend.resident) {
    if (old.in_flight == 0) continue;
    if (std::none_of(next.begin(), next.end(),
                     [&](const Resident& r) { return r.model == old.model; }))
      next.push_back(old);
  }
  // The capacity grows with what the backend reports holding, not with the loads sluice sent
  // that wait for a busy model to go idle (kept in `next` above while they run).
  const std::size_t reported = std::min(models.size(), kMaxModels);
  backend.resident_capacity = std::max(backend.resident_capacity, reported);
  // Beyond the capacity, an idle model goes (least recently used first), as in make_resident().
  while (next.size() > backend.resident_capacity) {
    auto idle = next.end();
    for (auto r = next.begin(); r != next.end(); ++r) {
      if (r->in_flight == 0 && (idle == next.end() || r->last_used < idle->last_used)) idle = r;
    }
    if (idle == next.end()) break;
    next.erase(idle);
  }
  auto key = [](const Resident& r) { return r.model; };
  auto same = [&](const std::vector<Resident>& x, const std::vector<Resident>& y) {
    if (x.size() != y.size()) return false;
    for (const Resident& r : x) {
      if (std::none_of(y.begin(), y.end(), [&](const Resident& o) { return key(o) == key(r); }))
        return false;
    }
    return true;
  };
  const bool changed = !same(next, backend.resident);
  backend.resident = std::move(next);
  return changed;
}

void Fleet::note_parked(ModelId m, int delta) {
  if (m < parked_.size()) parked_[m] += delta;
}

double Fleet::backlog(BackendId b) const {
  if (!usable(b)) return 0;
  const auto slots = [&](BackendId x) {
    return static_cast<double>(std::max<std::int64_t>(1, backends_[x].spec.max_concurrency));
  };
  double share = 0;
  for (ModelId m = 0; m < parked_.size(); ++m) {
    if (parked_[m] <= 0) continue;
    const BackendSet set = eligible(m);
    if ((set & backend_bit(b)) == 0) continue;
    double total = 0;
    for (BackendSet rest = set; rest != 0; rest &= rest - 1)
      total += slots(static_cast<BackendId>(std::countr_zero(rest)));
    share += static_cast<double>(parked_[m]) * slots(b) / total;
  }
  return share;
}

BackendView Fleet::view(BackendId b) const {
  const Backend& backend = backends_.at(b);
  BackendView v;
  v.id = b;
  v.name = backend.spec.name;
  v.up = backend.up;
  v.retired = backend.retired;
  v.in_flight = backend.in_flight;
  v.max_concurrency = backend.spec.max_concurrency;
  v.catalog_known = backend.catalog_known;
  for (ModelId m : backend.catalog)
    v.models.push_back(model_names_[m]);
  std::vector<Resident> resident = backend.resident;
  std::sort(resident.begin(), resident.end(),
            [](const Resident& x, const Resident& y) { return x.last_used > y.last_used; });
  for (const Resident& r : resident)
    v.loaded.push_back({.model = model_names_[r.model], .in_flight = r.in_flight});
  v.resident_capacity = backend.resident_capacity;
  v.tokens_per_second = backend.tokens_per_second;
  v.speed_known = backend.speed_known;
  v.faster_slot_waits = backend.faster_slot_waits;
  for (const auto& [model, time] : backend.load_time)
    v.load_times.push_back({.model = model_names_[model], .load_time = time});
  std::sort(v.load_times.begin(), v.load_times.end(),
            [](const LoadTimeView& x, const LoadTimeView& y) { return x.model < y.model; });
  return v;
}

void Fleet::count_faster_slot_wait(BackendId b) {
  ++backends_.at(b).faster_slot_waits;
}

std::string Fleet::check_invariants() const {
  for (BackendId b = 0; b < backends_.size(); ++b) {
    const Backend& backend = backends_[b];
    const std::string name = "backend " + std::to_string(b);
    if (!backend.live) {
      if (backend.in_flight != 0 || !backend.resident.empty()) return name + ": free but in use";
      continue;
    }
    if (backend.in_flight < 0) return name + ": negative in_flight";
    if (backend.ends.size() != static_cast<std::size_t>(backend.in_flight))
      return name + ": expected ends do not match in_flight";
    std::int64_t by_model = 0;
    for (const Resident& r : backend.resident) {
      if (r.in_flight < 0) return name + ": negative in_flight for a model";
      by_model += r.in_flight;
    }
    if (by_model > backend.in_flight) return name + ": model in_flight exceeds the backend's";
    // Beyond its capacity only while loads wait for a busy model to go idle.
    if (backend.resident.size() > backend.resident_capacity &&
        std::any_of(backend.resident.begin(), backend.resident.end(),
                    [](const Resident& r) { return r.in_flight == 0; }))
      return name + ": more resident than its capacity with an idle model to evict";
    if (backend.retired && backend.in_flight == 0) return name + ": retired and idle, not freed";
  }
  for (ModelId m = 0; m < parked_.size(); ++m) {
    if (parked_[m] < 0) return "model " + std::to_string(m) + ": negative parked count";
  }
  return "";
}

}  // namespace sluice::core
