// Scenario parsing (see include/sluice/bench/scenario.hpp; the plan is made in plan.cpp).
//
// Every object is read through Reader, which declares the keys it knows, so an unknown key
// (a typo) is an error naming it instead of being ignored. The first problem found throws a
// ScenarioError whose message starts with the field's path.
#include "sluice/bench/scenario.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace sluice::bench {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw ScenarioError(path + ": " + why);
}

// Throws ScenarioError("cannot open PATH" / "PATH is larger than N bytes").
std::string read_bounded_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ScenarioError("cannot open " + path);
  std::string text;
  text.resize(max_bytes + 1);
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(std::size_t(in.gcount()));
  if (text.size() > max_bytes)
    throw ScenarioError(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  return text;
}

bool valid_header_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

bool valid_header_value(std::string_view value) {
  return value.size() <= 1024 && std::none_of(value.begin(), value.end(), [](char c) {
           return c == '\r' || c == '\n' || c == '\0';
         });
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// Reads one JSON object; remembers which keys were read so the rest can be reported.
class Reader {
 public:
  Reader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object_.is_object()) fail(display(), "must be an object");
  }

  std::string at(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  std::string display() const { return path_.empty() ? "scenario" : path_; }

  const json* find(std::string_view key) {
    known_.insert(std::string(key));
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  std::string string(std::string_view key, std::string fallback, std::size_t max_bytes = 4096) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(at(key), "must be a string");
    auto s = v->get<std::string>();
    if (s.size() > max_bytes) fail(at(key), "longer than " + std::to_string(max_bytes) + " bytes");
    return s;
  }

  std::string required_string(std::string_view key) {
    if (!object_.contains(key)) fail(at(key), "is required");
    return string(key, "");
  }

  double number(std::string_view key, double fallback, double min, double max) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(at(key), "must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < min || d > max)
      fail(at(key), "must be between " + fmt(min) + " and " + fmt(max) + ", not " + fmt(d));
    return d;
  }

  std::int64_t integer(std::string_view key, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number_integer()) fail(at(key), "must be an integer");
    const auto i = v->get<std::int64_t>();
    if (i < min || i > max)
      fail(at(key), "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                        ", not " + std::to_string(i));
    return i;
  }

  void check_unknown() const {
    for (const auto& [key, value] : object_.items())
      if (!known_.count(key) && key != "$comment") fail(at(key), "unknown key");
  }

  static std::string fmt(double d) {
    std::ostringstream out;
    out << d;
    return out.str();
  }

 private:
  const json& object_;
  std::string path_;
  std::set<std::string> known_;
};

TokenDistribution parse_tokens(const json& value, const std::string& path) {
  TokenDistribution d;
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v < 1 || v > 1'000'000) fail(path, "must be between 1 and 1000000");
    d.kind = TokenDistribution::Kind::fixed;
    d.value = int(v);
    return d;
  }
  if (value.is_null()) return d;
  Reader r(value, path);
  const auto kind = r.required_string("distribution");
  if (kind == "none") {
  } else if (kind == "fixed") {
    d.kind = TokenDistribution::Kind::fixed;
    d.value = int(r.integer("value", 0, 1, 1'000'000));
    if (d.value == 0) fail(r.at("value"), "is required");
  } else if (kind == "uniform") {
    d.kind = TokenDistribution::Kind::uniform;
    d.min = int(r.integer("min", 0, 1, 1'000'000));
    d.max = int(r.integer("max", 0, 1, 1'000'000));
    if (d.min == 0) fail(r.at("min"), "is required");
    if (d.max == 0) fail(r.at("max"), "is required");
    if (d.max < d.min) fail(r.at("max"), "must be >= min");
  } else if (kind == "lognormal") {
    d.kind = TokenDistribution::Kind::lognormal;
    d.mean = r.number("mean", 0, 1, 1'000'000);
    if (d.mean == 0) fail(r.at("mean"), "is required");
    d.sigma = r.number("sigma", 0.5, 0, 3);
    d.min = int(r.integer("min", 1, 1, 1'000'000));
    d.max = int(r.integer("max", 1'000'000, 1, 1'000'000));
    if (d.max < d.min) fail(r.at("max"), "must be >= min");
  } else {
    fail(r.at("distribution"),
         "must be \"none\", \"fixed\", \"uniform\" or \"lognormal\", not \"" + kind + "\"");
  }
  r.check_unknown();
  return d;
}

