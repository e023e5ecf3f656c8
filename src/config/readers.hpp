// The building blocks of the config loader, below the per-object descriptions (fields.hpp):
// a Path in the document, the Context that collects diagnostics, the ObjectReader that reads the
// members of one JSON object and reports the keys nobody declared, and the scalar readers.
//
// Every reader follows one rule: on a bad value it records one error at the value's path and
// leaves its output untouched (the default stays), so one run reports every independent problem.
// Internal to src/config.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/config/source_map.hpp"
#include "sluice/core/duration.hpp"

namespace sluice::config::detail {

using nlohmann::json;

// A position in the document: its JSON pointer (for the SourceMap) and its readable form
// ("scheduler.workloads[1].priority", see display_member()) for messages.
struct Path {
  std::string pointer;
  std::string display;

  Path operator/(std::string_view key) const {
    return {pointer_append(pointer, key), display_member(display, key)};
  }
  Path operator[](std::size_t index) const {
    return {pointer_append(pointer, std::to_string(index)), display_element(display, index)};
  }
};

// Collects the diagnostics of one parse; the SourceMap turns a path into a line.
class Context {
 public:
  Context(std::string_view source, const SourceMap& map, ConfigResult& result)
      : source_(source), map_(map), result_(result) {}

  void error(const Path& path, std::string message) {
    result_.errors.push_back(diagnostic(path, std::move(message)));
  }
  void warning(const Path& path, std::string message) {
    result_.warnings.push_back(diagnostic(path, std::move(message)));
  }
  std::size_t error_count() const { return result_.errors.size(); }

 private:
  ConfigDiagnostic diagnostic(const Path& path, std::string message) const {
    return {std::string(source_), map_.locate(path.pointer).line, path.display, std::move(message)};
  }

  std::string_view source_;
  const SourceMap& map_;
  ConfigResult& result_;
};

/// "a string", "an object", "a fractional number", ... for "must be X, not Y" messages.
std::string type_name(const json& value);

// Reads the members of one JSON object. field() declares a key and, when present, hands its
// value to a reader; finish() (also run by the destructor) reports keys nobody declared, with the
// closest declared key as a suggestion, else the list of declared keys in declaration order.
class ObjectReader {
 public:
  ObjectReader(Context& ctx, const json& node, Path path);
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;
  ~ObjectReader() { finish(); }

  Context& context() const { return ctx_; }
  bool valid() const { return valid_; }
  const Path& path() const { return path_; }
  /// The object sets `key`.
  bool has(std::string_view key) const { return valid_ && node_.contains(key); }
  /// The object sets `key` and reading it recorded an error.
  bool failed(std::string_view key) const;

  template <class Reader>
  void field(std::string_view key, Reader&& reader) {
    known_.emplace_back(key);
    if (!valid_) return;
    auto it = node_.find(key);
    if (it == node_.end()) return;
    const std::size_t errors_before = ctx_.error_count();
    reader(*it, path_ / key);
    if (ctx_.error_count() != errors_before) failed_.emplace_back(key);
  }

  void finish();

 private:
  std::string suggestion(std::string_view key) const;

  Context& ctx_;
  const json& node_;
  Path path_;
  bool valid_;
  bool finished_ = false;
  std::vector<std::string> known_;
  std::vector<std::string> failed_;
};

// ---- scalar readers: true when `out` was set; on failure an error is recorded ----

bool read_int(Context& ctx, const json& v, const Path& p, std::int64_t min, std::int64_t max,
              std::int64_t& out);
bool read_bool(Context& ctx, const json& v, const Path& p, bool& out);
bool read_string(Context& ctx, const json& v, const Path& p, std::string& out);

inline constexpr Duration kPositive{1};
inline constexpr Duration kAnyDuration = core::kMaxDuration;

/// A duration: a string parse_duration() accepts ("250ms", "30s", "1m30s") or an integer of
/// milliseconds. `min`/`max` bound the result; `why_max` replaces the message of the upper bound.
bool read_duration(Context& ctx, const json& v, const Path& p, Duration min, Duration max,
                   Duration& out, std::string_view why_max = {});

/// A check run on a string after it was read: may normalise `value`; on false it has recorded
/// an error and the field keeps its old value.
using StringCheck = bool (*)(Context& ctx, const Path& p, std::string& value);

/// Label names as sluice stores them: lowercase, so they compare exactly with the request's.
/// A name sluice never sets is accepted with a warning.
bool check_label_name(Context& ctx, const Path& p, std::string& name);
bool read_label_name(Context& ctx, const json& v, const Path& p, std::string& out);

/// "host:port" for a listener; IPv6 in brackets ("[::1]:11435"); port 0 = any free port.
std::optional<HostPort> parse_host_port(Context& ctx, const std::string& text, const Path& p);

/// True when `v` is an array of at most `max_items`; else records "must be an array of NOUN,
/// not ..." or "at most MAX NOUN" at `p` and returns false.
bool check_array(Context& ctx, const json& v, const Path& p, std::string_view noun,
                 std::size_t max_items);

std::string lowercase(std::string_view s);

}  // namespace sluice::config::detail
