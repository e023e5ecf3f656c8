// The sections other than the scheduler (parse_scheduler.cpp) and the fleet
// (sections_fleet.cpp), and the root: each object's table and, where one field bounds another or
// values must differ, the rule that follows the table.
#include "sections.hpp"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "sluice/core/labels.hpp"
#include "sluice/core/limits.hpp"

namespace sluice::config::detail {
namespace {

constexpr std::int64_t kMaxIdleUpstreamConnections = 10'000;
constexpr std::int64_t kMaxHeaderBytesBound = 1024 * 1024;
constexpr std::int64_t kMaxBodyBytesBound = std::int64_t{1} << 30;
constexpr std::int64_t kMaxConnections = 1'000'000;
constexpr std::size_t kMaxRoutes = 256;
constexpr std::size_t kMaxRouteBytes = 1024;
constexpr std::size_t kMaxHeaderNameBytes = 64;
constexpr std::size_t kMaxApiKeys = 10'000;

// ---- upstream ----

void read_upstream_url(Context& ctx, const json& v, const Path& p, UpstreamConfig& up) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    ctx.error(p, "not a valid URL (expected e.g. \"http://127.0.0.1:11434\")");
    return;
  }
  const boost::urls::url_view& url = *parsed;
  if (url.scheme_id() != boost::urls::scheme::http) {
    ctx.error(p, "scheme must be http (https upstreams are not supported yet), not \"" +
                     std::string(url.scheme()) + "\"");
    return;
  }
  if (!url.has_authority() || url.host_address().empty()) {
    ctx.error(p, "host required (\"http://HOST:PORT\")");
    return;
  }
  if (url.host_type() == boost::urls::host_type::ipvfuture) {
    ctx.error(p, "unsupported host \"" + std::string(url.encoded_host()) + "\"");
    return;
  }
  if (url.has_userinfo()) {
    ctx.error(p, "user information in the URL is not supported");
    return;
  }
  if (url.has_query() || url.has_fragment()) {
    ctx.error(p, "must not have a query or fragment");
    return;
  }
  unsigned port = 80;
  if (url.has_port() && !url.port().empty()) {
    std::string_view port_text = url.port();
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      ctx.error(p, "port must be from 1 to 65535, not " + std::string(port_text));
      return;
    }
  }
  std::string base_path(url.encoded_path());
  while (!base_path.empty() && base_path.back() == '/')
    base_path.pop_back();

  up.host = url.host_address();
  up.port = static_cast<std::uint16_t>(port);
  up.host_header = std::string(url.encoded_host());
  if (url.host_type() == boost::urls::host_type::ipv6) up.host_header = "[" + up.host + "]";
  if (port != 80) up.host_header += ":" + std::to_string(port);
  up.base_path = base_path;
  up.url = "http://" + up.host_header + base_path;
}

// Issue 12's "upstreams" array reuses this table per backend (Fields::objects).
}  // namespace

const Fields<UpstreamConfig>& upstream_fields() {
  using U = UpstreamConfig;
  static const Fields<U> fields = Fields<U>()
                                      .custom("url", FieldKind::string, read_upstream_url,
                                              [](const U& up) { return DumpJson(up.url); })
                                      .duration("connect_timeout", &U::connect_timeout, kPositive)
                                      .duration("header_timeout", &U::header_timeout, kPositive)
                                      .duration("idle_timeout", &U::idle_timeout, kPositive)
                                      .integer("max_idle_connections", &U::max_idle_connections, 0,
                                               kMaxIdleUpstreamConnections);
  return fields;
}

