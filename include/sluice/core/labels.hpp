// Request labels (user, tier, priority, workload, model, ...) and the validation of the values
// clients send for them. Everything here is pure and bounded: a value longer than
// kMaxLabelValueBytes or containing control characters is rejected, never truncated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/core/limits.hpp"  // kMaxPriority

namespace sluice::core {

inline constexpr std::size_t kMaxLabelValueBytes = 256;
inline constexpr std::size_t kMaxLabels = 32;
inline constexpr std::int64_t kMaxTokens = 100'000'000;

/// A small flat label set. Names are compared exactly (callers lowercase them); setting a name
/// twice replaces the value. At most kMaxLabels entries (set() returns false beyond that).
class Labels {
 public:
  using Item = std::pair<std::string, std::string>;

  Labels() = default;
  Labels(std::initializer_list<Item> items);

  bool set(std::string_view name, std::string_view value);
  std::optional<std::string_view> get(std::string_view name) const;
  /// The value, or "" when the label is absent.
  std::string_view value_or_empty(std::string_view name) const;
  bool erase(std::string_view name);

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
};

/// A label value as sent by a client: 1..kMaxLabelValueBytes bytes of printable ASCII
/// (0x21..0x7e plus inner spaces). On failure `error` says why.
bool valid_label_value(std::string_view value, std::string* error = nullptr);

/// Priority: a finite decimal number with 0 < p <= kMaxPriority ("8", "0.5", "1e3").
/// Rejects "abc", "-3", "0", "1e999", "nan", "inf", trailing garbage.
std::optional<double> parse_priority(std::string_view text, std::string* error = nullptr);

/// Token cost: an integer with 1 <= n <= kMaxTokens.
std::optional<std::int64_t> parse_tokens(std::string_view text, std::string* error = nullptr);

}  // namespace sluice::core
