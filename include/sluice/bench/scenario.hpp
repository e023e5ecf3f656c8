// sluice-bench scenarios: what load to generate, read from a JSON file (comments allowed) in
// config/scenarios/, and expanded into a deterministic plan of requests.
//
// A scenario names user groups (how many users, their tier, the headers they send, how many
// prompts each fires and how: all at once, at a Poisson rate, or in a closed loop with think
// time), the prompt lists they draw from, the `num_predict` distribution, a seed, bounds on the
// run, and optionally the targets the experiment checks (see targets.hpp). Requests ask for one
// `model`, or for one drawn per request from a weighted `models` list. A scenario may also
// describe the `fleet` of simulators scripts/experiment.sh starts for it (the benchmark does not
// use it; `sluice-bench fleet` prints it for the script).
//
// Invariants of a Scenario returned by parse_scenario(): every group names a prompt list that
// exists; counts and times are inside the bounds below; the total number of requests is at most
// kMaxRequests. Every time in a scenario is in *simulated* seconds: a run against a simulator
// running F times faster than real time waits F times less (see docs/experiment.md).
//
// make_plan() is pure and deterministic: the same scenario (same seed) always yields the same
// users, prompts, models, num_predict values, send offsets and think times. Models are drawn
// from a stream of their own, so adding a `models` list leaves everything else of a plan as it
// was. It uses its own generator
// (SplitMix64) and distributions, so the plan does not depend on the standard library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/core/splitmix.hpp"

namespace sluice::bench {

inline constexpr std::size_t kMaxRequests = 100'000;
inline constexpr std::size_t kMaxUsersPerGroup = 10'000;
inline constexpr std::size_t kMaxGroups = 64;
inline constexpr std::size_t kMaxPromptsPerList = 10'000;
inline constexpr std::size_t kMaxPromptBytes = 64 * 1024;
inline constexpr std::size_t kMaxPromptFileBytes = 4 * 1024 * 1024;
inline constexpr std::size_t kMaxScenarioBytes = 1024 * 1024;
inline constexpr std::size_t kMaxHeadersPerGroup = 32;
inline constexpr double kMaxSeconds = 30.0 * 24 * 3600;
inline constexpr std::size_t kMaxModels = 64;
inline constexpr std::size_t kMaxFleetBackends = 16;

/// A scenario that cannot be used: the message names the field ("groups[1].users: ...").
class ScenarioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How many tokens each request asks for (`options.num_predict`).
struct TokenDistribution {
  enum class Kind { none, fixed, uniform, lognormal };
  Kind kind = Kind::none;  ///< none: the request sets no num_predict (the model decides)
  int value = 0;           ///< fixed
  int min = 1, max = 1;    ///< uniform bounds; clamp of lognormal
  double mean = 0;         ///< lognormal: mean of the distribution (before clamping)
  double sigma = 0;        ///< lognormal: sigma of the log
};

struct Arrival {
  enum class Mode { burst, poisson, closed_loop };
  Mode mode = Mode::burst;
  double start_s = 0;              ///< when the user's first request is due, after the run starts
  double rate_per_s = 0;           ///< poisson: mean requests per second, per user
  double think_mean_s = 0;         ///< closed loop: pause between a response and the next request
  bool think_exponential = false;  ///< closed loop: exponential think time (else fixed)
};

struct Header {
  std::string name;
  std::string value;  ///< may contain {user}, {tier}, {group}, {index}
};

struct Group {
  std::string name;
  std::size_t users = 1;
  std::string tier;
  std::string prompt_list;  ///< key into Scenario::prompt_lists
  std::size_t requests_per_user = 1;
  Arrival arrival;
  std::optional<TokenDistribution> num_predict;  ///< overrides the scenario's
  std::vector<Header> headers;                   ///< sent in addition to user and tier
};

enum class Api { generate, chat };

/// One entry of a scenario's `models` list: requests ask for `name` with probability
/// weight / (sum of the weights).
struct WeightedModel {
  std::string name;
  double weight = 1;
};

/// One simulated backend of a fleet (scripts/experiment.sh starts one sluice-sim per entry).
struct FleetBackend {
  std::string name;                 ///< as in sluice's `upstreams[].name`
  std::vector<std::string> models;  ///< served (--models); the first max_loaded start resident
  double decode_rate_factor = 1;    ///< this backend decodes at decode_rate x factor
};

/// The fleet a scenario runs against. Durations are Go durations or seconds, as sluice-sim's
/// flags take them (validated by sluice-sim when it starts).
struct FleetSpec {
  int parallel = 1;    ///< --parallel of every backend, and what a proxy admits per backend
  int max_loaded = 0;  ///< --max-loaded (0 = all of models)
  std::string load_time = "0";
  std::string keep_alive = "5m";
  double decode_rate = 60;  ///< tokens/s of one stream on a backend at factor 1
  std::vector<FleetBackend> backends;