const Fields<UpstreamConfig>& single_upstream_fields() {
  using U = UpstreamConfig;
  static const Fields<U> fields =
      Fields<U>()
          .embed(
              [](auto& u) -> auto& { return u; }, upstream_fields())
          .custom(
              "max_concurrency", FieldKind::other,
              [](Context& ctx, const json& v, const Path& p, U& u) {
                read_limit(ctx, v, p, nullptr, u.auto_concurrency);
              },
              [](const U& u) {
                return u.auto_concurrency ? DumpJson("auto") : DumpJson();  // fixed: scheduler's
              })
          .custom(
              "auto_concurrency", FieldKind::object, auto_concurrency_fields,
              [](Context& ctx, const json& v, const Path& p, U& u) {
                read_auto_concurrency(ctx, v, p, u.auto_concurrency);
              },
              [](const U& u) { return dump_auto_concurrency(u.auto_concurrency); });
  return fields;
}

namespace {

void read_upstream(Context& ctx, const json& node, const Path& path, UpstreamConfig& up) {
  ObjectReader r(ctx, node, path);
  read_fields(r, single_upstream_fields(), up);
}

// ---- limits ----

const Fields<LimitsConfig>& limits_fields() {
  using L = LimitsConfig;
  static const Fields<L> fields =
      Fields<L>()
          .integer("max_header_bytes", &L::max_header_bytes, 1024, kMaxHeaderBytesBound)
          .integer("max_body_bytes", &L::max_body_bytes, 1, kMaxBodyBytesBound)
          .integer("max_scheduled_body_bytes", &L::max_scheduled_body_bytes, 1, kMaxBodyBytesBound)
          .duration("header_read_timeout", &L::header_read_timeout, kPositive)
          .duration("keepalive_timeout", &L::keepalive_timeout, kPositive)
          .duration("write_timeout", &L::write_timeout, kPositive)
          .integer("max_connections", &L::max_connections, 1, kMaxConnections);
  return fields;
}

void read_limits(Context& ctx, const json& node, const Path& path, LimitsConfig& l) {
  ObjectReader r(ctx, node, path);
  read_fields(r, limits_fields(), l);
  r.finish();
  // max_scheduled_body_bytes <= max_body_bytes. A default gives way to the other field when the
  // file sets it; only two explicit values can contradict each other.
  const bool body_set = r.has("max_body_bytes");
  const bool scheduled_set = r.has("max_scheduled_body_bytes");
  if (!scheduled_set) {
    l.max_scheduled_body_bytes = std::min(l.max_scheduled_body_bytes, l.max_body_bytes);
  } else if (!body_set) {
    l.max_body_bytes = std::max(l.max_body_bytes, l.max_scheduled_body_bytes);
  } else if (!r.failed("max_scheduled_body_bytes") &&
             l.max_scheduled_body_bytes > l.max_body_bytes) {
    ctx.error(path / "max_scheduled_body_bytes",
              "must not exceed max_body_bytes (" + std::to_string(l.max_body_bytes) + ")");
  }
}

// ---- headers ----

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool check_header_name(Context& ctx, const Path& p, std::string& name) {
  static constexpr std::string_view kReserved[] = {"host",
                                                   "content-length",
                                                   "transfer-encoding",
                                                   "connection",
                                                   "keep-alive",
                                                   "upgrade",
                                                   "te",
                                                   "trailer",
                                                   "content-type",
                                                   "accept",
                                                   "authorization",
                                                   "cookie",
                                                   "proxy-authorization"};
  if (name.empty() || name.size() > kMaxHeaderNameBytes ||
      !std::all_of(name.begin(), name.end(), is_token_char)) {
    ctx.error(p, "must be an HTTP header name (1 to " + std::to_string(kMaxHeaderNameBytes) +
                     " letters, digits or !#$%&'*+-.^_`|~)");
    return false;
  }
  const std::string lower = lowercase(name);
  if (std::find(std::begin(kReserved), std::end(kReserved), lower) != std::end(kReserved)) {
    ctx.error(p, "\"" + name + "\" is a standard HTTP header; pick a name of your own");
    return false;
  }
  return true;
}

const Fields<HeaderNames>& header_fields() {
  using H = HeaderNames;
  static const Fields<H> fields = Fields<H>()
                                      .string("user", &H::user, check_header_name)
                                      .string("tier", &H::tier, check_header_name)
                                      .string("priority", &H::priority, check_header_name)
                                      .string("workload", &H::workload, check_header_name)
                                      .string("tokens", &H::tokens, check_header_name)
                                      .string("queue_timeout", &H::queue_timeout, check_header_name)
                                      .string("request_id", &H::request_id, check_header_name);
  return fields;
}

void read_headers(Context& ctx, const json& node, const Path& path, HeaderNames& h) {
  ObjectReader r(ctx, node, path);
  read_fields(r, header_fields(), h);
  r.finish();
  // All different, compared as HTTP does (case-insensitively). The dump lists them in table order.
  const DumpJson names = dump_fields(header_fields(), h);
  for (auto it = names.begin(); it != names.end(); ++it) {
    for (auto before = names.begin(); before != it; ++before) {
      const std::string& name = it->get_ref<const std::string&>();
      if (lowercase(name) == lowercase(before->get_ref<const std::string&>())) {
        ctx.error(path / it.key(), "\"" + name + "\" is already the header for " + before.key());
      }
    }
  }
}

// ---- routes, log, shutdown ----

void read_scheduled_routes(Context& ctx, const json& v, const Path& p, RoutesConfig& routes) {
  if (!check_array(ctx, v, p, "paths", kMaxRoutes)) return;
  std::vector<std::string> paths;
  bool ok = true;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string route;
    if (!read_string(ctx, v[i], p[i], route)) {
      ok = false;
      continue;
    }
    bool printable = std::all_of(route.begin(), route.end(), [](char c) {
      return c > 0x20 && c < 0x7f && c != '?' && c != '#';
    });
    if (route.empty() || route.front() != '/' || route.size() > kMaxRouteBytes || !printable) {
      ctx.error(p[i], "must be a path starting with '/' without query, fragment or spaces");
      ok = false;
      continue;
    }
    if (std::find(paths.begin(), paths.end(), route) != paths.end()) {
      ctx.error(p[i], "duplicate path \"" + route + "\"");
      ok = false;
      continue;
    }
    paths.push_back(std::move(route));
  }
  if (!ok) return;
  if (paths.empty()) ctx.warning(p, "no route is scheduled; sluice only proxies");
  routes.scheduled = std::move(paths);
}

