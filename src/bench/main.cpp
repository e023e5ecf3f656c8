// sluice-bench: replays a scenario against an Ollama-compatible URL and reports what each tier
// of users experienced (see docs/experiment.md).
//
//   sluice-bench run --scenario FILE --target URL... --out DIR [--label NAME] [--sim-stats URL]...
//   sluice-bench report --out DIR [--scenario FILE] [--baseline LABEL] RUN_DIR...
//   sluice-bench check FILE
//   sluice-bench fleet FILE     one line per backend of the scenario's fleet: NAME SIM-FLAGS...
//
// `run` writes DIR/requests.csv, DIR/summary.json, DIR/summary.md and DIR/chart.svg and prints
// the Markdown table; `report` reads several run folders and writes the side-by-side comparison
// (comparison.md, comparison.json, chart.svg) plus the scenario's targets, met or missed.
// Exit status: 0 on success, 1 when a run had failed requests or (with --fail-on-missed) a
// target was missed, 2 on bad input.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "adaptive_cmd.hpp"
#include "sluice/bench/adaptive.hpp"
#include "sluice/bench/load.hpp"
#include "sluice/bench/report.hpp"
#include "sluice/bench/scenario.hpp"
#include "sluice/bench/stats.hpp"

namespace {

using namespace sluice::bench;
namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const fs::path& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::string text;
  text.resize(max_bytes + 1);
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(std::size_t(in.gcount()));
  if (text.size() > max_bytes)
    throw std::runtime_error(path.string() + " is larger than " + std::to_string(max_bytes) +
                             " bytes");
  return text;
}

std::string run_id_for(const std::string& label) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return label + "-" + std::to_string(getpid()) + "-" +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

struct RunArgs {
  std::string scenario, out, label = "run", run_id;
  std::vector<std::string> targets, sim_stats;
  double time_scale = 0;
  std::size_t max_in_flight = 4096;
  bool no_progress = false;
  std::string watch_state;
  std::vector<std::string> live_changes;
  double rate_scale = 1;
};

// One socket per request in flight: raise the soft limit on open files towards the hard one
// (Debian's default soft limit, 1024, is below a burst of a few thousand requests).
void raise_open_file_limit(std::size_t wanted) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t target = std::min<rlim_t>(lim.rlim_max, rlim_t(wanted));
  if (lim.rlim_cur >= target) return;
  lim.rlim_cur = target;
  setrlimit(RLIMIT_NOFILE, &lim);
}

