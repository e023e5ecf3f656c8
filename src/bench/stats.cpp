// Percentiles, Jain's index, interval unions and run summaries (see
// include/sluice/bench/stats.hpp for the definitions).
#include "sluice/bench/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace sluice::bench {

std::optional<double> percentile(std::vector<double> values, double p) {
  if (values.empty() || !(p > 0) || p > 100) return std::nullopt;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * double(values.size()) - 1e-9);
  const auto i = std::size_t(std::clamp(rank, 1.0, double(values.size()))) - 1;
  return values[i];
}

std::optional<double> jain_index(const std::vector<double>& values) {
  if (values.empty()) return std::nullopt;
  double sum = 0, squares = 0;
  for (double v : values) {
    sum += v;
    squares += v * v;
  }
  if (!(squares > 0)) return std::nullopt;
  return sum * sum / (double(values.size()) * squares);
}

double union_length(std::vector<std::pair<double, double>> intervals, double lo, double hi) {
  if (!(hi > lo)) return 0;
  std::sort(intervals.begin(), intervals.end());
  double total = 0;
  double cur_begin = 0, cur_end = 0;
  bool open = false;
  for (auto [b, e] : intervals) {
    b = std::max(b, lo);
    e = std::min(e, hi);
    if (!(e > b)) continue;
    if (open && b <= cur_end) {
      cur_end = std::max(cur_end, e);
      continue;
    }
    if (open) total += cur_end - cur_begin;
    cur_begin = b;
    cur_end = e;
    open = true;
  }
  if (open) total += cur_end - cur_begin;
  return total;
}

Distribution distribution(const std::vector<double>& values) {
  Distribution d;
  d.n = values.size();
  if (values.empty()) return d;
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  d.p50 = percentile(sorted, 50);
  d.p90 = percentile(sorted, 90);
  d.p99 = percentile(sorted, 99);
  d.max = sorted.back();
  d.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / double(sorted.size());
  return d;
}

double run_span(const std::vector<RequestRecord>& records) {
  double first = 0, last = 0;
  bool any = false;
  for (const auto& r : records) {
    if (r.outcome == "not_sent") continue;
    if (!any) {
      first = r.sent_s;
      last = r.end_s();
      any = true;
    }
    first = std::min(first, r.sent_s);
    last = std::max(last, r.end_s());
  }
  return any ? last - first : 0;
}

namespace {

double first_send(const std::vector<RequestRecord>& records) {
  double first = 0;
  bool any = false;
  for (const auto& r : records) {
    if (r.outcome == "not_sent") continue;
    first = any ? std::min(first, r.sent_s) : r.sent_s;
    any = true;
  }
  return first;
}

SubjectSummary summarize_subject(std::string kind, std::string name,
                                 const std::vector<const RequestRecord*>& records, double span) {
  SubjectSummary s;
  s.kind = std::move(kind);
  s.name = std::move(name);
  std::vector<double> latency, ttft, queue, eta_error, eta_rate_error;
  std::map<std::string, std::vector<const RequestRecord*>> by_user;
  for (const auto* r : records) {
    ++s.count;
    by_user[r->user].push_back(r);
    if (!r->ok()) {
      ++s.failed;
      continue;
    }
    ++s.ok;
    if (r->latency_s) latency.push_back(*r->latency_s);
    if (r->ttft_s) ttft.push_back(*r->ttft_s);
    if (r->queue_s) queue.push_back(*r->queue_s);
    // Scored against the wait left when the ETA was given (at parking, or later for a request
    // that parked before sluice had seen a completion).
    if (const double left = r->queue_s.value_or(0) - r->eta_after_s.value_or(0); left > 0) {
      if (r->eta_s) eta_error.push_back(std::abs(*r->eta_s - left) / left);
      if (r->eta_rate_s) eta_rate_error.push_back(std::abs(*r->eta_rate_s - left) / left);
    }
    s.output_tokens += r->output_tokens.value_or(0);
  }
  s.latency = distribution(latency);
  s.ttft = distribution(ttft);
  s.queue = distribution(queue);
  s.eta_error = distribution(eta_error);
  s.eta_rate_error = distribution(eta_rate_error);
  if (span > 0) s.tokens_per_s = double(s.output_tokens) / span;
  std::vector<double> means;
  for (const auto& [user, list] : by_user) {
    UserSummary u;
    u.user = user;
    std::vector<double> lat;
    for (const auto* r : list) {
      ++u.count;
      if (r->ok() && r->latency_s) {
        ++u.ok;
        lat.push_back(*r->latency_s);
      }
    }
    if (!lat.empty()) {
      u.mean_latency_s = std::accumulate(lat.begin(), lat.end(), 0.0) / double(lat.size());
      u.p90_latency_s = percentile(lat, 90);
      means.push_back(*u.mean_latency_s);
    }
    s.users.push_back(std::move(u));
  }
  s.jain = jain_index(means);
  return s;
}

}  // namespace