const Fields<RoutesConfig>& routes_fields() {
  static const Fields<RoutesConfig> fields = Fields<RoutesConfig>().custom(
      "scheduled", FieldKind::other, read_scheduled_routes,
      [](const RoutesConfig& routes) { return DumpJson(routes.scheduled); });
  return fields;
}

void read_log_level(Context& ctx, const json& v, const Path& p, LogConfig& log) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  for (auto level : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn,
                     LogLevel::error, LogLevel::critical, LogLevel::off}) {
    if (text == to_string(level)) {
      log.level = level;
      return;
    }
  }
  ctx.error(p,
            "must be one of trace, debug, info, warn, error, critical, off; not \"" + text + "\"");
}

void read_log_format(Context& ctx, const json& v, const Path& p, LogConfig& log) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  if (text == "text") {
    log.format = LogFormat::text;
  } else if (text == "json") {
    log.format = LogFormat::json;
  } else {
    ctx.error(p, "must be \"text\" or \"json\", not \"" + text + "\"");
  }
}

const Fields<LogConfig>& log_fields() {
  static const Fields<LogConfig> fields =
      Fields<LogConfig>()
          .custom("level", FieldKind::string, read_log_level,
                  [](const LogConfig& log) { return DumpJson(std::string(to_string(log.level))); })
          .custom("format", FieldKind::string, read_log_format,
                  [](const LogConfig& log) { return DumpJson(std::string(to_string(log.format))); })
          .boolean("access_log", &LogConfig::access_log);
  return fields;
}

const Fields<ShutdownConfig>& shutdown_fields() {
  static const Fields<ShutdownConfig> fields = Fields<ShutdownConfig>().duration(
      "drain_timeout", &ShutdownConfig::drain_timeout, Duration::zero());
  return fields;
}

