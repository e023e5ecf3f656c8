// Scheduling core micro-benchmarks.
//
// BM_EnqueueDequeue: the queue holds `depth` parked requests from 1000 users spread over 4
// workloads (priorities 8, 4, 2, 1) while every slot is busy. Each iteration enqueues one new
// request (it parks) and releases one running request (which admits the next parked one in
// fair order), so the depth stays constant: one iteration = one enqueue + dequeue pair.
// Target (issue 2): <= 1 us per pair at depth 100 000.
//
// BM_DistinctKeys: every request carries a fairness key never seen before (anyone can send a new
// X-User-Id), is enqueued (admitted at once: kSlots requests are in flight) and later released.
// Reports the CPU time per request over the first, the second and the last 10 % of `n` requests,
// last / first, the idle-account visits per request, and the heap the scheduler holds per
// remembered idle account at the end. Once kMaxIdleAccounts keys are remembered (at 100 000
// requests), each request also forgets the oldest, so the first 10 % of 1 000 000 is the only
// part without that erase. Target (issue 10): last / first <= 1.5 at 1 000 000 requests.
//
// BM_ParkedMemory: bytes the core allocates per parked request (counted by a global operator
// new/delete hook while parking `depth` requests: live bytes, including the unused capacity of
// grown vectors). Target: <= 256 bytes.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
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

// CPU time this thread has used, in ns (immune to time spent descheduled on a busy machine).
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void BM_DistinctKeys(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const std::int64_t tenth = n / 10;
  std::vector<std::string> keys;
  keys.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    keys.push_back("key-" + std::to_string(i));
  for (auto _ : state) {
    const std::int64_t heap_before = g_allocated.load();
    Scheduler sched(bench_config(false));
    std::deque<Permit> running;
    std::vector<Admission> admitted;
    Time now{};
    double first_ns = 0, second_ns = 0;
    double phase = thread_cpu_ns();
    for (std::int64_t i = 0; i < n; ++i) {
      if (i == tenth || i == 2 * tenth || i == n - tenth) {
        const double t = thread_cpu_ns();
        if (i == tenth) first_ns = t - phase;
        if (i == 2 * tenth) second_ns = t - phase;
        phase = t;
      }
      now += 1us;
      Request r{.workload = static_cast<WorkloadId>(i % 4),
                .fairness_key = keys[static_cast<std::size_t>(i)],
                .cost = 100};
      EnqueueResult result = sched.enqueue(r, now, admitted);
      running.push_back(result.permit);
      if (running.size() == kSlots) {
        sched.release(running.front(), 100, now, admitted);
        running.pop_front();
      }
    }
    const double last_ns = thread_cpu_ns() - phase;
    const auto per_request = [&](double ns) { return ns / static_cast<double>(tenth); };
    state.counters["first10_cpu_ns"] = per_request(first_ns);
    state.counters["second10_cpu_ns"] = per_request(second_ns);
    state.counters["last10_cpu_ns"] = per_request(last_ns);
    state.counters["last_over_first"] = last_ns / first_ns;
    const IdleAccountStats idle = sched.idle_account_stats();
    const auto remembered = static_cast<double>(idle.remembered);
    state.counters["idle_remembered"] = remembered;
    state.counters["idle_visits_per_request"] =
        static_cast<double>(idle.visits) / static_cast<double>(n);
    // Nearly all the scheduler holds at the end is remembered idle accounts.
    state.counters["bytes_per_remembered"] =
        static_cast<double>(g_allocated.load() - heap_before) / remembered;
  }
}
BENCHMARK(BM_DistinctKeys)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

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
