// Command-line parsing (CLI11) and applying the overrides to a Config. See cli.hpp.
//
// Overrides go through the config parser: the base Config is dumped to JSON (dump_config), the
// flag values are written into that document, and parse_config() validates the result. A
// diagnostic on an overridden field is reported under the flag's name.
#include "sluice/app/cli.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sluice/auth/auth.hpp"
#include "sluice/core/duration.hpp"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

namespace sluice::app {

std::string upstreams_summary(const config::Config& config) {
  if (!config.fleet) {
    std::string text = "proxying to ";
    text.append(config.upstream.url);
    return text;
  }
  std::string text = "fleet of ";
  text.append(std::to_string(config.backends.size()));
  text.append(config.backends.size() == 1 ? " backend: " : " backends: ");
  for (std::size_t i = 0; i < config.backends.size(); ++i) {
    if (i > 0) text.append(", ");
    text.append(config.backends[i].name).append("=").append(config.backends[i].upstream.url);
  }
  return text;
}

std::string version_string() {
  return std::string("sluice ") + SLUICE_VERSION;
}

CliParse parse_command_line(int argc, const char* const* argv) {
  CliParse result;
  CliOptions& o = result.options;
  CLI::App app{
      "sluice: a scheduling reverse proxy for Ollama. Point apps at it instead of Ollama; "
      "GPU-heavy requests are queued fairly by user, tier and priority.",
      "sluice"};
  app.set_version_flag("--version", version_string());
  app.get_formatter()->column_width(34);

  auto* config = app.add_option("--config", o.config_file,
                                "config file (JSON with comments; see docs/configuration.md); "
                                "SIGHUP and POST /admin/reload re-read it");
  config->type_name("FILE");
  app.add_option("--check-config", o.check_config,
                 "validate FILE (with any overrides), print every error, and exit: 0 when valid")
      ->type_name("FILE");

  Overrides& v = o.overrides;
  app.add_option("--listen", v.listen, "override listen: HOST:PORT clients connect to")
      ->type_name("HOST:PORT");
  app.add_option("--admin-listen", v.admin_listen,
                 "override admin_listen: HOST:PORT of /metrics, /healthz, /readyz, /admin/*; "
                 "\"\" disables it")
      ->type_name("HOST:PORT");
  app.add_option("--upstream", v.upstream_url,
                 "override upstream.url, e.g. http://127.0.0.1:11434 (not with upstreams in the "
                 "config)")
      ->type_name("URL");
  app.add_option("--backend", v.backends,
                 "a backend of a fleet, NAME=URL[,SLOTS] (SLOTS: its max_concurrency, default 1); "
                 "repeat for each. Replaces the config's upstreams and upstream.url; the fleet is "
                 "then capped only by --max-concurrency, if given")
      ->type_name("NAME=URL[,SLOTS]")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--max-concurrency", v.max_concurrency,
                 "override scheduler.max_concurrency: requests running upstream at once")
      ->type_name("N");
  app.add_option("--log-level", v.log_level,
                 "override log.level: trace, debug, info, warn, error, critical, off")
      ->type_name("LEVEL");
  app.add_option("--log-format", v.log_format, "override log.format: text or json")
      ->type_name("FORMAT");

  CLI::App* hash = app.add_subcommand(
      "hash-key",
      "print the SHA-256 of an API key or admin token read from standard input (for "
      "auth.keys[].sha256 and auth.admin_token_sha256); the key never appears in argv");
  hash->add_flag("--generate", o.generate_key,
                 "generate a new random key instead; print it and its SHA-256");
  hash->callback([&o] { o.hash_key = true; });