Arrival parse_arrival(const json& value, const std::string& path) {
  Reader r(value, path);
  Arrival a;
  const auto mode = r.string("mode", "burst");
  a.start_s = r.number("start_s", 0, 0, kMaxSeconds);
  if (mode == "burst") {
    a.mode = Arrival::Mode::burst;
  } else if (mode == "poisson") {
    a.mode = Arrival::Mode::poisson;
    a.rate_per_s = r.number("rate_per_s", 0, 1e-6, 1e6);
    if (a.rate_per_s == 0) fail(r.at("rate_per_s"), "is required for mode \"poisson\"");
  } else if (mode == "closed_loop") {
    a.mode = Arrival::Mode::closed_loop;
    a.think_mean_s = r.number("think_time_s", 0, 0, kMaxSeconds);
    const auto dist = r.string("think_time_distribution", "fixed");
    if (dist != "fixed" && dist != "exponential")
      fail(r.at("think_time_distribution"), "must be \"fixed\" or \"exponential\"");
    a.think_exponential = dist == "exponential";
  } else {
    fail(r.at("mode"),
         "must be \"burst\" (all at once), \"poisson\" or \"closed_loop\", not \"" + mode + "\"");
  }
  r.check_unknown();
  return a;
}

std::vector<std::string> load_prompt_list(const json& value, const std::string& path,
                                          const std::string& base_dir) {
  std::vector<std::string> prompts;
  if (value.is_array()) {
    if (value.size() > kMaxPromptsPerList)
      fail(path, "more than " + std::to_string(kMaxPromptsPerList) + " prompts");
    for (std::size_t i = 0; i < value.size(); ++i) {
      const auto at = path + "[" + std::to_string(i) + "]";
      if (!value[i].is_string()) fail(at, "must be a string");
      auto p = value[i].get<std::string>();
      if (p.empty()) fail(at, "must not be empty");
      if (p.size() > kMaxPromptBytes)
        fail(at, "longer than " + std::to_string(kMaxPromptBytes) + " bytes");
      prompts.push_back(std::move(p));
    }
  } else if (value.is_string()) {
    auto file = value.get<std::string>();
    if (file.empty()) fail(path, "must name a file");
    if (file.front() != '/' && !base_dir.empty()) file = base_dir + "/" + file;
    try {
      prompts = parse_prompt_lines(read_bounded_file(file, kMaxPromptFileBytes), file);
    } catch (const ScenarioError& e) {
      fail(path, e.what());
    }
  } else {
    fail(path, "must be a file name or an array of prompts");
  }
  if (prompts.empty()) fail(path, "holds no prompt");
  return prompts;
}

