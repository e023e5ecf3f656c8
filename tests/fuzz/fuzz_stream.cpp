// Fuzzes the token accounting that reads streamed responses on the fly (UsageScanner). The
// promise under test: the counts do not depend on how the body is cut into chunks. The input is
// fed whole, then cut at points derived from its own bytes, and every result must match. A
// second scanner with a tiny line bound must simply survive any input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "usage_scanner.hpp"

using sluice::net::UsageScanner;

namespace {

struct Counts {
  std::int64_t prompt, output;
  bool done, error;
  bool operator==(const Counts&) const = default;
};

Counts counts(const UsageScanner& s) {
  return {s.prompt_tokens(), s.output_tokens(), s.saw_done(), s.saw_error()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);

  UsageScanner whole;  // default line bound (1 MiB) is far above libFuzzer's input sizes
  whole.feed(body);
  whole.finish();

  UsageScanner pieces;
  std::size_t offset = 0;
  std::size_t i = 0;
  while (offset < body.size()) {
    std::size_t n = 1 + (static_cast<unsigned char>(body[i++ % body.size()]) % 17);
    n = std::min(n, body.size() - offset);
    pieces.feed(body.substr(offset, n));
    offset += n;
  }
  pieces.finish();
  if (!(counts(whole) == counts(pieces))) std::abort();

  UsageScanner tiny(8);
  for (std::size_t k = 0; k < body.size(); k += 3)
    tiny.feed(body.substr(k, 3));
  tiny.finish();
  return 0;
}
