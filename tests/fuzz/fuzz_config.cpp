// Fuzzes the config loader with arbitrary text. Promises checked: it never throws or crashes;
// it returns a config exactly when there are no errors; every error names a source; a config
// that loads passes the scheduler's own validation (and the health policy its own), has at least
// one backend, and survives a dump/parse round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  sluice::config::ConfigResult result = sluice::config::parse_config(text, "fuzz.json");
  if (result.ok() != result.errors.empty()) std::abort();
  for (const auto& e : result.errors) {
    if (e.source != "fuzz.json" || e.message.empty()) std::abort();
  }
  if (result.ok()) {
    if (!sluice::core::validate(result.config->scheduler.core).empty()) std::abort();
    if (!sluice::core::validate(result.config->fleet_settings.health).empty()) std::abort();
    if (result.config->backends.empty()) std::abort();
    std::string dumped = sluice::config::dump_config(*result.config);
    auto again = sluice::config::parse_config(dumped, "dump");
    if (!again.ok() || sluice::config::dump_config(*again.config) != dumped) std::abort();
  }
  return 0;
}
