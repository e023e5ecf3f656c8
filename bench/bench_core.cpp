// Scheduling core micro-benchmarks.
//
// BM_EnqueueDequeue: the queue holds `depth` parked requests from 1000 users spread over 4
// workloads (priorities 8, 4, 2, 1) while every slot is busy. Each iteration enqueues one new
// request (it parks) and releases one running request (which admits the next parked one in
// fair order), so the depth stays constant: one iteration = one enqueue + dequeue pair.
// Target (issue 2): <= 1 us per pair at depth 100 000.
//
// BM_ParkedMemory: bytes the core allocates per parked request (counted by a global operator
// new/delete hook while parking `depth` requests: live bytes, including the unused capacity of
// grown vectors). Target: <= 256 bytes.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "sluice/core/scheduler.hpp"

namespace {
std::atomic<std::int64_t> g_allocated{0};
}  // namespace

// Live heap bytes (as malloc sizes them), so vector growth that was freed again is not counted.
void* operator new(std::size_t n) {
  void* p = std::malloc(n);
  if (!p) throw std::bad_alloc();
  g_allocated.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)),
                        std::memory_order_relaxed);
  return p;
}
static void counted_free(void* p) noexcept {
  if (p) {
    g_allocated.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)),
                          std::memory_order_relaxed);
  }
  std::free(p);
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}

namespace {

using namespace sluice::core;
using namespace std::chrono_literals;

constexpr int kUsers = 1000;
constexpr int kSlots = 8;

SchedulerConfig bench_config(bool per_user_limit) {
  SchedulerConfig config;
  config.max_concurrency = kSlots;
  config.max_queue = 10'000'000;
  config.queue_timeout_cap = 240s;
  const char* names[] = {"w8", "w4", "w2", "w1"};
  double priorities[] = {8, 4, 2, 1};
  for (int i = 0; i < 4; ++i) {
    config.workloads.push_back({.name = names[i],
                                .match = {{"tier", {names[i]}}},
                                .priority = priorities[i],
                                .queue_timeout = 240s});
  }
  if (per_user_limit) config.per_key = {{.label = "user", .max_concurrency = 2}};
  return config;
}

struct Driver {
  explicit Driver(bool per_user_limit)
      : sched(bench_config(per_user_limit)), limit(per_user_limit) {
    for (int i = 0; i < kUsers; ++i)
      users.push_back("user-" + std::to_string(i));
  }

  Scheduler sched;
  bool limit;
  std::vector<std::string> users;
  std::deque<Permit> running;
  std::vector<Admission> admitted;
  std::mt19937 rng{7};
  Time now{};

  void enqueue() {
    const std::string& user = users[rng() % kUsers];
    std::string_view key = user;
    Request r{.workload = static_cast<WorkloadId>(rng() % 4),
              .fairness_key = user,
              .limit_keys = limit ? std::span<const std::string_view>(&key, 1)
                                  : std::span<const std::string_view>(),
              .cost = 50 + static_cast<std::int64_t>(rng() % 400)};
    admitted.clear();
    EnqueueResult result = sched.enqueue(r, now, admitted);
    if (result.kind == EnqueueResult::Kind::admitted) running.push_back(result.permit);
    for (const Admission& a : admitted)
      running.push_back(a.permit);
  }

  void release_one() {
    Permit p = running.front();
    running.pop_front();
    admitted.clear();
    sched.release(p, -1, now, admitted);
    for (const Admission& a : admitted)
      running.push_back(a.permit);
  }

  void fill(std::int64_t depth) {
    while (sched.parked() < depth) {
      now += 1us;
      enqueue();
    }
  }
};

void BM_EnqueueDequeue(benchmark::State& state) {
  Driver d(false);
  d.fill(state.range(0));
  for (auto _ : state) {
    d.now += 1us;
    d.enqueue();
    d.release_one();
  }
  state.counters["parked"] = static_cast<double>(d.sched.parked());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EnqueueDequeue)->Arg(10)->Arg(1'000)->Arg(100'000);

void BM_EnqueueDequeuePerUserLimit(benchmark::State& state) {
  Driver d(true);
  d.fill(state.range(0));
  for (auto _ : state) {
    d.now += 1us;
    d.enqueue();
    d.release_one();
  }
  state.counters["parked"] = static_cast<double>(d.sched.parked());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EnqueueDequeuePerUserLimit)->Arg(10)->Arg(1'000)->Arg(100'000);

// Park and cancel (the client-gone path) at depth.
void BM_EnqueueCancel(benchmark::State& state) {
  Driver d(false);
  d.fill(state.range(0));
  std::vector<Admission> scratch;
  const std::string user = "canceller";
  for (auto _ : state) {
    d.now += 1us;
    Request r{.workload = 3, .fairness_key = user, .cost = 100};
    EnqueueResult result = d.sched.enqueue(r, d.now, scratch);
    d.sched.cancel(result.ticket, d.now, scratch);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EnqueueCancel)->Arg(100'000);

void BM_ParkedMemory(benchmark::State& state) {
  for (auto _ : state) {
    Driver d(false);
    d.fill(1000);  // warm: users, accounts and classes exist
    std::int64_t before = g_allocated.load();
    std::int64_t parked_before = d.sched.parked();
    d.fill(state.range(0));
    std::int64_t bytes = g_allocated.load() - before;
    state.counters["bytes_per_parked"] =
        static_cast<double>(bytes) / static_cast<double>(d.sched.parked() - parked_before);
  }
}
BENCHMARK(BM_ParkedMemory)->Arg(100'000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