// Sections with no rule beyond their table.
template <class T, const Fields<T>& (*table)()>
void read_plain(Context& ctx, const json& node, const Path& path, T& out) {
  ObjectReader r(ctx, node, path);
  read_fields(r, table(), out);
}

// ---- auth ----

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

// "" (none) or a SHA-256 digest in hex, stored lowercase.
bool check_sha256(Context& ctx, const Path& p, std::string& text) {
  std::string lower = lowercase(text);
  if (!lower.empty() && !is_sha256_hex(lower)) {
    ctx.error(p, "must be a SHA-256 digest: 64 hex digits (print one with `sluice hash-key`)");
    return false;
  }
  text = std::move(lower);
  return true;
}

bool check_key_sha256(Context& ctx, const Path& p, std::string& text) {
  if (!check_sha256(ctx, p, text)) return false;
  if (text.empty()) {
    ctx.error(p, "must not be empty");
    return false;
  }
  return true;
}

bool check_key_name(Context& ctx, const Path& p, std::string& name) {
  std::string why;
  if (core::valid_label_value(name, &why)) return true;
  ctx.error(p, "key name " + why);
  return false;
}

bool check_key_user(Context& ctx, const Path& p, std::string& user) {
  std::string why;
  if (core::valid_label_value(user, &why)) return true;
  ctx.error(p, "user " + why);
  return false;
}

bool check_key_tier(Context& ctx, const Path& p, std::string& tier) {
  std::string why;
  if (tier.empty() || core::valid_label_value(tier, &why)) return true;
  ctx.error(p, "tier " + why);
  return false;
}

void read_max_priority(Context& ctx, const json& v, const Path& p, ApiKey& key) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
      v.get<double>() > core::kMaxPriority) {
    ctx.error(p, "must be a number > 0 and <= 1000000, not " + v.dump());
    return;
  }
  key.max_priority = v.get<double>();
}

const Fields<ApiKey>& api_key_fields() {
  static const Fields<ApiKey> fields =
      Fields<ApiKey>()
          .string("name", &ApiKey::name, check_key_name)
          .string("sha256", &ApiKey::sha256, check_key_sha256)
          .string("user", &ApiKey::user, check_key_user)
          .string("tier", &ApiKey::tier, check_key_tier)
          .custom(
              "max_priority", FieldKind::number, read_max_priority,
              [](const ApiKey& key) {
                return key.max_priority ? DumpJson(*key.max_priority) : DumpJson();
              },
              0, static_cast<std::int64_t>(core::kMaxPriority))
          .boolean("trusted_gateway", &ApiKey::trusted_gateway);
  return fields;
}

void read_api_key(Context& ctx, const json& node, const Path& path, ApiKey& key) {
  ObjectReader r(ctx, node, path);
  read_fields(r, api_key_fields(), key);
  if (r.valid() && !r.has("name")) ctx.error(path / "name", "required");
  if (r.valid() && !r.has("sha256")) ctx.error(path / "sha256", "required");
  if (key.user.empty()) key.user = key.name;
}

void read_api_keys(Context& ctx, const json& v, const Path& p, std::vector<ApiKey>& keys) {
  if (!check_array(ctx, v, p, "keys", kMaxApiKeys)) return;
  for (std::size_t i = 0; i < v.size(); ++i) {
    ApiKey key;
    read_api_key(ctx, v[i], p[i], key);
    for (const ApiKey& other : keys) {
      if (!key.name.empty() && other.name == key.name) {
        ctx.error(p[i] / "name", "name \"" + key.name + "\" is used twice");
      }
      if (!key.sha256.empty() && other.sha256 == key.sha256) {
        ctx.error(p[i] / "sha256", "the same key hash is listed twice");
      }
    }
    keys.push_back(std::move(key));
  }
}

