// http:// base URLs for sluice-bench (see include/sluice/bench/target.hpp).
#include "sluice/bench/target.hpp"

#include <boost/url/parse.hpp>

namespace sluice::bench {

std::string HttpTarget::to_string() const {
  return "http://" + host_header + base_path;
}

std::optional<HttpTarget> parse_http_target(std::string_view url, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<HttpTarget> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return fail("not a URL: " + std::string(url));
  const auto& u = *parsed;
  if (u.scheme() != "http") return fail("only http:// URLs are supported: " + std::string(url));
  if (u.host().empty()) return fail("the URL has no host: " + std::string(url));
  if (u.has_userinfo() || u.has_query() || u.has_fragment())
    return fail("no user, query or fragment allowed: " + std::string(url));
  HttpTarget t;
  t.host = std::string(u.host_address());
  if (t.host.empty()) return fail("the URL has no host: " + std::string(url));
  if (u.has_port()) {
    if (u.port_number() == 0) return fail("bad port in " + std::string(url));
    t.port = u.port_number();
  }
  const bool v6 = t.host.find(':') != std::string::npos;
  t.host_header = (v6 ? "[" + t.host + "]" : t.host) +
                  (t.port == 80 ? std::string() : ":" + std::to_string(t.port));
  std::string path(u.encoded_path());
  while (!path.empty() && path.back() == '/')
    path.pop_back();
  t.base_path = path;
  return t;
}

}  // namespace sluice::bench
