// Fuzzes the HTTP/1.1 rules of src/net/wire at the client edge. The input goes through Beast's
// request parser as a session's first read would; a head the parser accepts goes through
// check_request_framing(), and one that passes is stripped and serialized as sluice forwards it.
// Promises checked: no crash or UB; a refusal is 400 or 501 with a message; an accepted head has
// at most one Host and either one all-digit Content-Length or a Transfer-Encoding ending in a
// single chunked, never both; after strip_hop_by_hop() no framing, hop-by-hop or
// Connection-named field is left; the serialized head parses again to the same method, target
// and fields. Also: chunk_size_line() reads back as the size it was given.
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "wire.hpp"

namespace beast = boost::beast;
namespace http = beast::http;
using namespace sluice::net;

namespace {

bool parse(std::string_view bytes, http::request_parser<http::empty_body>& parser) {
  parser.eager(false);
  parser.header_limit(16 * 1024);
  beast::error_code ec;
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  return (!ec || ec == http::error::need_more) && parser.is_header_done();
}

void check_chunk_line(std::size_t size) {
  if (size == 0) return;
  std::array<char, 24> storage{};
  const std::string_view line = wire::chunk_size_line(size, storage);
  if (line.size() < 3 || line.substr(line.size() - 2) != "\r\n") std::abort();
  if (std::strtoull(std::string(line).c_str(), nullptr, 16) != size) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < size && i < 8; ++i)
    word = (word << 8) | data[i];
  check_chunk_line(static_cast<std::size_t>(word));

  http::request_parser<http::empty_body> parser;
  if (!parse(input, parser)) return 0;
  const auto& head = parser.get();
  if (auto error = wire::check_request_framing(head)) {
    const auto status = static_cast<unsigned>(error->status);
    if ((status != 400 && status != 501) || error->message.empty()) std::abort();
    return 0;
  }
  auto count = [&](http::field f) {
    auto [first, last] = head.equal_range(f);
    return std::distance(first, last);
  };
  if (count(http::field::host) > 1) std::abort();
  if (head.version() >= 11 && count(http::field::host) != 1) std::abort();
  const bool has_length = count(http::field::content_length) > 0;
  const bool has_coding = count(http::field::transfer_encoding) > 0;
  if (has_length && has_coding) std::abort();
  if (has_length && count(http::field::content_length) != 1) std::abort();

  // As forwarded: stripped, then serialized; it must parse again to the same message.
  http::request<http::empty_body> forwarded = parser.release();
  std::vector<std::string> named;
  for (auto token : http::token_list(forwarded[http::field::connection]))
    named.emplace_back(token);
  wire::strip_hop_by_hop(forwarded.base());
  for (const auto& field : forwarded.base()) {
    const auto name = field.name();
    if (name == http::field::content_length || name == http::field::transfer_encoding ||
        name == http::field::connection || name == http::field::keep_alive ||
        name == http::field::te || name == http::field::trailer || name == http::field::upgrade)
      std::abort();
    for (const auto& token : named) {
      if (beast::iequals(token, field.name_string())) std::abort();
    }
  }
  const std::string bytes = wire::serialize_head(forwarded.base());
  http::request_parser<http::empty_body> again;
  if (!parse(bytes, again)) std::abort();
  if (again.get().method_string() != forwarded.method_string() ||
      again.get().target() != forwarded.target())
    std::abort();
  std::size_t before = 0, after = 0;
  for (const auto& field : forwarded.base()) {
    (void)field;
    ++before;
  }
  for (const auto& field : again.get().base()) {
    (void)field;
    ++after;
  }
  if (before != after) std::abort();
  return 0;
}