  CLI::App* health = app.add_subcommand(
      "healthcheck",
      "probe a running sluice (for container health checks): GET /healthz on the admin listener "
      "of the effective config (--config and overrides, before or after the subcommand; "
      "0.0.0.0 and :: are probed on loopback); with admin_listen \"\", check that the client "
      "listener accepts a connection instead. Exit 0 when healthy, else 1");
  health->add_flag("--ready", o.health_ready,
                   "GET /readyz instead: also unhealthy while the upstream is unreachable (in a "
                   "fleet: while no backend is up) or sluice is shutting down (needs the admin "
                   "listener)");
  std::string health_timeout = "3s";
  health
      ->add_option("--timeout", health_timeout,
                   "give up after this long in total (\"3s\", \"500ms\"; default 3s)")
      ->type_name("DURATION")
      ->check([](const std::string& text) {
        std::string why;
        auto d = core::parse_duration(text, &why);
        if (!d) return "not a duration (" + why + "): " + text;
        if (*d <= core::Duration::zero()) return std::string("must be > 0");
        return std::string();
      });
  // --config and the overrides belong to the main command; accept them after `healthcheck` too.
  health->fallthrough();
  health->callback([&o, &health_timeout] {
    o.healthcheck = true;
    o.health_timeout = *core::parse_duration(health_timeout);
  });

  std::ostringstream out;
  std::ostringstream err;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    result.exit_code = app.exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    result.exit_code = app.exit(e, out, err);
  } catch (const CLI::CallForVersion& e) {
    result.exit_code = app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    app.exit(e, out, err);
    result.exit_code = kExitUsage;
  }
  result.output = out.str();
  result.error_output = err.str();
  return result;
}

std::optional<std::string> hash_key_output(bool generate, std::string_view input) {
  if (generate) {
    std::string key = auth::generate_key();
    return "key: " + key + "\nsha256: " + auth::sha256_hex(key) + "\n";
  }
  std::string_view key = input.substr(0, input.find('\n'));
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) {
    key.remove_suffix(1);
  }
  while (!key.empty() && (key.front() == ' ' || key.front() == '\t'))
    key.remove_prefix(1);
  if (key.empty()) return std::nullopt;
  return auth::sha256_hex(key) + "\n";
}

namespace {

struct BackendFlag {
  std::string name;
  std::string url;
  std::int64_t slots = 1;
};

/// NAME=URL[,SLOTS] of one --backend; nullopt with `why` set when it is not that shape (the URL
/// and the name are checked by the config loader, which names the field).
std::optional<BackendFlag> parse_backend_flag(std::string_view spec, std::string* why) {
  const std::size_t eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size()) {
    *why = "expected NAME=URL[,SLOTS] (e.g. gpu-a=http://10.0.0.5:11434,2), not \"";
    why->append(spec);
    why->push_back('"');
    return std::nullopt;
  }
  BackendFlag flag{.name = std::string(spec.substr(0, eq))};
  std::string_view rest = spec.substr(eq + 1);
  if (const std::size_t comma = rest.rfind(','); comma != std::string_view::npos) {
    const std::string_view digits = rest.substr(comma + 1);
    std::int64_t slots = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), slots);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
      *why = "SLOTS after the last ',' must be an integer, not \"";
      why->append(digits);
      why->append("\" (in \"");
      why->append(spec);
      why->append("\")");
      return std::nullopt;
    }
    flag.slots = slots;  // bounds: the loader's, on upstreams[i].max_concurrency
    rest = rest.substr(0, comma);
  }
  flag.url = std::string(rest);
  return flag;
}

}  // namespace

