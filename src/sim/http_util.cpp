// Ollama's Host check and query parameters (see http_util.hpp).
#include "http_util.hpp"

#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <charconv>
#include <string>

namespace sluice::sim {
namespace {

namespace asio = boost::asio;

std::string_view trim_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  const auto colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) return host.substr(0, colon);
  return host;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool host_allowed(std::string_view raw) {
  std::string host(trim_host(raw));
  for (auto& ch : host)
    ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (host.empty() || host == "localhost") return true;
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (!ec) {
    if (addr.is_loopback() || addr.is_unspecified()) return true;
    if (addr.is_v4()) {
      const auto b = addr.to_v4().to_bytes();
      return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168);
    }
    const auto b = addr.to_v6().to_bytes();
    return (b[0] & 0xfe) == 0xfc;
  }
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) == 0) {
    std::string hn = name;
    for (auto& ch : hn)
      ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (host == hn) return true;
  }
  return ends_with(host, ".localhost") || ends_with(host, ".local") || ends_with(host, ".internal");
}

std::optional<std::uint64_t> query_uint(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || item.substr(0, eq) != key) continue;
    const auto value = item.substr(eq + 1);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec == std::errc() && p == value.data() + value.size()) return v;
  }
  return std::nullopt;
}

// GPU routes (the ones sluice schedules) and the constants of cheap responses. Kept out of the

}  // namespace sluice::sim
