// Where each value of a JSON document sits in its text, so config errors can name a line.
//
// nlohmann::json does not keep positions, so SourceMap scans the original text once with its own
// small tokenizer (it understands `//` and `/* */` comments and strings with escapes, braces and
// quotes inside) and records, for every value, the line and column where it starts, keyed by its
// JSON pointer ("/scheduler/workloads/1/priority"). For an object member the recorded position is
// that of its key, which is where an operator looks.
//
// Invariants: build() never reads outside `text` and never recurses (an explicit stack bounded by
// max_depth), so any input, valid or not, is safe. On malformed input it records what it saw up to
// the first problem it notices and reports it in problem(); the caller normally lets the JSON
// parser produce the syntax error and only uses problem() for the checks a JSON parser does not
// do: nesting depth and duplicate keys.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace sluice::config {

struct SourceLocation {
  std::size_t line = 0;    ///< 1-based; 0 = unknown
  std::size_t column = 0;  ///< 1-based, in bytes
  friend bool operator==(const SourceLocation&, const SourceLocation&) = default;
};

/// A problem only the source scan sees.
struct SourceProblem {
  enum class Kind { too_deep, duplicate_key, malformed };
  Kind kind = Kind::malformed;
  std::string pointer;  ///< JSON pointer of the offending value (duplicate key: the member)
  SourceLocation where;
  std::string message;
};

class SourceMap {
 public:
  static constexpr std::size_t kDefaultMaxDepth = 32;

  static SourceMap build(std::string_view text, std::size_t max_depth = kDefaultMaxDepth);

  /// Exact position of the value at `pointer` ("" is the root), if it was seen.
  std::optional<SourceLocation> find(std::string_view pointer) const;

  /// Position of `pointer`, or of its nearest recorded ancestor ("/a/b/c" -> "/a/b" -> "/a" ->
  /// ""), or {0, 0} when nothing is known.
  SourceLocation locate(std::string_view pointer) const;

  /// True when the value at `pointer` is an array (so a token after it is an index, not a key).
  bool is_array(std::string_view pointer) const;

  /// The first problem seen (too deep, duplicate key, malformed), if any.
  const std::optional<SourceProblem>& problem() const { return problem_; }

  std::size_t size() const { return positions_.size(); }

 private:
  std::unordered_map<std::string, SourceLocation> positions_;
  std::unordered_set<std::string> arrays_;  // pointers of the arrays seen
  std::optional<SourceProblem> problem_;
};

/// Appends one reference token to a JSON pointer, escaping '~' and '/' (RFC 6901).
std::string pointer_append(std::string_view pointer, std::string_view token);

/// How config messages show a place in the document: "scheduler.workloads[1].match[0]". A key
/// made of letters, digits, '_', '-' and '$' is appended as ".key" (bare at the root); any other
/// key is quoted in brackets: limits["max body"]. These two functions are the only place that
/// spells a path out; display_pointer() builds on them.
std::string display_member(std::string_view display, std::string_view key);
std::string display_element(std::string_view display, std::size_t index);

/// The readable form of a whole JSON pointer ("" for the root). A pointer alone cannot tell the
/// array index 1 from the object key "1": `is_array(prefix)` says whether the value at a prefix
/// of `pointer` is an array, whose next token is then shown as an index.
std::string display_pointer(std::string_view pointer,
                            const std::function<bool(std::string_view)>& is_array);

/// Line and column (1-based) of byte offset `offset` in `text` (clamped to the text).
SourceLocation location_of(std::string_view text, std::size_t offset);

}  // namespace sluice::config
