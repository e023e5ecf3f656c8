// Label sets and validation of client-supplied label values.
#include "sluice/core/labels.hpp"

#include <charconv>
#include <cmath>

namespace sluice::core {
namespace {

void set_error(std::string* error, std::string message) {
  if (error) *error = std::move(message);
}

}  // namespace

Labels::Labels(std::initializer_list<Item> items) {
  for (const auto& [name, value] : items)
    set(name, value);
}

bool Labels::set(std::string_view name, std::string_view value) {
  for (auto& item : items_) {
    if (item.first == name) {
      item.second.assign(value);
      return true;
    }
  }
  if (items_.size() >= kMaxLabels) return false;
  items_.emplace_back(std::string(name), std::string(value));
  return true;
}

std::optional<std::string_view> Labels::get(std::string_view name) const {
  for (const auto& item : items_) {
    if (item.first == name) return std::string_view(item.second);
  }
  return std::nullopt;
}

std::string_view Labels::value_or_empty(std::string_view name) const {
  auto v = get(name);
  return v ? *v : std::string_view{};
}

bool Labels::erase(std::string_view name) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == name) {
      items_.erase(it);
      return true;
    }
  }
  return false;
}

bool valid_label_value(std::string_view value, std::string* error) {
  if (value.empty()) {
    set_error(error, "must not be empty");
    return false;
  }
  if (value.size() > kMaxLabelValueBytes) {
    set_error(error, "longer than " + std::to_string(kMaxLabelValueBytes) + " bytes");
    return false;
  }
  if (value.front() == ' ' || value.back() == ' ') {
    set_error(error, "leading or trailing space");
    return false;
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c > 0x7e) {
      set_error(error, "contains a control or non-ASCII character");
      return false;
    }
  }
  return true;
}

std::optional<double> parse_priority(std::string_view text, std::string* error) {
  if (text.empty() || text.size() > 32) {
    set_error(error, "must be a positive number");
    return std::nullopt;
  }
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) {
    set_error(error, "out of range (must be > 0 and <= 1000000)");
    return std::nullopt;
  }
  if (ec != std::errc{} || ptr != text.data() + text.size() || !std::isfinite(value)) {
    set_error(error, "must be a positive number");
    return std::nullopt;
  }
  if (value <= 0 || value > kMaxPriority) {
    set_error(error, "out of range (must be > 0 and <= 1000000)");
    return std::nullopt;
  }
  return value;
}

std::optional<std::int64_t> parse_tokens(std::string_view text, std::string* error) {
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size()) {
    set_error(error, "must be a positive integer");
    return std::nullopt;
  }
  if (value < 1 || value > kMaxTokens) {
    set_error(error, "out of range (must be 1.." + std::to_string(kMaxTokens) + ")");
    return std::nullopt;
  }
  return value;
}

}  // namespace sluice::core