const SubjectSummary* Summary::find(const std::string& kind, const std::string& name) const {
  if (kind == "all") return &all;
  const auto& list = kind == "tier" ? tiers : groups;
  for (const auto& s : list)
    if (s.name == name) return &s;
  return nullptr;
}

Summary summarize(const std::vector<RequestRecord>& records, UpstreamUsage upstream) {
  Summary sum;
  sum.span_s = run_span(records);
  std::vector<const RequestRecord*> all;
  std::vector<std::string> tier_order, group_order;
  std::map<std::string, std::vector<const RequestRecord*>> tiers, groups;
  for (const auto& r : records) {
    all.push_back(&r);
    if (!tiers.count(r.tier)) tier_order.push_back(r.tier);
    if (!groups.count(r.group)) group_order.push_back(r.group);
    tiers[r.tier].push_back(&r);
    groups[r.group].push_back(&r);
  }
  sum.all = summarize_subject("all", "all", all, sum.span_s);
  sum.requests = sum.all.count;
  sum.ok = sum.all.ok;
  sum.failed = sum.all.failed;
  for (const auto& t : tier_order)
    sum.tiers.push_back(summarize_subject("tier", t, tiers[t], sum.span_s));
  for (const auto& g : group_order)
    sum.groups.push_back(summarize_subject("group", g, groups[g], sum.span_s));
  sum.upstream = std::move(upstream);
  return sum;
}

UpstreamUsage upstream_usage(const std::vector<RequestRecord>& records,
                             const std::vector<UpstreamInterval>& intervals) {
  UpstreamUsage u;
  u.available = true;
  u.records = intervals.size();
  const double lo = first_send(records);
  const double hi = lo + run_span(records);
  std::vector<std::pair<double, double>> list;
  std::vector<std::pair<double, int>> edges;
  for (const auto& i : intervals) {
    list.emplace_back(i.start_s, i.end_s);
    edges.emplace_back(i.start_s, +1);
    edges.emplace_back(i.end_s, -1);
  }
  u.busy_s = union_length(list, lo, hi);
  if (hi > lo) u.utilisation = std::min(1.0, u.busy_s / (hi - lo));
  // Ends sort before starts at the same instant: back-to-back requests do not overlap.
  std::sort(edges.begin(), edges.end());
  int active = 0;
  for (const auto& [t, delta] : edges) {
    active += delta;
    u.peak_active = std::max<std::size_t>(u.peak_active, std::size_t(std::max(active, 0)));
  }
  return u;
}

UpstreamUsage upstream_usage(const std::vector<RequestRecord>& records,
                             const std::vector<UpstreamObservation>& upstreams) {
  std::vector<UpstreamInterval> all;
  UpstreamUsage total;
  total.available = true;
  total.model_loads = 0;
  for (const auto& up : upstreams) {
    const UpstreamUsage one = upstream_usage(records, up.intervals);
    BackendUsage b;
    b.target = up.target;
    b.records = one.records;
    b.busy_s = one.busy_s;
    b.utilisation = one.utilisation;
    b.model_loads = up.model_loads;
    b.load_s = up.load_s;
    total.records += b.records;
    total.busy_s += b.busy_s;
    if (total.model_loads && up.model_loads) {
      *total.model_loads += *up.model_loads;
    } else {
      total.model_loads.reset();
    }
    total.load_s += up.load_s;
    total.backends.push_back(std::move(b));
    all.insert(all.end(), up.intervals.begin(), up.intervals.end());
  }
  if (upstreams.empty()) {
    total.model_loads.reset();
    return total;
  }
  // Peak across the fleet: all intervals together.
  total.peak_active = upstream_usage(records, all).peak_active;
  const double span = run_span(records);
  if (span > 0) total.utilisation = std::min(1.0, total.busy_s / (double(upstreams.size()) * span));
  return total;
}

}  // namespace sluice::bench
