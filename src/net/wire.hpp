// HTTP/1.1 message rules the proxy applies at both edges, with no sockets and no clock: which
// request heads are refused for their framing, which headers never cross a hop, and the wire
// form of the heads and chunks sluice writes itself. Unit-tested over byte strings
// (tests/net/test_wire.cpp) and fuzzed (tests/fuzz/fuzz_wire.cpp).
//
// The rule behind the framing functions: the framing of every message sluice sends is decided by
// sluice from what it knows about the body (its length, or that it is streamed), never copied
// from the message it received. strip_hop_by_hop() therefore removes Content-Length and
// Transfer-Encoding together with the hop-by-hop headers, and every sender sets its own. A
// `Connection: Content-Length` from either side can then remove nothing the receiver needs to
// find the end of the message (the shape of request smuggling and response desynchronisation).
//
// Internal to src/net (includes Beast's message types).
#pragma once

#include <array>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::net::wire {

namespace http = boost::beast::http;

/// A request refused because of how it is framed. Answered with `status` and a JSON error
/// carrying `message`; the connection closes after it (where its body ends cannot be trusted).
struct FramingError {
  http::status status = http::status::bad_request;
  std::string message;
};

/// Checks a client request head that Beast's parser accepted, against the rules of RFC 9112
/// §3.2 and §6 that the parser leaves to the server (first failure wins):
///  * HTTP/1.1 carries exactly one Host field (400);
///  * Content-Length is one field holding one decimal number: two fields, even equal ones, or a
///    list ("2, 2") are 400;
///  * Content-Length together with Transfer-Encoding is 400 (the two framings disagree by
///    construction; a proxy that picked one would be picking for the attacker);
///  * Transfer-Encoding ends with exactly one `chunked` (400), and applies no other coding
///    before it (501 naming the coding: sluice, like Ollama, decodes only chunked).
std::optional<FramingError> check_request_framing(const http::request_header<>& head);

/// RFC 9112 §6.1: an HTTP/1.0 request with Transfer-Encoding is served, then its connection is
/// closed (its framing is treated as faulty).
bool close_after_response(const http::request_header<>& head);

/// Removes the headers that do not cross a hop (RFC 9110 §7.6.1): Connection and every field
/// it names, Keep-Alive, Proxy-*, TE, Trailer, Upgrade; and the framing fields Content-Length
/// and Transfer-Encoding, which the sender then sets from what it knows (see the file comment).
/// Allocates nothing unless Connection names fields beyond keep-alive/close.
void strip_hop_by_hop(http::fields& fields);

/// The wire form of a head: start line, fields as they are, empty line.
std::string serialize_head(const http::request_header<>& head);
std::string serialize_head(const http::response_header<>& head);

/// "<size in hex>\r\n", the line that opens a chunk of `size` bytes (size > 0), written into
/// `storage` (the view points into it).
std::string_view chunk_size_line(std::size_t size, std::array<char, 24>& storage);
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

/// How an upstream's interim (1xx) response head is handled while waiting for the final one.
enum class Interim {
  final_response,  ///< not 1xx: the response to relay
  skip,            ///< 100 Continue, 102, 103 Early Hints...: read the next head
  unexpected_101,  ///< 101 Switching Protocols: sluice never asks for an upgrade (502)
};
Interim classify_interim(unsigned status);
/// Interim responses read before one final response at most; more is a bad response (502).
inline constexpr int kMaxInterimResponses = 8;

}  // namespace sluice::net::wire
