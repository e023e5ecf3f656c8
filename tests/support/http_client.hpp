// Test helper: a small blocking HTTP/1.1 client over one TCP connection (Beast underneath,
// kept out of this header). It can send a request and read the answer whole, or read it
// step by step: the head, then each body chunk with the time it arrived (to prove a server
// streams rather than buffers). It can also abort the connection mid-response (FIN or RST)
// and send raw bytes for malformed-request tests. Every read takes a timeout; a timeout leaves
// the connection usable. Not thread-safe: one client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Header {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";
  std::vector<Header> headers;  ///< Host is added unless given
  std::string body;             ///< Content-Length is set when non-empty or for POST
};

/// A POST with a JSON body.
HttpRequest post_json(std::string target, std::string body, std::vector<Header> headers = {});

struct BodyChunk {
  std::string data;
  Clock::time_point at;  ///< when the last byte of this piece arrived
};

struct HttpResponse {
  int status = 0;
  int interim_status = 0;  ///< a 1xx seen before the final head (e.g. 100 Continue)
  std::vector<Header> headers;
  std::string body;
  /// One entry per HTTP chunk for chunked bodies; one per read for others.
  std::vector<BodyChunk> chunks;
  bool chunked = false;
  bool complete = false;  ///< the whole body was received
  Clock::time_point sent_at{}, head_at{}, done_at{};

  /// First header with this name (case-insensitive).
  std::optional<std::string> header(std::string_view name) const;
};

enum class ReadStatus {
  ok,       ///< got what was asked for
  end,      ///< read_chunk: the body is complete
  timeout,  ///< nothing (more) within the timeout; the connection stays usable
  closed,   ///< the server closed or reset the connection
};

class HttpClient {
 public:
  HttpClient(std::string host, std::uint16_t port);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Connects (done implicitly by send). Throws on failure.
  void connect(milliseconds timeout = milliseconds(5000));

  /// Sends the request and reads the whole response. Throws if it does not complete in time.
  HttpResponse request(const HttpRequest& req, milliseconds timeout = milliseconds(10000));

  /// Sends a request and prepares to read its response into `response()`.
  void send(const HttpRequest& req, milliseconds timeout = milliseconds(5000));
  /// Sends bytes as they are (for malformed requests); prepares to read a response.
  void send_raw(std::string_view bytes, milliseconds timeout = milliseconds(5000));
  /// Prepares to read the next response on this connection without sending anything (the
  /// responses to requests pipelined with send_raw(), one after another).
  void next_response();
  /// Reads the status line and headers (skipping a 1xx interim response).
  ReadStatus read_head(milliseconds timeout);
  /// Reads the next body chunk into `chunk` (and appends it to response()).
  ReadStatus read_chunk(BodyChunk& chunk, milliseconds timeout);
  /// Reads the rest of the body.
  ReadStatus read_to_end(milliseconds timeout);
  /// The response being read.
  const HttpResponse& response() const;

  /// Closes the connection at once: FIN, or RST when `reset`.
  void abort(bool reset = false);
  /// Shuts down the sending side only (TCP half-close).
  void half_close();
  /// Waits until the server closes or resets the connection; false on timeout.
  bool wait_closed(milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// One-shot convenience: a fresh connection, one request, the whole response.
HttpResponse http_request(std::uint16_t port, const HttpRequest& req,
                          milliseconds timeout = milliseconds(10000));

}  // namespace sluice::test
