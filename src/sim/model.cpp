// The pure GPU timing model of sluice-sim (see include/sluice/sim/model.hpp and
// docs/simulator.md). No clock, no I/O: every function maps numbers to numbers.
#include "sluice/sim/model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>

namespace sluice::sim {
namespace {

constexpr int kMaxScalingStreams = 1 << 16;

// Total throughput (in units of one solo stream) at `streams`, from the sorted table.
double total_throughput(const std::vector<ScalingPoint>& table, int streams) {
  if (streams <= table.front().streams) return table.front().retention * streams;
  for (std::size_t i = 1; i < table.size(); ++i) {
    const auto& lo = table[i - 1];
    const auto& hi = table[i];
    if (streams <= hi.streams) {
      const double t_lo = lo.retention * lo.streams;
      const double t_hi = hi.retention * hi.streams;
      const double f = double(streams - lo.streams) / double(hi.streams - lo.streams);
      return t_lo + (t_hi - t_lo) * f;
    }
  }
  const auto& last = table.back();
  return last.retention * last.streams;
}

Duration seconds_to_duration(double seconds) {
  const double ns = std::ceil(seconds * 1e9);
  if (ns >= double(std::numeric_limits<Duration::rep>::max())) return Duration::max();
  return Duration(Duration::rep(ns));
}

bool parse_number(std::string_view text, double& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(out);
}

bool parse_int(std::string_view text, int& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string> validate(const GpuParams& p) {
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  if (!positive(p.decode_tokens_per_second) || p.decode_tokens_per_second > 1e6)
    return "decode rate must be in (0, 1e6] tokens/s";
  if (!positive(p.prefill_tokens_per_second) || p.prefill_tokens_per_second > 1e8)
    return "prefill rate must be in (0, 1e8] tokens/s";
  if (!positive(p.mean_output_tokens) || p.mean_output_tokens > 1e6)
    return "mean output tokens must be in (0, 1e6]";
  if (!std::isfinite(p.output_length_sigma) || p.output_length_sigma < 0 ||
      p.output_length_sigma > 3)
    return "output length sigma must be in [0, 3]";
  if (p.max_output_tokens < 1 || p.max_output_tokens > 1'000'000)
    return "max output tokens must be in [1, 1000000]";
  if (p.scaling.empty() || p.scaling.front().streams != 1 || p.scaling.front().retention != 1.0)
    return "the scaling table must start with 1:1";
  for (std::size_t i = 0; i < p.scaling.size(); ++i) {
    const auto& pt = p.scaling[i];
    if (pt.streams < 1 || pt.streams > kMaxScalingStreams)
      return "scaling streams must be in [1, 65536]";
    if (!(pt.retention > 0 && pt.retention <= 1)) return "scaling retention must be in (0, 1]";
    if (i > 0 && pt.streams <= p.scaling[i - 1].streams)
      return "scaling streams must be strictly increasing";
  }
  return std::nullopt;
}

std::optional<std::vector<ScalingPoint>> parse_scaling(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<std::vector<ScalingPoint>> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (text.size() > 4096) return fail("scaling table too long");
  std::vector<ScalingPoint> points;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto colon = item.find(':');
    if (colon == std::string_view::npos)
      return fail("expected STREAMS:RETENTION, got '" + std::string(item) + "'");
    ScalingPoint pt;
    if (!parse_int(trim(item.substr(0, colon)), pt.streams) ||
        !parse_number(trim(item.substr(colon + 1)), pt.retention))
      return fail("expected STREAMS:RETENTION, got '" + std::string(item) + "'");
    points.push_back(pt);
  }
  if (points.empty()) return fail("empty scaling table");
  if (points.front().streams != 1) points.insert(points.begin(), ScalingPoint{1, 1.0});
  GpuParams check;
  check.scaling = points;
  if (auto why = validate(check)) return fail(*why);
  return points;
}

std::string format_scaling(const std::vector<ScalingPoint>& points) {
  std::string out;
  for (const auto& p : points) {
    if (!out.empty()) out += ',';
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "%d:%g", p.streams, p.retention);
    out.append(buf, std::size_t(n));
  }
  return out;
}

int prompt_tokens_for_chars(std::size_t chars) {
  const std::size_t tokens = (chars + 3) / 4;
  if (tokens > std::size_t(std::numeric_limits<int>::max())) return std::numeric_limits<int>::max();
  return std::max(1, int(tokens));
}

GpuModel::GpuModel(GpuParams params) : params_(std::move(params)) {}

double GpuModel::retention(int active) const {
  const int n = std::max(1, active);
  return total_throughput(params_.scaling, n) / n;
}

double GpuModel::stream_tokens_per_second(int active) const {
  return params_.decode_tokens_per_second * retention(active);
}

Duration GpuModel::token_interval(int active) const {
  return seconds_to_duration(1.0 / stream_tokens_per_second(active));
}

Duration GpuModel::prefill_duration(int prompt_tokens) const {
  return seconds_to_duration(std::max(0, prompt_tokens) / params_.prefill_tokens_per_second);
}

int GpuModel::drawn_output_tokens(std::uint64_t request_seed) const {
  Rng rng(request_seed ^ 0x6f75747075745f6cULL);
  const double sigma = params_.output_length_sigma;
  // Log-normal with E[X] = mean: mu = ln(mean) - sigma^2 / 2.
  const double mu = std::log(params_.mean_output_tokens) - sigma * sigma / 2;
  const double x = std::exp(mu + sigma * rng.normal());
  const double clamped = std::clamp(std::round(x), 1.0, double(params_.max_output_tokens));
  return int(clamped);
}

std::vector<PredictedTiming> predict_fifo(const GpuModel& model, int parallel,
                                          const std::vector<PlannedRequest>& requests) {
  enum class Phase { waiting, prefill, decode, done };
  struct State {
    Phase phase = Phase::waiting;
    Duration next{0};
    int tokens = 0;
    bool needs_interval = false;
  };
  const std::size_t n = requests.size();
  std::vector<PredictedTiming> out(n);
  std::vector<State> st(n);
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return requests[a].arrival < requests[b].arrival;
  });
  std::size_t next_admit = 0;  // index into order: everything before it has started
  int active = 0;
  std::size_t finished = 0;
  Duration now{0};
  const int slots = std::max(1, parallel);

  while (finished < n) {
    // Pass 1: every event due now (prefill end, token emitted, release).
    for (std::size_t i = 0; i < n; ++i) {
      auto& s = st[i];
      if ((s.phase != Phase::prefill && s.phase != Phase::decode) || s.next != now) continue;
      if (s.phase == Phase::prefill) {
        s.phase = Phase::decode;
        s.needs_interval = true;
        continue;
      }
      ++s.tokens;
      if (s.tokens == 1) out[i].first_token = now;
      if (s.tokens >= std::max(1, requests[i].output_tokens)) {
        s.phase = Phase::done;
        out[i].end = now;
        --active;
        ++finished;
      } else {
        s.needs_interval = true;
      }
    }
    // Pass 2: hand free slots to arrived requests, first come first served.
    while (next_admit < n && active < slots && requests[order[next_admit]].arrival <= now) {
      const std::size_t i = order[next_admit++];
      ++active;
      out[i].start = now;
      st[i].phase = Phase::prefill;
      st[i].next = now + model.prefill_duration(requests[i].prompt_tokens);
    }
    // Pass 3: streams starting a token now see the slot count after this instant's changes.
    for (auto& s : st) {
      if (!s.needs_interval) continue;
      s.needs_interval = false;
      s.next = now + model.token_interval(active);
    }
    // Advance to the next event.
    Duration next = Duration::max();
    for (const auto& s : st)
      if (s.phase == Phase::prefill || s.phase == Phase::decode) next = std::min(next, s.next);
    if (next_admit < n && active < slots)
      next = std::min(next, std::max(now, requests[order[next_admit]].arrival));
    if (next == Duration::max()) break;
    now = next;
  }
  return out;
}

