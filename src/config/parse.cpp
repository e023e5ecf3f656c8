// parse_config(): JSON text -> validated Config, or diagnostics naming field and line; and
// dump_config(), its inverse, and config_description(), both from the same tables.
//
// Steps: bound the size; scan the text into a SourceMap (positions, nesting depth, duplicate
// keys); parse with nlohmann::json (comments ignored; its syntax errors carry the byte offset);
// then walk the tree section by section (sections.cpp, sections_fleet.cpp, parse_scheduler.cpp).
// Every object is described once, by a table of its fields (fields.hpp), which drives reading, the
// unknown-key check, the dump and the description, so they cannot drift apart. A bad value records
// a diagnostic at its JSON pointer (turned into a line by the SourceMap) and leaves the default in
// place, so one run reports every independent problem; the Config is only returned when there is
// none. Where one field bounds another, the default of the one the file leaves out follows the one
// it sets; only two set values can contradict each other (docs/configuration.md, "Derived
// defaults").
#include <algorithm>
#include <nlohmann/json.hpp>

#include "sections.hpp"
#include "sluice/config/config.hpp"
#include "sluice/config/description.hpp"
#include "sluice/config/source_map.hpp"

namespace sluice::config {
namespace {

using detail::Path;
using nlohmann::json;

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 3,
// column 5: " prefix (we print our own position).
std::string syntax_message(const json::parse_error& e) {
  std::string what = e.what();
  const std::string marker = "parse error";
  std::size_t at = what.find(marker);
  if (at != std::string::npos) {
    std::size_t colon = what.find(": ", at);
    if (colon != std::string::npos) what = what.substr(colon + 2);
  }
  return what;
}

}  // namespace

ConfigResult parse_config(std::string_view text, std::string_view source_name) {
  ConfigResult result;
  const std::string source(source_name);
  if (text.size() > kMaxConfigBytes) {
    result.errors.push_back({source, 0, "",
                             "file is larger than " + std::to_string(kMaxConfigBytes) +
                                 " bytes; a config file never needs to be"});
    return result;
  }
  const SourceMap map = SourceMap::build(text);
  if (!map.problem() && !map.find("")) {
    // Only whitespace and comments: the same as {}.
    ConfigResult empty = parse_config("{}", source_name);
    return empty;
  }
  if (map.problem() && map.problem()->kind != SourceProblem::Kind::malformed) {
    // Nesting depth and duplicate keys: checks a JSON parser does not make.
    const SourceProblem& problem = *map.problem();
    result.errors.push_back({source, problem.where.line, "", problem.message});
    if (problem.kind == SourceProblem::Kind::duplicate_key) {
      // Name the member: "scheduler.max_queue: duplicate key ..." reads better.
      result.errors.back().field = display_pointer(
          problem.pointer, [&](std::string_view prefix) { return map.is_array(prefix); });
      result.errors.back().message = "duplicate key (each key may appear once per object)";
    }
    return result;
  }

  json root;
  try {
    root = json::parse(text, /*callback=*/nullptr, /*allow_exceptions=*/true,
                       /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    result.errors.push_back(
        {source, location_of(text, offset).line, "", "syntax error: " + syntax_message(e)});
    return result;
  } catch (const json::exception& e) {
    // A number too large for a double (1e999): nlohmann reports out_of_range.406 with the
    // literal in quotes but no position; the literal's first occurrence gives the line.
    const std::string what = e.what();
    const auto open = what.find('\'');
    const auto close = open == std::string::npos ? open : what.find('\'', open + 1);
    std::string literal =
        close == std::string::npos ? std::string() : what.substr(open + 1, close - open - 1);
    const auto at = literal.empty() ? std::string_view::npos : text.find(literal);
    result.errors.push_back(
        {source, at == std::string_view::npos ? 0 : location_of(text, at).line, "",
         literal.empty() ? "invalid value" : "number out of range: " + literal});
    return result;
  }

  Config config;
  detail::Context ctx(source, map, result);
  detail::read_root(ctx, root, config);
  if (result.errors.empty()) {
    // Backstop: the scheduler's own validation. The checks above are at least as strict and
    // name the line; this fires only if the two ever drift apart.
    std::string problem = core::validate(config.scheduler.core);
    if (!problem.empty()) ctx.error(Path{} / "scheduler", problem);
  }

  auto by_line = [](const ConfigDiagnostic& a, const ConfigDiagnostic& b) {
    return a.line < b.line;
  };
  std::stable_sort(result.errors.begin(), result.errors.end(), by_line);
  std::stable_sort(result.warnings.begin(), result.warnings.end(), by_line);
  if (result.errors.size() > kMaxDiagnostics) {
    const std::size_t more = result.errors.size() - (kMaxDiagnostics - 1);
    result.errors.resize(kMaxDiagnostics - 1);
    result.errors.push_back({source, 0, "", "... and " + std::to_string(more) + " more errors"});
  }
  if (result.warnings.size() > kMaxDiagnostics) result.warnings.resize(kMaxDiagnostics);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

std::string dump_config(const Config& config) {
  return detail::dump_fields(detail::root_fields(), config)
      .dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

const ObjectDoc& config_description() {
  static const ObjectDoc doc = detail::root_fields().doc();
  return doc;
}

}  // namespace sluice::config
