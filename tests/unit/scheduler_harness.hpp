// Test harness around core::Scheduler: keeps the present time, remembers which ticket belongs to
// which test request, and records admissions in order. No clock, no I/O.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "sluice/core/scheduler.hpp"

namespace sluice::test {

using namespace std::chrono_literals;
using core::Admission;
using core::Duration;
using core::EnqueueResult;
using core::Permit;
using core::Scheduler;
using core::SchedulerConfig;
using core::Ticket;
using core::Time;

struct Req {
  std::string workload = "default";
  std::string user = "u";
  std::vector<std::string> keys;  // per-key limit values
  std::int64_t cost = 1;
  double priority = 0;
  std::optional<Duration> timeout;
  std::string model;  // placement on the fleet; "" for none
};

struct Harness {
  explicit Harness(SchedulerConfig config) : sched(std::move(config)) {}

  Scheduler sched;
  Time now{};
  int next_id = 0;
  std::map<std::uint64_t, int> ticket_to_id;  // parked requests
  std::map<int, Permit> running;              // admitted, not yet released
  std::vector<int> admitted_order;
  std::map<int, std::string> user_of;
  std::map<int, std::string> workload_of;
  std::map<int, core::BackendId> backend_of;  // where each admitted request runs

  // Returns the test id; the outcome is in last.
  EnqueueResult last;
  int submit(const Req& r) {
    int id = next_id++;
    std::vector<std::string_view> keys(r.keys.begin(), r.keys.end());
    auto w = sched.find_workload(r.workload);
    REQUIRE(w);
    core::Request request{.workload = *w,
                          .priority = r.priority,
                          .fairness_key = r.user,
                          .limit_keys = keys,
                          .cost = r.cost,
                          .queue_timeout = r.timeout,
                          .model = r.model};
    std::vector<Admission> others;
    last = sched.enqueue(request, now, others);
    user_of[id] = r.user;
    workload_of[id] = r.workload;
    if (last.kind == EnqueueResult::Kind::admitted) {
      running[id] = last.permit;
      backend_of[id] = last.backend;
      admitted_order.push_back(id);
    } else if (last.kind == EnqueueResult::Kind::parked) {
      ticket_to_id[last.ticket.value] = id;
    }
    absorb(others);
    check();
    return id;
  }

  void absorb(const std::vector<Admission>& admissions) {
    for (const Admission& a : admissions) {
      auto it = ticket_to_id.find(a.ticket.value);
      REQUIRE(it != ticket_to_id.end());
      running[it->second] = a.permit;
      backend_of[it->second] = a.backend;
      admitted_order.push_back(it->second);
      ticket_to_id.erase(it);
    }
  }

  // Releases request `id` (must be running); actual < 0 keeps the estimate.
  void finish(int id, std::int64_t actual = -1, const core::Timings& timings = {}) {
    auto it = running.find(id);
    REQUIRE(it != running.end());
    std::vector<Admission> admissions;
    CHECK(sched.release(it->second, actual, now, admissions, timings));
    running.erase(it);
    absorb(admissions);
    check();
  }

  // Releases the oldest running request (by admission order).
  int finish_oldest(std::int64_t actual = -1) {
    for (int id : admitted_order) {
      if (running.count(id)) {
        finish(id, actual);
        return id;
      }
    }
    FAIL("nothing running");
    return -1;
  }

  bool cancel(int id) {
    for (auto& [value, tid] : ticket_to_id) {
      if (tid == id) {
        std::vector<Admission> admissions;
        bool ok = sched.cancel(Ticket{value}, now, admissions);
        ticket_to_id.erase(value);
        absorb(admissions);
        check();
        return ok;
      }
    }
    return false;
  }

  std::vector<int> advance_to(Time t) {
    now = t;
    std::vector<Ticket> expired;
    std::vector<Admission> admissions;
    sched.expire(now, expired, admissions);
    std::vector<int> ids;
    for (Ticket tk : expired) {
      auto it = ticket_to_id.find(tk.value);
      REQUIRE(it != ticket_to_id.end());
      ids.push_back(it->second);
      ticket_to_id.erase(it);
    }
    absorb(admissions);
    check();
    return ids;
  }

  // Observations of the fleet, as the network layer reports them.
  void set_up(core::BackendId b, bool up) {
    std::vector<Admission> admissions;
    sched.observe_up(b, up, now, admissions);
    absorb(admissions);
    check();
  }
  void set_resident(core::BackendId b, std::vector<std::string> models) {
    std::vector<Admission> admissions;
    sched.observe_resident(b, models, now, admissions);
    absorb(admissions);
    check();
  }
  void set_catalog(core::BackendId b, std::vector<std::string> models) {
    std::vector<Admission> admissions;
    sched.observe_catalog(b, models, now, admissions);
    absorb(admissions);
    check();
  }
  // The request's backend failed before answering: move it. Returns the new backend, if any.
  std::optional<core::BackendId> reroute(int id) {
    std::vector<Admission> admissions;
    auto moved = sched.reroute(running.at(id), now, admissions);
    if (moved) backend_of[id] = *moved;
    absorb(admissions);
    check();
    return moved;
  }

  // No backend had room for the move: back into the queue (Scheduler::requeue).
  std::optional<core::RequeueResult> requeue(int id) {
    std::vector<Admission> admissions;
    auto result = sched.requeue(running.at(id), now, admissions);
    if (result) {
      running.erase(id);
      if (result->kind == core::RequeueResult::Kind::admitted) {
        running[id] = result->permit;
        backend_of[id] = result->backend;
        admitted_order.push_back(id);
      } else if (result->kind == core::RequeueResult::Kind::parked) {
        ticket_to_id[result->ticket.value] = id;
      }
    }
    absorb(admissions);
    check();
    return result;
  }

  bool is_running(int id) const { return running.count(id) > 0; }
  bool is_parked(int id) const {
    for (auto& [_, tid] : ticket_to_id) {
      if (tid == id) return true;
    }
    return false;
  }

  void check() const {
    std::string violation = sched.check_invariants();
    REQUIRE_MESSAGE(violation.empty(), violation);
  }
};

inline SchedulerConfig paid_free_config(std::int64_t max_concurrency = 2) {
  SchedulerConfig config;
  config.max_concurrency = max_concurrency;
  config.max_queue = 1'000'000;
  config.queue_timeout_cap = std::chrono::hours(24);
  config.workloads = {
      {.name = "paid",
       .match = {{"tier", {"paid"}}},
       .priority = 8,
       .queue_timeout = std::chrono::hours(24)},
      {.name = "free",
       .match = {{"tier", {"free"}}},
       .priority = 1,
       .queue_timeout = std::chrono::hours(24)},
  };
  config.default_workload = {
      .name = "default", .priority = 1, .queue_timeout = std::chrono::hours(24)};
  return config;
}

}  // namespace sluice::test