std::uint64_t hash_text(std::uint64_t seed, std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  // Final avalanche so nearby texts give unrelated seeds.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

std::string WordGenerator::next_token() {
  static constexpr std::array<std::string_view, 32> kSyllables = {
      "ka",  "lo",  "mi", "ren", "sa", "tu",  "vel", "no", "ra",  "di", "en",
      "tor", "pa",  "li", "mor", "an", "se",  "ko",  "ti", "ber", "la", "un",
      "fa",  "ris", "do", "ma",  "ne", "quo", "si",  "al", "ve",  "ton"};
  // One token in eight closes a clause, so text reads like sentences.
  const std::uint64_t roll = rng_.next() % 16;
  if (!first_ && !capitalize_ && roll < 2) {
    capitalize_ = roll == 0;
    return roll == 0 ? "." : ",";
  }
  std::string word;
  const int syllables = 1 + int(rng_.next() % 3);
  for (int i = 0; i < syllables; ++i)
    word += kSyllables[rng_.next() % kSyllables.size()];
  if (capitalize_) word[0] = char(std::toupper(static_cast<unsigned char>(word[0])));
  capitalize_ = false;
  if (first_) {
    first_ = false;
    return word;
  }
  return " " + word;
}

std::vector<float> embedding(std::uint64_t seed, std::string_view text, int dims, bool normalize) {
  Rng rng(hash_text(seed ^ 0x656d626564ULL, text));
  std::vector<float> v(std::size_t(std::max(0, dims)));
  double norm = 0;
  for (auto& x : v) {
    x = float(rng.uniform() * 2.0 - 1.0);
    norm += double(x) * double(x);
  }
  if (normalize && norm > 0) {
    const double inv = 1.0 / std::sqrt(norm);
    for (auto& x : v)
      x = float(double(x) * inv);
  }
  return v;
}

}  // namespace sluice::sim
