// Where sluice-bench sends requests: an http:// base URL split for connecting. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::bench {

/// An http:// URL split for connecting: host (no brackets), port, path prefix ("" or "/x").
struct HttpTarget {
  std::string host;
  std::uint16_t port = 80;
  std::string base_path;
  std::string host_header;  ///< "host:port" as sent in Host

  std::string to_string() const;
};

/// Parses "http://host[:port][/prefix]". nullopt (and why) when it is not such a URL.
std::optional<HttpTarget> parse_http_target(std::string_view url, std::string* why = nullptr);

}  // namespace sluice::bench