  /// The sluice-sim flags of backend `i` (without --listen, --time-scale, --seed).
  std::vector<std::string> sim_args(std::size_t i) const;
};

struct Scenario {
  std::string name;
  std::string description;
  std::uint64_t seed = 1;
  std::string model = "mistral";      ///< every request's model, unless `models` is given
  std::vector<WeightedModel> models;  ///< when not empty: each request draws one
  Api api = Api::generate;
  std::string user_header = "X-User-Id";
  std::string tier_header = "X-Tier";
  std::map<std::string, std::vector<std::string>> prompt_lists;
  TokenDistribution num_predict;
  std::vector<Group> groups;
  double max_duration_s = 3600;     ///< the whole run; what is unfinished then is cut off
  double request_timeout_s = 1800;  ///< one request, from send to last byte
  /// Targets, kept as JSON text for targets.hpp (they name runs, which the scenario does not
  /// know about). Empty when the scenario declares none.
  std::string targets_json;
  std::optional<FleetSpec> fleet;

  std::size_t total_requests() const;
};

/// Parses scenario JSON. Prompt lists given as file names are resolved against `base_dir` and
/// read (one prompt per line; blank lines and lines starting with '#' are skipped); lists may
/// also be inline arrays. `source` names the text in messages. Throws ScenarioError.
Scenario parse_scenario(std::string_view text, std::string_view source,
                        const std::string& base_dir);

/// Reads and parses a scenario file (bounded by kMaxScenarioBytes). Throws ScenarioError.
Scenario load_scenario_file(const std::string& path);

/// Parses a prompt list (one per line, '#' comments). Throws ScenarioError naming `source`.
std::vector<std::string> parse_prompt_lines(std::string_view text, std::string_view source);

/// One request of the plan.
struct PlannedRequest {
  std::size_t index = 0;     ///< position in the whole plan (unique)
  std::size_t sequence = 0;  ///< position in the user's own sequence
  std::size_t prompt = 0;    ///< index into the group's prompt list
  std::size_t model = 0;     ///< index into Scenario::models (0 when it is empty)
  std::optional<int> num_predict;
  double send_at_s = 0;       ///< burst/poisson: when it is due; closed loop: unused
  double think_before_s = 0;  ///< closed loop: pause before sending (0 for the first)
};

struct PlannedUser {
  std::string name;
  std::size_t group = 0;        ///< index into Scenario::groups
  std::vector<Header> headers;  ///< everything sent, user and tier first, templates expanded
  std::vector<PlannedRequest> requests;
};

struct Plan {
  std::vector<PlannedUser> users;
  std::size_t total_requests = 0;
};

Plan make_plan(const Scenario& scenario);

/// The deterministic generator make_plan() draws from (sluice/core/splitmix.hpp).
using Rng = core::SplitMix64;

/// Draws one value; nullopt for Kind::none.
std::optional<int> draw_tokens(const TokenDistribution& distribution, Rng& rng);

std::string_view api_path(Api api);

/// The model `request` asks for: Scenario::models[request.model], or Scenario::model.
const std::string& model_of(const Scenario& scenario, const PlannedRequest& request);

}  // namespace sluice::bench