int cmd_run(const RunArgs& a) {
  Scenario scenario = load_scenario_file(a.scenario);
  if (a.rate_scale != 1) scale_poisson_rates(scenario, a.rate_scale);
  const Plan plan = make_plan(scenario);
  raise_open_file_limit(std::min(plan.total_requests, a.max_in_flight) + 64);
  std::string why;
  LoadOptions opt;
  for (const auto& url : a.targets) {
    auto target = parse_http_target(url, &why);
    if (!target) throw std::invalid_argument("--target: " + why);
    opt.targets.push_back(*target);
  }
  for (const auto& url : a.sim_stats) {
    auto stats = parse_http_target(url, &why);
    if (!stats) throw std::invalid_argument("--sim-stats: " + why);
    opt.sim_stats.push_back(*stats);
  }
  opt.time_scale = a.time_scale;
  if (opt.time_scale == 0) {
    opt.time_scale = 1;
    if (!opt.sim_stats.empty()) {
      auto scale = probe_time_scale(opt.sim_stats, &why);
      if (!scale) throw std::runtime_error("--sim-stats: cannot read the time scale: " + why);
      opt.time_scale = *scale;
    }
  }
  opt.max_in_flight = a.max_in_flight;
  opt.label = a.label;
  opt.run_id = a.run_id.empty() ? run_id_for(a.label) : a.run_id;
  opt.progress = !a.no_progress;
  if (!a.watch_state.empty()) {
    auto admin = parse_http_target(a.watch_state, &why);
    if (!admin) throw std::invalid_argument("--watch-state: " + why);
    opt.watch_state = *admin;
  }
  for (const auto& text : a.live_changes) {
    auto change = parse_live_change(text, &why);
    if (!change) throw std::invalid_argument("--sim-config-at " + text + ": " + why);
    opt.live_changes.push_back(*change);
  }
  std::sort(opt.live_changes.begin(), opt.live_changes.end(),
            [](const LiveChange& x, const LiveChange& y) { return x.at_s < y.at_s; });

  LoadResult result = run_load(scenario, plan, opt);
  Summary summary = summarize(result.records, result.upstream);
  summary.scenario = scenario.name;
  summary.label = a.label;
  for (const auto& t : opt.targets) {
    if (!summary.target.empty()) summary.target += ',';
    summary.target += t.to_string();
  }
  summary.time_scale = opt.time_scale;
  summary.truncated = result.truncated;
  summary.notes = {
      {"time", opt.time_scale == 1
                   ? "seconds of wall time"
                   : "simulated seconds: wall time x time_scale (the simulator's clock)"},
      {"percentiles", "nearest rank over ok requests"},
      {"span", "first send to last response end"},
      {"utilisation",
       "union of the upstream's generation intervals (slot acquired to end, from /sim/stats) "
       "inside the span, divided by the span"},
      {"jain", "Jain's index of the per-user mean latency of ok requests"},
      {"run_id", opt.run_id},
      {"wall_seconds", format_number(result.wall_s)}};
  if (a.rate_scale != 1) summary.notes.emplace_back("rate_scale", format_number(a.rate_scale));
  for (std::size_t i = 0; i < result.notes.size(); ++i)
    summary.notes.emplace_back("watch_" + std::to_string(i), result.notes[i]);

  fs::create_directories(a.out);
  const fs::path dir(a.out);
  write_file(dir / "requests.csv", write_csv(result.records));
  if (result.upstream.available)
    write_file(dir / "upstream.csv", write_upstream_csv(result.intervals));
  if (opt.watch_state) write_file(dir / "limits.csv", write_limits_csv(result.limits));
  write_file(dir / "summary.json", summary_to_json(summary).dump(2) + "\n");
  std::vector<Run> runs{{summary, result.records}};
  const std::string fleet_table = fleet_markdown_table(runs);
  const std::string eta_table = eta_markdown_table(runs);
  const std::string table = markdown_table(runs) + (fleet_table.empty() ? "" : "\n" + fleet_table) +
                            (eta_table.empty() ? "" : "\n" + eta_table);
  write_file(dir / "summary.md", "# " + scenario.name + " — " + a.label + "\n\n" + table);
  write_file(dir / "chart.svg", svg_chart(runs, scenario.name + " — " + a.label));
  std::cout << table;
  if (!summary.upstream.available)
    std::cout << "\n(upstream utilisation unknown: " << summary.upstream.note << ")\n";
  return summary.failed == 0 ? 0 : 1;
}

struct ReportArgs {
  std::string out, scenario, baseline, title;
  std::vector<std::string> runs;
  bool fail_on_missed = false;
};

int cmd_report(const ReportArgs& a) {
  std::vector<Run> runs;
  for (const auto& dir : a.runs) {
    const fs::path p(dir);
    Run run;
    run.summary =
        summary_from_json(nlohmann::json::parse(read_file(p / "summary.json", 64 * 1024 * 1024)));
    run.records = parse_csv(read_file(p / "requests.csv", 512 * 1024 * 1024));
    runs.push_back(std::move(run));
  }
  std::string targets_json, name = runs.empty() ? "" : runs.front().summary.scenario;
  if (!a.scenario.empty()) {
    const Scenario s = load_scenario_file(a.scenario);
    targets_json = s.targets_json;
    name = s.name;
  }
  const auto results = evaluate_targets(targets_json, runs);
  std::ostringstream md;
  md << "# " << name << "\n\n" << markdown_table(runs, a.baseline);
  if (const auto fleet = fleet_markdown_table(runs); !fleet.empty()) md << "\n" << fleet;
  if (const auto eta = eta_markdown_table(runs); !eta.empty()) md << "\n" << eta;
  if (!results.empty()) md << "\n" << targets_markdown(results);
  nlohmann::json j;
  j["scenario"] = name;
  j["baseline"] = a.baseline;
  j["runs"] = nlohmann::json::array();
  for (const auto& r : runs)
    j["runs"].push_back(summary_to_json(r.summary));
  j["targets"] = nlohmann::json::array();
  for (const auto& r : results)
    j["targets"].push_back({{"name", r.name}, {"status", r.status}, {"detail", r.detail}});

  fs::create_directories(a.out);
  const fs::path dir(a.out);
  write_file(dir / "comparison.md", md.str());
  write_file(dir / "comparison.json", j.dump(2) + "\n");
  write_file(dir / "chart.svg", svg_chart(runs, a.title.empty() ? name : a.title));
  std::cout << md.str();
  const bool missed = std::any_of(results.begin(), results.end(),
                                  [](const TargetResult& r) { return r.status == "missed"; });
  return a.fail_on_missed && missed ? 1 : 0;
}