bool same_header(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// "path[i]" (built with +=: GCC 12 warns falsely, -Wrestrict, on "[" + std::to_string(i)).
std::string indexed(const std::string& path, std::size_t i) {
  std::string out = path;
  out += '[';
  out += std::to_string(i);
  out += ']';
  return out;
}

// A model name as it goes on sluice-sim's comma-separated --models: no separators, no spaces.
bool valid_model_name(std::string_view name) {
  return !name.empty() && name.size() <= 256 && std::none_of(name.begin(), name.end(), [](char c) {
    return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0';
  });
}

std::vector<WeightedModel> parse_models(const json& value, const std::string& path) {
  if (!value.is_array() || value.empty()) fail(path, "must be a non-empty array");
  if (value.size() > kMaxModels) fail(path, "more than " + std::to_string(kMaxModels) + " models");
  std::vector<WeightedModel> models;
  std::set<std::string> names;
  for (std::size_t i = 0; i < value.size(); ++i) {
    Reader r(value[i], indexed(path, i));
    WeightedModel m;
    m.name = r.required_string("name");
    if (!valid_model_name(m.name))
      fail(r.at("name"), "1-256 bytes without commas, spaces or line breaks");
    if (!names.insert(m.name).second) fail(r.at("name"), "duplicate model \"" + m.name + "\"");
    m.weight = r.number("weight", 1, 1e-9, 1e9);
    r.check_unknown();
    models.push_back(std::move(m));
  }
  return models;
}

// A duration as sluice-sim takes it: a number of seconds, or a Go duration string (checked by
// sluice-sim; here only its characters).
std::string parse_duration_text(const json* value, std::string fallback, const std::string& path) {
  if (!value) return fallback;
  if (value->is_number()) {
    const double d = value->get<double>();
    if (!std::isfinite(d) || d < -kMaxSeconds || d > kMaxSeconds)
      fail(path, "must be between -" + Reader::fmt(kMaxSeconds) + " and " +
                     Reader::fmt(kMaxSeconds) + " seconds");
    return Reader::fmt(d);
  }
  if (!value->is_string()) fail(path, "must be a number of seconds or a duration like \"3s\"");
  auto text = value->get<std::string>();
  const bool ok =
      !text.empty() && text.size() <= 32 && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '-' || c == '+';
      });
  if (!ok) fail(path, "must be a number of seconds or a duration like \"3s\"");
  return text;
}

FleetSpec parse_fleet(const json& value, const std::string& path) {
  Reader r(value, path);
  FleetSpec f;
  f.parallel = int(r.integer("parallel", 1, 1, 1024));
  f.max_loaded = int(r.integer("max_loaded", 0, 0, 1024));
  f.load_time = parse_duration_text(r.find("load_time"), f.load_time, r.at("load_time"));
  f.keep_alive = parse_duration_text(r.find("keep_alive"), f.keep_alive, r.at("keep_alive"));
  f.decode_rate = r.number("decode_rate", f.decode_rate, 0.001, 1e6);
  const json* backends = r.find("backends");
  if (!backends || !backends->is_array() || backends->empty())
    fail(r.at("backends"), "must be a non-empty array");
  if (backends->size() > kMaxFleetBackends)
    fail(r.at("backends"), "more than " + std::to_string(kMaxFleetBackends) + " backends");
  std::set<std::string> names;
  for (std::size_t i = 0; i < backends->size(); ++i) {
    Reader b(backends->at(i), indexed(r.at("backends"), i));
    FleetBackend backend;
    backend.name = b.required_string("name");
    if (!valid_name(backend.name)) fail(b.at("name"), "1-64 of A-Z a-z 0-9 - _ .");
    if (!names.insert(backend.name).second)
      fail(b.at("name"), "duplicate backend \"" + backend.name + "\"");
    const json* models = b.find("models");
    if (!models || !models->is_array() || models->empty())
      fail(b.at("models"), "must be a non-empty array of model names");
    if (models->size() > kMaxModels)
      fail(b.at("models"), "more than " + std::to_string(kMaxModels) + " models");
    for (std::size_t m = 0; m < models->size(); ++m) {
      const std::string mat = indexed(b.at("models"), m);
      const json& name = models->at(m);
      if (!name.is_string() || !valid_model_name(name.get<std::string>()))
        fail(mat, "must be a model name (1-256 bytes without commas, spaces or line breaks)");
      backend.models.push_back(name.get<std::string>());
    }
    backend.decode_rate_factor = b.number("decode_rate_factor", 1, 0.001, 1000);
    b.check_unknown();
    f.backends.push_back(std::move(backend));
  }
  r.check_unknown();
  return f;
}

}  // namespace

std::vector<std::string> FleetSpec::sim_args(std::size_t i) const {
  const FleetBackend& b = backends.at(i);
  std::string models;
  for (const auto& m : b.models) {
    if (!models.empty()) models += ',';
    models += m;
  }
  return {"--parallel",    std::to_string(parallel),
          "--max-loaded",  std::to_string(max_loaded),
          "--load-time",   load_time,
          "--keep-alive",  keep_alive,
          "--decode-rate", Reader::fmt(decode_rate * b.decode_rate_factor),
          "--models",      models};
}

