// Fuzzes the parsers of client-supplied label values: X-Priority, X-Tokens, X-Queue-Timeout and
// any label value. Beyond "no crash, no UB", it checks what each parser promises: accepted
// values are in range, and formatting an accepted duration reads back to the same value.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sluice/core/duration.hpp"
#include "sluice/core/labels.hpp"

using namespace sluice::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;

  if (auto p = parse_priority(text, &error)) {
    if (!(std::isfinite(*p) && *p > 0 && *p <= kMaxPriority)) std::abort();
  } else if (error.empty()) {
    std::abort();  // a rejection must say why
  }

  error.clear();
  if (auto t = parse_tokens(text, &error)) {
    if (*t < 1 || *t > kMaxTokens) std::abort();
  } else if (error.empty()) {
    std::abort();
  }

  error.clear();
  if (auto d = parse_duration(text, &error)) {
    if (d->count() < 0 || *d > kMaxDuration) std::abort();
    auto again = parse_duration(format_duration(*d));
    if (!again || *again != *d) std::abort();
  } else if (error.empty()) {
    std::abort();
  }

  error.clear();
  if (valid_label_value(text, &error)) {
    if (text.empty() || text.size() > kMaxLabelValueBytes) std::abort();
    for (unsigned char c : text) {
      if (c < 0x20 || c > 0x7e) std::abort();
    }
  }
  return 0;
}