int cmd_check(const std::string& path) {
  const Scenario s = load_scenario_file(path);
  const Plan plan = make_plan(s);
  std::cout << s.name << ": " << s.groups.size() << " group(s), " << plan.users.size()
            << " user(s), " << plan.total_requests << " request(s)\n";
  for (const auto& g : s.groups)
    std::cout << "  " << g.name << ": " << g.users << " x " << g.requests_per_user
              << " request(s), tier " << g.tier << ", prompts " << g.prompt_list << " ("
              << s.prompt_lists.at(g.prompt_list).size() << ")\n";
  if (!s.models.empty()) {
    std::vector<std::size_t> per_model(s.models.size());
    for (const auto& u : plan.users)
      for (const auto& r : u.requests)
        ++per_model[r.model];
    std::cout << "  models:";
    for (std::size_t i = 0; i < s.models.size(); ++i)
      std::cout << (i ? ", " : " ") << s.models[i].name << " " << per_model[i];
    std::cout << "\n";
  }
  double last_due = 0;
  for (const auto& u : plan.users)
    for (const auto& r : u.requests)
      last_due = std::max(last_due, r.send_at_s);
  std::cout << "  last open-loop request due at " << format_number(last_due) << " s\n";
  if (s.fleet)
    std::cout << "  fleet: " << s.fleet->backends.size() << " backend(s), --parallel "
              << s.fleet->parallel << ", --max-loaded " << s.fleet->max_loaded << ", --load-time "
              << s.fleet->load_time << "\n";
  return 0;
}

