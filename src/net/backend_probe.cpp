// Small GET requests to a backend. See backend_probe.hpp.
#include "backend_probe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <optional>

#include "wire.hpp"

namespace sluice::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

Clock::duration left(Clock::time_point deadline) {
  return std::max(deadline - Clock::now(), Clock::duration::zero());
}
}  // namespace

asio::awaitable<ProbeResult> probe_get(UpstreamPool& pool, const config::UpstreamConfig& upstream,
                                       std::string path, Clock::duration timeout,
                                       std::size_t max_body) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  ProbeResult result;
  AcquireResult acquired = co_await pool.connect(upstream);
  if (!acquired.connection) {
    const std::string step = acquired.lookup_failed ? "resolve " + upstream.host : "connect";
    result.error =
        step + ": " + (acquired.timed_out ? std::string("timeout") : acquired.error.message());
    result.elapsed = Clock::now() - start;
    co_return result;
  }
  TimedStream& stream = acquired.connection->stream;
  http::request<http::empty_body> request{http::verb::get, upstream.base_path + path, 11};
  request.set(http::field::host, upstream.host_header);
  request.set(http::field::connection, "close");
  stream.expires_after(left(deadline));
  auto [write_error, written] = co_await http::async_write(stream, request, use_tuple);
  if (write_error) {
    result.error =
        write_error == beast::error::timeout ? "timeout" : "send: " + write_error.message();
    result.elapsed = Clock::now() - start;
    co_return result;
  }
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> parser;
  error_code read_error;
  for (int interim = 0; interim <= wire::kMaxInterimResponses; ++interim) {
    parser.emplace();
    parser->header_limit(16 * 1024);
    parser->body_limit(max_body);
    stream.expires_after(left(deadline));
    std::tie(read_error, std::ignore) =
        co_await http::async_read_header(stream, buffer, *parser, use_tuple);
    if (read_error) break;
    if (wire::classify_interim(parser->get().result_int()) != wire::Interim::skip) break;
  }
  if (!read_error) {
    result.status = parser->get().result_int();
    stream.expires_after(left(deadline));
    std::tie(read_error, std::ignore) =
        co_await http::async_read(stream, buffer, *parser, use_tuple);
    if (!read_error || read_error == http::error::end_of_stream) {
      result.body = std::move(parser->get().body());
      read_error = {};
    }
  }
  if (read_error == beast::error::timeout) {
    result.error = "timeout";
  } else if (read_error == http::error::body_limit) {
    result.error = "answer larger than " + std::to_string(max_body) + " bytes";
  } else if (read_error &&
             read_error.category() == http::make_error_code(http::error::bad_version).category() &&
             read_error != http::error::end_of_stream &&
             read_error != http::error::partial_message) {
    result.error = "not an HTTP response";
  } else if (read_error) {
    result.error = "receive: " + read_error.message();
  }
  error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
  result.elapsed = Clock::now() - start;
  co_return result;
}

std::string probe_problem(const ProbeResult& result) {
  if (!result.error.empty()) return result.error;
  if (result.status < 200 || result.status >= 500) return "status " + std::to_string(result.status);
  return "";
}

}  // namespace sluice::net