const std::string& model_of(const Scenario& s, const PlannedRequest& r) {
  return s.models.empty() ? s.model : s.models.at(r.model).name;
}

std::size_t Scenario::total_requests() const {
  std::size_t total = 0;
  for (const auto& g : groups)
    total += g.users * g.requests_per_user;
  return total;
}

std::string_view api_path(Api api) {
  return api == Api::chat ? "/api/chat" : "/api/generate";
}

std::vector<std::string> parse_prompt_lines(std::string_view text, std::string_view source) {
  std::vector<std::string> prompts;
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
      line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    if (line.size() > kMaxPromptBytes)
      throw ScenarioError(std::string(source) + ":" + std::to_string(line_no) +
                          ": prompt longer than " + std::to_string(kMaxPromptBytes) + " bytes");
    if (prompts.size() == kMaxPromptsPerList)
      throw ScenarioError(std::string(source) + ": more than " +
                          std::to_string(kMaxPromptsPerList) + " prompts");
    prompts.emplace_back(line);
  }
  return prompts;
}

Scenario parse_scenario(std::string_view text, std::string_view source,
                        const std::string& base_dir) {
  if (text.size() > kMaxScenarioBytes)
    throw ScenarioError(std::string(source) + ": larger than " + std::to_string(kMaxScenarioBytes) +
                        " bytes");
  json doc;
  try {
    doc = json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw ScenarioError(std::string(source) + ": not valid JSON: " + e.what());
  }
  try {
    Scenario s;
    Reader r(doc, "");
    s.name = r.required_string("name");
    if (!valid_name(s.name)) fail("name", "1-64 of A-Z a-z 0-9 - _ .");
    s.description = r.string("description", "");
    s.seed = std::uint64_t(r.integer("seed", 1, 0, std::numeric_limits<std::int64_t>::max()));
    s.model = r.string("model", s.model, 256);
    if (s.model.empty()) fail("model", "must not be empty");
    if (const json* models = r.find("models")) {
      if (doc.contains("model")) fail("models", "give \"model\" or \"models\", not both");
      s.models = parse_models(*models, "models");
    }
    const auto api = r.string("api", "generate");
    if (api == "generate") {
      s.api = Api::generate;
    } else if (api == "chat") {
      s.api = Api::chat;
    } else {
      fail("api", "must be \"generate\" or \"chat\", not \"" + api + "\"");
    }
    s.user_header = r.string("user_header", s.user_header);
    if (!valid_header_name(s.user_header)) fail("user_header", "not a valid header name");
    s.tier_header = r.string("tier_header", s.tier_header);
    if (!valid_header_name(s.tier_header)) fail("tier_header", "not a valid header name");
    s.max_duration_s = r.number("max_duration_s", s.max_duration_s, 0.001, kMaxSeconds);
    s.request_timeout_s = r.number("request_timeout_s", s.request_timeout_s, 0.001, kMaxSeconds);
    if (const json* np = r.find("num_predict")) s.num_predict = parse_tokens(*np, "num_predict");

    const json* lists = r.find("prompts");
    if (!lists) fail("prompts", "is required (an object: list name -> file or array)");
    if (!lists->is_object() || lists->empty())
      fail("prompts", "must be an object naming at least one list");
    for (const auto& [name, value] : lists->items()) {
      if (!valid_name(name)) fail("prompts." + name, "list names are 1-64 of A-Z a-z 0-9 - _ .");
      s.prompt_lists[name] = load_prompt_list(value, "prompts." + name, base_dir);
    }

    const json* groups = r.find("groups");
    if (!groups || !groups->is_array() || groups->empty())
      fail("groups", "must be a non-empty array");
    if (groups->size() > kMaxGroups)
      fail("groups", "more than " + std::to_string(kMaxGroups) + " groups");
    std::set<std::string> group_names;
    for (std::size_t i = 0; i < groups->size(); ++i) {
      const std::string path = "groups[" + std::to_string(i) + "]";
      Reader g(groups->at(i), path);
      Group group;
      group.name = g.required_string("name");
      if (!valid_name(group.name)) fail(g.at("name"), "1-64 of A-Z a-z 0-9 - _ .");
      if (!group_names.insert(group.name).second)
        fail(g.at("name"), "duplicate group name \"" + group.name + "\"");
      group.users = std::size_t(g.integer("users", 1, 1, std::int64_t(kMaxUsersPerGroup)));
      group.tier = g.required_string("tier");
      if (!valid_name(group.tier)) fail(g.at("tier"), "1-64 of A-Z a-z 0-9 - _ .");
      group.prompt_list = g.string("prompts", group.tier);
      if (!s.prompt_lists.count(group.prompt_list))
        fail(g.at("prompts"), "no prompt list named \"" + group.prompt_list + "\"");
      group.requests_per_user =
          std::size_t(g.integer("requests_per_user", 1, 1, std::int64_t(kMaxRequests)));
      if (const json* a = g.find("arrival")) group.arrival = parse_arrival(*a, g.at("arrival"));
      if (const json* np = g.find("num_predict"))
        group.num_predict = parse_tokens(*np, g.at("num_predict"));
      if (const json* h = g.find("headers")) {
        if (!h->is_object()) fail(g.at("headers"), "must be an object of name -> value");
        if (h->size() > kMaxHeadersPerGroup)
          fail(g.at("headers"), "more than " + std::to_string(kMaxHeadersPerGroup) + " headers");
        for (const auto& [name, value] : h->items()) {
          const auto at = g.at("headers") + "." + name;
          if (!valid_header_name(name)) fail(at, "not a valid header name");
          if (same_header(name, s.user_header) || same_header(name, s.tier_header) ||
              same_header(name, "Host") || same_header(name, "Content-Type") ||
              same_header(name, "Content-Length") || same_header(name, "Transfer-Encoding") ||
              same_header(name, "Connection") || same_header(name, "X-Bench-Run") ||
              same_header(name, "X-Request-Id"))
            fail(at, "set by sluice-bench itself");
          if (!value.is_string()) fail(at, "must be a string");
          if (!valid_header_value(value.get<std::string>()))
            fail(at, "must be at most 1024 bytes without line breaks");
          group.headers.push_back({name, value.get<std::string>()});
        }
      }
      g.check_unknown();
      s.groups.push_back(std::move(group));
    }
    if (s.total_requests() > kMaxRequests)
      fail("groups", "more than " + std::to_string(kMaxRequests) + " requests in total (" +
                         std::to_string(s.total_requests()) + ")");

    if (const json* t = r.find("targets")) {
      if (!t->is_array()) fail("targets", "must be an array");
      s.targets_json = t->dump();
    }
    if (const json* f = r.find("fleet")) {
      s.fleet = parse_fleet(*f, "fleet");
      std::vector<std::string> wanted;
      if (s.models.empty()) wanted.push_back(s.model);
      for (const auto& m : s.models)
        wanted.push_back(m.name);
      for (const auto& m : wanted) {
        const bool served =
            std::any_of(s.fleet->backends.begin(), s.fleet->backends.end(), [&](const auto& b) {
              return std::find(b.models.begin(), b.models.end(), m) != b.models.end();
            });
        if (!served) fail("fleet.backends", "no backend serves model \"" + m + "\"");
      }
    }
    r.check_unknown();
    return s;
  } catch (const ScenarioError& e) {
    throw ScenarioError(std::string(source) + ": " + e.what());
  }
}

Scenario load_scenario_file(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string base = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string text;
  try {
    text = read_bounded_file(path, kMaxScenarioBytes);
  } catch (const ScenarioError& e) {
    throw ScenarioError(std::string("scenario: ") + e.what());
  }
  return parse_scenario(text, path, base);
}

}  // namespace sluice::bench
