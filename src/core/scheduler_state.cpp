// Finding and creating the scheduler's records on first use, and forgetting them when nothing
// refers to them any more. See scheduler_state.hpp for the records and their invariants.
#include "scheduler_state.hpp"

#include <algorithm>
#include <cassert>

namespace sluice::core {

Scheduler::State::Band& Scheduler::State::band_for(int level) {
  auto it = std::find_if(bands.begin(), bands.end(),
                         [&](const Band& band) { return band.level <= level; });
  if (it != bands.end() && it->level == level) return *it;
  Band band;
  band.level = level;
  band.ready_classes = std::make_unique<ClassHeap>(ClassLess{this}, ClassPos{this});
  return *bands.insert(it, std::move(band));
}

ClassId Scheduler::State::class_for(WorkloadId w, double priority) {
  const WorkloadSpec& spec = workloads[w].spec;
  double override_priority = (priority > 0 && priority != spec.priority) ? priority : 0;
  auto [it, inserted] = class_index.try_emplace({w, override_priority}, ClassId::nil());
  if (!inserted) return it->second;
  ClassId c = classes.alloc();
  Class& cls = classes[c];
  cls.workload = w;
  cls.override_priority = override_priority;
  cls.weight = override_priority > 0 ? override_priority : spec.priority;
  cls.band = spec.band;
  cls.ready_accounts = std::make_unique<AccountHeap>(AccountLess{this}, AccountPos{this});
  band_for(cls.band);
  it->second = c;
  if (override_priority == 0) workloads[w].base_class = c;
  return c;
}

AccountId Scheduler::State::account_for(ClassId c, std::string_view fairness_key) {
  Class& cls = classes[c];
  auto it = cls.by_key.find(fairness_key);
  if (it != cls.by_key.end()) {
    if (accounts[it->second].idle_listed) idle_unlink(it->second);  // active again
    return it->second;
  }
  AccountId a = accounts.alloc();
  Account& acc = accounts[a];
  acc.class_id = c;
  acc.fairness_key.assign(fairness_key);
  classes[c].by_key.emplace(std::string(fairness_key), a);
  return a;
}

LimitKeyId Scheduler::State::limit_key_for(std::uint32_t limit, std::string_view value) {
  if (value.empty()) return LimitKeyId::nil();
  auto& index = key_index[limit];
  auto it = index.find(value);
  if (it != index.end()) return it->second;
  LimitKeyId k = keys.alloc();
  keys[k].limit = limit;
  keys[k].value.assign(value);
  index.emplace(std::string(value), k);
  return k;
}

SubQueueId Scheduler::State::subqueue_for(AccountId a, const std::vector<LimitKeyId>& key_ids,
                                          ModelId model) {
  for (SubQueueId s : accounts[a].subqueues) {
    if (subqueues[s].keys == key_ids && subqueues[s].model == model) return s;
  }
  SubQueueId s = subqueues.alloc();
  SubQueue& sq = subqueues[s];
  sq.account = a;
  sq.keys = key_ids;
  sq.model = model;
  for (LimitKeyId k : key_ids) {
    if (!k.is_nil()) ++keys[k].refs;
  }
  Account& acc = accounts[a];
  sq.slot_in_account = static_cast<std::uint32_t>(acc.subqueues.size());
  acc.subqueues.push_back(s);
  return s;
}

void Scheduler::State::drop_subqueue_ref(SubQueueId s) {
  SubQueue& sq = subqueues[s];
  if (--sq.refs > 0) return;
  assert(sq.parked == 0 && sq.blocked_by.is_nil() && !sq.placement_held && !sq.ready);
  AccountId a = sq.account;
  Account& acc = accounts[a];
  SubQueueId moved = acc.subqueues.back();
  acc.subqueues[sq.slot_in_account] = moved;
  subqueues[moved].slot_in_account = sq.slot_in_account;
  acc.subqueues.pop_back();
  for (LimitKeyId k : sq.keys) {
    if (k.is_nil()) continue;
    LimitKey& key = keys[k];
    if (--key.refs == 0) {
      key_index[key.limit].erase(key.value);
      keys.release(k);
    }
  }
  subqueues.release(s);
  maybe_retire_account(a);
}

void Scheduler::State::erase_account(AccountId a) {
  assert(!accounts[a].idle_listed && accounts[a].subqueues.empty());
  ClassId c = accounts[a].class_id;
  classes[c].by_key.erase(accounts[a].fairness_key);
  accounts.release(a);
  maybe_erase_class(c);
}

// Classes of a priority override, and base classes of retired workloads, go away when empty.
void Scheduler::State::maybe_erase_class(ClassId c) {
  Class& cls = classes[c];
  if (!cls.by_key.empty() || cls.parked > 0 || cls.in_flight > 0) return;
  WorkloadInfo& info = workloads[cls.workload];
  if (cls.override_priority == 0 && !info.retired) return;
  assert(cls.heap_pos == kNotInHeap);
  class_index.erase({cls.workload, cls.override_priority});
  if (info.base_class == c) info.base_class = ClassId::nil();
  classes.release(c);
}

}  // namespace sluice::core
