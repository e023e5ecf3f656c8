// Small HTTP helpers of sluice-sim: Ollama's Host check and query-string parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::sim {

/// Ollama's allowedHostsMiddleware for a loopback bind (server/routes.go): localhost, loopback
/// and private addresses, the machine's name, *.localhost, *.local, *.internal.
bool host_allowed(std::string_view host_header);

/// Value of `key` in a query string like "since=5&limit=10" as an unsigned integer.
std::optional<std::uint64_t> query_uint(std::string_view query, std::string_view key);

}  // namespace sluice::sim