// One line per backend: its name, then its sluice-sim flags (no --listen, --time-scale, --seed),
// separated by single spaces (no value contains one). Nothing for a scenario without a fleet.
int cmd_fleet(const std::string& path) {
  const Scenario s = load_scenario_file(path);
  if (!s.fleet) return 0;
  for (std::size_t i = 0; i < s.fleet->backends.size(); ++i) {
    std::cout << s.fleet->backends[i].name;
    for (const auto& arg : s.fleet->sim_args(i))
      std::cout << ' ' << arg;
    std::cout << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-bench: replays a load scenario against an Ollama-compatible URL and "
      "reports latency per tier (docs/experiment.md)",
      "sluice-bench"};
  app.require_subcommand(1);

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "run one scenario against one target");
  run_cmd->add_option("--scenario", run.scenario, "scenario JSON (config/scenarios/*.json)")
      ->required()
      ->check(CLI::ExistingFile);
  run_cmd
      ->add_option("--target", run.targets,
                   "base URL of the Ollama API (http://HOST:PORT); repeated: user i of the plan "
                   "sends to the (i mod n)-th")
      ->required();
  run_cmd->add_option("--out", run.out, "folder for requests.csv, summary.json/.md, chart.svg")
      ->required();
  run_cmd->add_option("--label", run.label, "name of this run (before, after, ...)")
      ->capture_default_str();
  run_cmd->add_option("--sim-stats", run.sim_stats,
                      "base URL of a sluice-sim (its /sim/stats gives the upstream's busy time, "
                      "model loads and time scale); repeat for a fleet: loads and busy time are "
                      "summed");
  run_cmd
      ->add_option("--time-scale", run.time_scale,
                   "simulated seconds per wall second; default: the simulator's (from "
                   "--sim-stats), else 1")
      ->check(CLI::Range(0.0, 100000.0));
  run_cmd
      ->add_option("--max-in-flight", run.max_in_flight,
                   "requests open at once at most (the rest wait in the generator)")
      ->check(CLI::Range(std::size_t(1), std::size_t(60000)))
      ->capture_default_str();
  run_cmd->add_option("--run-id", run.run_id, "sent as X-Bench-Run (default: label-pid-time)");
  run_cmd->add_flag("--no-progress", run.no_progress, "no progress line on stderr");
  run_cmd->add_option("--watch-state", run.watch_state,
                      "sluice's admin URL: poll GET /admin/state during the run and write the "
                      "limit in force over time to limits.csv");
  run_cmd->add_option("--sim-config-at", run.live_changes,
                      "SECONDS=JSON: POST JSON to the first --sim-stats' /sim/config at that run "
                      "time (simulated seconds); repeatable");
  run_cmd
      ->add_option("--rate-scale", run.rate_scale,
                   "multiply every Poisson group's rate (the same load for a bigger backend)")
      ->check(CLI::Range(0.001, 1000.0));

  AdaptiveArgs adaptive;
  auto* adaptive_cmd = app.add_subcommand(
      "adaptive", "issue 13's benchmark: one group of runs (auto and static limits) as a table");
  adaptive_cmd->add_option("--out", adaptive.out, "Markdown file to write")->required();
  adaptive_cmd->add_option("--title", adaptive.title, "heading of the table")->required();
  adaptive_cmd->add_option("--from", adaptive.from_s,
                           "measure from this run time on (simulated seconds)");
  adaptive_cmd->add_option("--converge-from", adaptive.converge_from_s,
                           "measure the time to converge from here (default: --from)");
  adaptive_cmd
      ->add_option("--max-converge", adaptive.max_converge_s,
                   "the convergence target, simulated seconds")
      ->capture_default_str();
  adaptive_cmd->add_option("runs", adaptive.runs, "run folders: labels auto or static-N")
      ->required()
      ->check(CLI::ExistingDirectory);

  LimitChartArgs chart;
  auto* chart_cmd =
      app.add_subcommand("limit-chart", "the limit over time of runs (limits.csv) as an SVG");
  chart_cmd->add_option("--out", chart.out, "SVG file to write")->required();
  chart_cmd->add_option("--title", chart.title, "chart title")->required();
  chart_cmd->add_option("panels", chart.panels, "TITLE=DIR[,DIR...]: one panel per argument")
      ->required();

  ReportArgs report;
  auto* report_cmd =
      app.add_subcommand("report", "compare run folders side by side and check targets");
  report_cmd->add_option("--out", report.out, "folder for comparison.md/.json and chart.svg")
      ->required();
  report_cmd->add_option("--scenario", report.scenario, "scenario whose targets to check")
      ->check(CLI::ExistingFile);
  report_cmd->add_option("--baseline", report.baseline, "label of the run ratios refer to");
  report_cmd->add_option("--title", report.title, "chart title (default: the scenario's name)");
  report_cmd->add_flag("--fail-on-missed", report.fail_on_missed, "exit 1 if a target is missed");
  report_cmd->add_option("runs", report.runs, "run folders, in the order to show them")
      ->required()
      ->check(CLI::ExistingDirectory);

  std::string check_path;
  auto* check_cmd = app.add_subcommand("check", "validate a scenario and show its plan");
  check_cmd->add_option("scenario", check_path, "scenario JSON")->required();

  std::string fleet_path;
  auto* fleet_cmd = app.add_subcommand(
      "fleet", "print the scenario's fleet: per backend, its name and sluice-sim flags");
  fleet_cmd->add_option("scenario", fleet_path, "scenario JSON")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*run_cmd) return cmd_run(run);
    if (*report_cmd) return cmd_report(report);
    if (*check_cmd) return cmd_check(check_path);
    if (*fleet_cmd) return cmd_fleet(fleet_path);
    if (*adaptive_cmd) return cmd_adaptive(adaptive);
    if (*chart_cmd) return cmd_limit_chart(chart);
  } catch (const ScenarioError& e) {
    std::cerr << "sluice-bench: " << e.what() << "\n";
    return 2;
  } catch (const ReportError& e) {
    std::cerr << "sluice-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "sluice-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sluice-bench: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
