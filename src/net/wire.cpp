// HTTP/1.1 message rules (see wire.hpp).
#include "wire.hpp"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <vector>

namespace sluice::net::wire {

namespace beast = boost::beast;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

std::size_t count(const http::fields& fields, http::field name) {
  auto [first, last] = fields.equal_range(name);
  return static_cast<std::size_t>(std::distance(first, last));
}

/// RFC 3986 uri-host [":" port]: reg-name or IP-literal characters only (no spaces, slashes,
/// '@', or anything else that would make the authority mean something else downstream).
bool valid_host_value(std::string_view value) {
  static constexpr std::string_view kAllowed = "-._~%!$&'()*+,;=:[]";
  return std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
           kAllowed.find(c) != std::string_view::npos;
  });
}

bool all_digits(std::string_view value) {
  return !value.empty() &&
         std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
}

FramingError bad_request(std::string message) {
  return FramingError{http::status::bad_request, "malformed HTTP request: " + std::move(message)};
}

}  // namespace

std::optional<FramingError> check_request_framing(const http::request_header<>& head) {
  const std::size_t hosts = count(head, http::field::host);
  if (hosts > 1) return bad_request("Host given more than once");
  if (hosts == 0 && head.version() >= 11) return bad_request("HTTP/1.1 request without Host");
  if (hosts == 1 && !valid_host_value(head[http::field::host]))
    return bad_request("invalid Host value");

  const std::size_t lengths = count(head, http::field::content_length);
  const bool has_coding = count(head, http::field::transfer_encoding) > 0;
  if (lengths > 1) return bad_request("Content-Length given more than once");
  if (lengths == 1 && !all_digits(head[http::field::content_length]))
    return bad_request("Content-Length must be a single decimal number");
  if (lengths == 1 && has_coding)
    return bad_request("both Content-Length and Transfer-Encoding given");
  if (!has_coding) return std::nullopt;

  // Transfer-Encoding: the codings of every field line, in order.
  auto [first, last] = head.equal_range(http::field::transfer_encoding);
  std::string other;
  int chunked = 0;
  bool last_is_chunked = false;
  for (auto it = first; it != last; ++it) {
    for (auto token : http::token_list(it->value())) {
      last_is_chunked = iequals(token, "chunked");
      if (last_is_chunked) {
        ++chunked;
      } else if (other.empty()) {
        other = std::string(token.substr(0, 64));
      }
    }
  }
  if (!last_is_chunked || chunked != 1) {
    return bad_request(
        "Transfer-Encoding must end with a single chunked coding (or send Content-Length)");
  }
  if (!other.empty()) {
    return FramingError{http::status::not_implemented,
                        "Transfer-Encoding \"" + other +
                            "\" is not supported: send the body with chunked alone or with "
                            "Content-Length"};
  }
  return std::nullopt;
}

bool close_after_response(const http::request_header<>& head) {
  return head.version() < 11 && count(head, http::field::transfer_encoding) > 0;
}

void strip_hop_by_hop(http::fields& fields) {
  // The fields Connection names go first, while the Connection field that `named` points into
  // still exists.
  std::vector<std::string_view> named;
  auto [first, last] = fields.equal_range(http::field::connection);
  for (auto it = first; it != last; ++it) {
    for (auto token : http::token_list(it->value())) {
      if (!iequals(token, "keep-alive") && !iequals(token, "close")) named.push_back(token);
    }
  }
  if (!named.empty()) {
    for (auto it = fields.begin(); it != fields.end();) {
      const std::string_view name_text = it->name_string();
      const bool drop = it->name() != http::field::connection &&
                        std::any_of(named.begin(), named.end(), [&](std::string_view token) {
                          return iequals(token, name_text);
                        });
      it = drop ? fields.erase(it) : std::next(it);
    }
  }
  for (auto it = fields.begin(); it != fields.end();) {
    const auto name = it->name();
    const std::string_view name_text = it->name_string();
    const bool drop = name == http::field::connection || name == http::field::keep_alive ||
                      name == http::field::te || name == http::field::trailer ||
                      name == http::field::transfer_encoding ||
                      name == http::field::content_length || name == http::field::upgrade ||
                      (name_text.size() >= 6 && iequals(name_text.substr(0, 6), "proxy-"));
    it = drop ? fields.erase(it) : std::next(it);
  }
}

namespace {

void append_fields(std::string& out, const http::fields& fields) {
  for (const auto& field : fields) {
    out.append(field.name_string()).append(": ").append(field.value()).append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace

// sluice writes heads and bodies itself as gathered buffers rather than through Beast's
// serializer, whose nested buffer-sequence views cost about a quarter of the proxy's CPU per
// request (measured with callgrind on the pass-through benchmark).
std::string serialize_head(const http::request_header<>& head) {
  std::string out;
  out.reserve(512);
  out.append(head.method_string()).push_back(' ');
  out.append(head.target()).append(head.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  append_fields(out, head);
  return out;
}

std::string serialize_head(const http::response_header<>& head) {
  std::string out;
  out.reserve(512);
  out.append(head.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.append(std::to_string(head.result_int())).push_back(' ');
  out.append(head.reason()).append("\r\n");
  append_fields(out, head);
  return out;
}

std::string_view chunk_size_line(std::size_t size, std::array<char, 24>& storage) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t at = storage.size();
  storage[--at] = '\n';
  storage[--at] = '\r';
  do {
    storage[--at] = kHex[size & 0xf];
    size >>= 4;
  } while (size > 0);
  return std::string_view(storage.data() + at, storage.size() - at);
}

Interim classify_interim(unsigned status) {
  if (status / 100 != 1) return Interim::final_response;
  return status == 101 ? Interim::unexpected_101 : Interim::skip;
}

}  // namespace sluice::net::wire