config::ConfigResult apply_overrides(const config::Config& base, const Overrides& overrides) {
  if (overrides.empty()) {
    config::ConfigResult same;
    same.config = base;
    return same;
  }
  nlohmann::ordered_json doc = nlohmann::ordered_json::parse(config::dump_config(base));
  // (flag, config field) of each override given, to name the flag in diagnostics.
  std::vector<std::pair<std::string, std::string>> given;
  if (overrides.listen) {
    doc["listen"] = *overrides.listen;
    given.emplace_back("--listen", "listen");
  }
  if (overrides.admin_listen) {
    doc["admin_listen"] = *overrides.admin_listen;
    given.emplace_back("--admin-listen", "admin_listen");
  }
  // With upstreams in the file there is no single upstream to replace (reported below).
  const bool upstream_conflict = overrides.upstream_url && base.fleet;
  if (overrides.upstream_url && !upstream_conflict) {
    doc["upstream"]["url"] = *overrides.upstream_url;
    given.emplace_back("--upstream", "upstream.url");
  }
  std::vector<std::string> backend_errors;
  if (!overrides.backends.empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const std::string& spec : overrides.backends) {
      std::string why;
      if (auto backend = parse_backend_flag(spec, &why)) {
        list.push_back(
            {{"name", backend->name}, {"url", backend->url}, {"max_concurrency", backend->slots}});
      } else {
        backend_errors.push_back(std::move(why));
      }
    }
    if (doc.contains("upstream")) doc["upstream"].erase("url");
    doc["upstreams"] = std::move(list);
    // The file's max_concurrency was its single upstream's slots (or its own fleet's cap).
    if (doc.contains("scheduler")) doc["scheduler"].erase("max_concurrency");
    given.emplace_back("--backend", "upstreams");
  }
  if (overrides.max_concurrency) {
    doc["scheduler"]["max_concurrency"] = *overrides.max_concurrency;
    given.emplace_back("--max-concurrency", "scheduler.max_concurrency");
  }
  if (overrides.log_level) {
    doc["log"]["level"] = *overrides.log_level;
    given.emplace_back("--log-level", "log.level");
  }
  if (overrides.log_format) {
    doc["log"]["format"] = *overrides.log_format;
    given.emplace_back("--log-format", "log.format");
  }

  config::ConfigResult result = config::parse_config(doc.dump(2), "command line");
  if (upstream_conflict) {
    result.errors.insert(
        result.errors.begin(),
        {"command line", 0, "--upstream",
         "the config lists upstreams (a fleet); --upstream replaces upstream.url, the single "
         "Ollama of a config without upstreams: use upstreams or --upstream, not both"});
    result.config.reset();
  }
  if (overrides.upstream_url && !overrides.backends.empty()) {
    result.errors.insert(result.errors.begin(),
                         {"command line", 0, "--upstream",
                          "--upstream (one Ollama) and --backend (a fleet) exclude each other"});
    result.config.reset();
  }
  for (std::string& why : backend_errors) {
    result.errors.push_back({"command line", 0, "--backend", std::move(why)});
    result.config.reset();
  }
  // Line numbers refer to the generated document, which means nothing to the operator.
  for (auto* list : {&result.errors, &result.warnings}) {
    for (config::ConfigDiagnostic& d : *list) {
      d.line = 0;
      for (const auto& [flag, field] : given) {
        if (d.field == field) {
          d.field = flag;
          break;
        }
        // upstreams[1].url: the second --backend's URL.
        if (d.field.starts_with(field + "[")) {
          d.field = flag + " (" + d.field + ")";
          break;
        }
      }
    }
  }
  return result;
}

config::ConfigResult load_effective_config(const std::optional<std::string>& config_file,
                                           const Overrides& overrides) {
  config::ConfigResult file =
      config_file ? config::load_config_file(*config_file) : config::parse_config("{}", "defaults");
  if (!file.ok()) return file;
  config::ConfigResult result = apply_overrides(*file.config, overrides);
  // Warnings about the file keep their file position; the overrides' own come after.
  if (!overrides.empty()) {
    std::vector<config::ConfigDiagnostic> warnings = std::move(file.warnings);
    for (config::ConfigDiagnostic& w : result.warnings) {
      if (w.source == "command line" && w.field.starts_with("--")) warnings.push_back(w);
    }
    result.warnings = std::move(warnings);
  } else {
    result.warnings = std::move(file.warnings);
  }
  return result;
}

}  // namespace sluice::app