const Fields<AuthConfig>& auth_fields() {
  static const Fields<AuthConfig> fields =
      Fields<AuthConfig>()
          .objects("keys", &AuthConfig::keys, api_key_fields, read_api_keys)
          .string("admin_token_sha256", &AuthConfig::admin_token_sha256, check_sha256);
  return fields;
}

// ---- root ----

void read_listen(Context& ctx, const json& v, const Path& p, Config& c) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  if (auto hp = parse_host_port(ctx, text, p)) c.listen = std::move(*hp);
}

// "" turns the admin listener off.
void read_admin_listen(Context& ctx, const json& v, const Path& p, Config& c) {
  std::string text;
  if (!read_string(ctx, v, p, text)) return;
  if (text.empty()) {
    c.admin_listen.reset();
  } else if (auto hp = parse_host_port(ctx, text, p)) {
    c.admin_listen = std::move(*hp);
  }
}

}  // namespace

const Fields<Config>& root_fields() {
  static const Fields<Config> fields =
      Fields<Config>()
          // For editors; read (it must be a string) and ignored, never dumped.
          .custom("$schema", FieldKind::string,
                  [](Context& ctx, const json& v, const Path& p, Config&) {
                    std::string ignored;
                    read_string(ctx, v, p, ignored);
                  },
                  {})
          .custom("listen", FieldKind::string, read_listen,
                  [](const Config& c) { return DumpJson(c.listen.to_string()); })
          .custom("admin_listen", FieldKind::string, read_admin_listen,
                  [](const Config& c) {
                    return DumpJson(c.admin_listen ? c.admin_listen->to_string() : std::string());
                  })
          // With upstreams, the shared block holds only the backends' defaults: no url.
          .custom(
              "upstream", FieldKind::object, single_upstream_fields,
              [](Context& ctx, const json& v, const Path& p, Config& c) {
                read_upstream(ctx, v, p, c.upstream);
              },
              [](const Config& c) {
                DumpJson out = dump_fields(single_upstream_fields(), c.upstream);
                if (c.fleet) out.erase("url");
                return out;
              })
          // After upstream, whose values are its defaults.
          .custom("upstreams", FieldKind::objects, backend_fields, read_upstreams, dump_upstreams)
          .object("fleet", &Config::fleet_settings, fleet_fields, read_fleet)
          .object("scheduler", &Config::scheduler, scheduler_fields, read_scheduler)
          .object("limits", &Config::limits, limits_fields, read_limits)
          .object("headers", &Config::headers, header_fields, read_headers)
          .object("routes", &Config::routes, routes_fields, read_plain<RoutesConfig, routes_fields>)
          .object("log", &Config::log, log_fields, read_plain<LogConfig, log_fields>)
          .object("auth", &Config::auth, auth_fields, read_plain<AuthConfig, auth_fields>)
          .object("shutdown", &Config::shutdown, shutdown_fields,
                  read_plain<ShutdownConfig, shutdown_fields>);
  return fields;
}

void read_root(Context& ctx, const json& root, Config& c) {
  ObjectReader r(ctx, root, Path{});
  read_fields(r, root_fields(), c);
  r.finish();
  if (r.valid()) derive_backends(ctx, root, r, c);
  // Two listeners cannot share an address. Unlike the other cross-field rules this stays an
  // error even when one side is a default: moving either listener to an address nobody chose
  // would send clients or monitoring to the wrong one. The message says which side is a default.
  if (c.admin_listen && c.listen.port != 0 && c.admin_listen->port == c.listen.port &&
      c.admin_listen->host == c.listen.host) {
    const std::string address = c.listen.to_string();
    if (!r.has("admin_listen")) {
      ctx.error(Path{} / "listen", address +
                                       " is the default of admin_listen; set admin_listen to "
                                       "another address, or \"\" to turn the admin listener off");
    } else if (!r.has("listen")) {
      ctx.error(Path{} / "admin_listen",
                "must differ from listen (" + address + ", its default); set listen too");
    } else {
      ctx.error(Path{} / "admin_listen", "must differ from listen (" + address + ")");
    }
  }
}

}  // namespace sluice::config::detail
