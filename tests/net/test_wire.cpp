// The HTTP/1.1 message rules of src/net/wire.hpp over byte strings: each request head goes
// through Beast's parser as sluice's session does, then through check_request_framing(); heads
// are stripped and serialized and compared as bytes. No sockets, no clock.
#include <doctest/doctest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <string_view>

#include "wire.hpp"

using namespace sluice::net;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

/// What became of one request head.
struct Verdict {
  bool parser_refused = false;  ///< Beast's parser already rejects it (the session answers 400)
  unsigned status = 0;          ///< check_request_framing's status; 0 = accepted
  std::string message;
};

Verdict judge(std::string_view bytes) {
  http::request_parser<http::empty_body> parser;
  parser.eager(false);
  beast::error_code ec;
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  Verdict verdict;
  if (ec && ec != http::error::need_more) {
    verdict.parser_refused = true;
    verdict.message = ec.message();
    return verdict;
  }
  REQUIRE(parser.is_header_done());
  if (auto error = wire::check_request_framing(parser.get())) {
    verdict.status = static_cast<unsigned>(error->status);
    verdict.message = error->message;
  }
  return verdict;
}

http::request<http::empty_body> parse_request(std::string_view bytes) {
  http::request_parser<http::empty_body> parser;
  beast::error_code ec;
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  REQUIRE((!ec || ec == http::error::need_more));
  return parser.release();
}

http::response<http::empty_body> parse_response(std::string_view bytes) {
  http::response_parser<http::empty_body> parser;
  parser.skip(true);
  beast::error_code ec;
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  REQUIRE((!ec || ec == http::error::need_more));
  return parser.release();
}

}  // namespace

TEST_CASE("check_request_framing: every rule, one row each") {
  struct Row {
    const char* name;
    std::string head;
    unsigned status;       // 0 = accepted, else the status sluice answers
    const char* contains;  // in the message ("" = any)
  };
  const std::string post = "POST /api/generate HTTP/1.1\r\n";
  const Row rows[] = {
      // Host (RFC 9112 §3.2)
      {"HTTP/1.1 with one Host", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, ""},
      {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400, "without Host"},
      {"two Host lines", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400,
       "Host given more than once"},
      {"two Host lines on HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400,
       "more than once"},
      {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, ""},
      {"empty Host (allowed)", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0, ""},
      {"Host with port and IPv6", "GET / HTTP/1.1\r\nHost: [::1]:11435\r\n\r\n", 0, ""},
      {"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"},
      {"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"},
      {"Host with userinfo", "GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n", 400, "invalid Host"},
      // Content-Length (RFC 9112 §6.3)
      {"one Content-Length", post + "Host: x\r\nContent-Length: 2\r\n\r\n", 0, ""},
      {"two equal Content-Length lines",
       post + "Host: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", 400,
       "Content-Length given more than once"},
      {"a Content-Length list", post + "Host: x\r\nContent-Length: 2, 2\r\n\r\n", 400,
       "single decimal number"},
      {"Content-Length with Transfer-Encoding",
       post + "Host: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
       "both Content-Length and Transfer-Encoding"},
      // Transfer-Encoding (RFC 9112 §6.1)
      {"chunked", post + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0, ""},
      {"chunked, any case", post + "Host: x\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", 0, ""},
      {"a final coding that is not chunked", post + "Host: x\r\nTransfer-Encoding: gzip\r\n\r\n",
       400, "must end with a single chunked"},
      {"chunked then gzip", post + "Host: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
       "must end with a single chunked"},
      {"chunked twice in two lines",
       post + "Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
       "single chunked"},
      {"identity", post + "Host: x\r\nTransfer-Encoding: identity\r\n\r\n", 400, "single chunked"},
      {"gzip before chunked", post + "Host: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
       "\"gzip\""},
      {"empty Transfer-Encoding", post + "Host: x\r\nTransfer-Encoding: \r\n\r\n", 400,
       "single chunked"},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    const Verdict verdict = judge(row.head);
    if (verdict.parser_refused) {
      // Refused earlier is as good, as long as the row expected a refusal.
      CHECK(row.status != 0);
      continue;
    }
    CHECK(verdict.status == row.status);
    if (row.status != 0) CHECK(verdict.message.find(row.contains) != std::string::npos);
  }
}

