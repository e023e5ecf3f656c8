// Plan expansion: a scenario's users and their requests, drawn from per-user seeded streams
// (see include/sluice/bench/scenario.hpp, make_plan).
#include <algorithm>
#include <cmath>

#include "sluice/bench/scenario.hpp"

namespace sluice::bench {
namespace {

// A header value template: {user}, {tier}, {group} and {index} (the user's number in its group)
// replaced; any other {name} is kept as written.
std::string expand(std::string_view tmpl, const std::string& user, const Group& group,
                   std::size_t index) {
  std::string out;
  for (std::size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] == '{') {
      const auto close = tmpl.find('}', i);
      if (close != std::string_view::npos) {
        const auto name = tmpl.substr(i + 1, close - i - 1);
        if (name == "user") {
          out += user;
        } else if (name == "tier") {
          out += group.tier;
        } else if (name == "group") {
          out += group.name;
        } else if (name == "index") {
          out += std::to_string(index);
        } else {
          out.append(tmpl.substr(i, close - i + 1));
        }
        i = close + 1;
        continue;
      }
    }
    out += tmpl[i++];
  }
  return out;
}

// A stable hash of a user's name: its random streams do not depend on the other users.
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

std::optional<int> draw_tokens(const TokenDistribution& d, Rng& rng) {
  switch (d.kind) {
    case TokenDistribution::Kind::none:
      return std::nullopt;
    case TokenDistribution::Kind::fixed:
      return d.value;
    case TokenDistribution::Kind::uniform:
      return d.min + int(rng.below(std::size_t(d.max - d.min) + 1));
    case TokenDistribution::Kind::lognormal: {
      const double mu = std::log(d.mean) - d.sigma * d.sigma / 2;
      const double x = std::exp(mu + d.sigma * rng.normal());
      return int(std::clamp(std::llround(x), (long long)d.min, (long long)d.max));
    }
  }
  return std::nullopt;
}

namespace {

// Index of the model whose cumulative weight first exceeds a uniform draw in [0, total).
std::size_t draw_model(const std::vector<WeightedModel>& models, double total, Rng& rng) {
  const double x = rng.uniform() * total;
  double cumulative = 0;
  for (std::size_t i = 0; i < models.size(); ++i) {
    cumulative += models[i].weight;
    if (x < cumulative) return i;
  }
  return models.size() - 1;  // x == total after rounding
}

}  // namespace

Plan make_plan(const Scenario& s) {
  Plan plan;
  double model_weight_total = 0;
  for (const auto& m : s.models)
    model_weight_total += m.weight;
  std::size_t index = 0;
  for (std::size_t gi = 0; gi < s.groups.size(); ++gi) {
    const Group& g = s.groups[gi];
    const TokenDistribution& tokens = g.num_predict ? *g.num_predict : s.num_predict;
    const auto& prompts = s.prompt_lists.at(g.prompt_list);
    for (std::size_t u = 0; u < g.users; ++u) {
      PlannedUser user;
      user.name = g.name + "-" + std::to_string(u + 1);
      user.group = gi;
      user.headers.push_back({s.user_header, user.name});
      user.headers.push_back({s.tier_header, g.tier});
      for (const auto& h : g.headers)
        user.headers.push_back({h.name, expand(h.value, user.name, g, u + 1)});
      Rng rng(s.seed ^ fnv1a(user.name) ^ 0x5eed5eed5eedULL);
      Rng model_rng(s.seed ^ fnv1a(user.name) ^ 0x30de1530de15ULL);
      double t = g.arrival.start_s;
      for (std::size_t k = 0; k < g.requests_per_user; ++k) {
        PlannedRequest req;
        req.index = index++;
        req.sequence = k;
        req.prompt = rng.below(prompts.size());
        req.num_predict = draw_tokens(tokens, rng);
        if (!s.models.empty()) req.model = draw_model(s.models, model_weight_total, model_rng);
        switch (g.arrival.mode) {
          case Arrival::Mode::burst:
            req.send_at_s = g.arrival.start_s;
            break;
          case Arrival::Mode::poisson:
            t += rng.exponential(1.0 / g.arrival.rate_per_s);
            req.send_at_s = t;
            break;
          case Arrival::Mode::closed_loop:
            req.send_at_s = g.arrival.start_s;
            if (k > 0)
              req.think_before_s = g.arrival.think_exponential
                                       ? rng.exponential(g.arrival.think_mean_s)
                                       : g.arrival.think_mean_s;
            break;
        }
        user.requests.push_back(req);
      }
      plan.users.push_back(std::move(user));
    }
  }
  plan.total_requests = index;
  return plan;
}

}  // namespace sluice::bench