TEST_CASE("close_after_response: HTTP/1.0 with Transfer-Encoding only") {
  CHECK(wire::close_after_response(
      parse_request("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")));
  CHECK_FALSE(wire::close_after_response(
      parse_request("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")));
  CHECK_FALSE(
      wire::close_after_response(parse_request("POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n")));
}

TEST_CASE("strip_hop_by_hop: hop-by-hop, Connection-named and framing fields go; others stay") {
  struct Row {
    const char* name;
    std::string fields;    // header lines after the request line
    std::string expected;  // the fields left, serialized
  };
  const Row rows[] = {
      {"plain end-to-end fields stay", "Host: x\r\nX-User-Id: a\r\nContent-Type: t\r\n",
       "Host: x\r\nX-User-Id: a\r\nContent-Type: t\r\n"},
      {"Connection keep-alive", "Host: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n",
       "Host: x\r\n"},
      {"the fixed hop-by-hop list",
       "Host: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Authorization: p\r\n"
       "Proxy-Connection: keep-alive\r\n",
       "Host: x\r\n"},
      {"Connection names a field", "Host: x\r\nConnection: close, X-Secret\r\nX-Secret: s\r\n",
       "Host: x\r\n"},
      {"Connection names Content-Length: framing goes with it (set again by the sender)",
       "Host: x\r\nConnection: keep-alive, Content-Length\r\nContent-Length: 5\r\n", "Host: x\r\n"},
      {"Content-Length always goes", "Host: x\r\nContent-Length: 5\r\n", "Host: x\r\n"},
      {"Transfer-Encoding always goes", "Host: x\r\nTransfer-Encoding: chunked\r\n", "Host: x\r\n"},
      {"names are case-insensitive", "Host: x\r\nconnection: x-A\r\nX-a: 1\r\nX-B: 2\r\n",
       "Host: x\r\nX-B: 2\r\n"},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    auto request = parse_request("GET / HTTP/1.1\r\n" + row.fields + "\r\n");
    wire::strip_hop_by_hop(request.base());
    CHECK(wire::serialize_head(request.base()) == "GET / HTTP/1.1\r\n" + row.expected + "\r\n");
  }
}

TEST_CASE("strip_hop_by_hop on a response: framing removed whatever Connection names") {
  auto response = parse_response(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive, Content-Length\r\nContent-Length: 2\r\n"
      "Content-Type: application/json\r\n\r\n");
  wire::strip_hop_by_hop(response.base());
  CHECK(wire::serialize_head(response.base()) ==
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n");
}

TEST_CASE("serialize_head: start line and fields as they are, for both versions") {
  auto request = parse_request("POST /api/show?x=1 HTTP/1.0\r\nHost: h\r\nA: b\r\n\r\n");
  CHECK(wire::serialize_head(request.base()) ==
        "POST /api/show?x=1 HTTP/1.0\r\nHost: h\r\nA: b\r\n\r\n");
  http::response_header<> response;
  response.version(11);
  response.result(http::status::not_found);
  response.set("X", "y");
  CHECK(wire::serialize_head(response) == "HTTP/1.1 404 Not Found\r\nX: y\r\n\r\n");
  response.version(10);
  CHECK(wire::serialize_head(response).rfind("HTTP/1.0 404 ", 0) == 0);
}

TEST_CASE("chunk_size_line: lowercase hex and CRLF") {
  std::array<char, 24> storage{};
  CHECK(wire::chunk_size_line(1, storage) == "1\r\n");
  CHECK(wire::chunk_size_line(15, storage) == "f\r\n");
  CHECK(wire::chunk_size_line(16, storage) == "10\r\n");
  CHECK(wire::chunk_size_line(16384, storage) == "4000\r\n");
  CHECK(wire::chunk_size_line(SIZE_MAX, storage) == "ffffffffffffffff\r\n");
}

TEST_CASE("classify_interim: 1xx are skipped except 101; others are final") {
  CHECK(wire::classify_interim(100) == wire::Interim::skip);
  CHECK(wire::classify_interim(102) == wire::Interim::skip);
  CHECK(wire::classify_interim(103) == wire::Interim::skip);
  CHECK(wire::classify_interim(101) == wire::Interim::unexpected_101);
  CHECK(wire::classify_interim(200) == wire::Interim::final_response);
  CHECK(wire::classify_interim(204) == wire::Interim::final_response);
  CHECK(wire::classify_interim(502) == wire::Interim::final_response);
}
