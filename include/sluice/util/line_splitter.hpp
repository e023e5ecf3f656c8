// Splits a byte stream that arrives in arbitrary pieces into '\n'-terminated lines, with a bound:
// a line that lies inside one piece is handed over in place (no copy); only a line that spans
// pieces is copied, into at most max_line_bytes; a longer line is skipped to its end (reported
// once through on_overlong). So memory is O(max_line_bytes) per stream at worst and O(1) for the
// usual short lines. Pure and header-only: the proxy's usage scanner and sluice-bench's NDJSON
// reader both use it.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace sluice::util {

class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

  /// Feeds the next piece: `on_line(std::string_view)` for each line it completes (without its
  /// '\n'), `on_overlong()` once for each line longer than max_line_bytes.
  template <class OnLine, class OnOverlong>
  void feed(std::string_view bytes, OnLine&& on_line, OnOverlong&& on_overlong) {
    while (!bytes.empty()) {
      const char* newline = static_cast<const char*>(std::memchr(bytes.data(), '\n', bytes.size()));
      const std::size_t length =
          newline ? static_cast<std::size_t>(newline - bytes.data()) : bytes.size();
      const std::string_view piece = bytes.substr(0, length);
      if (!overlong_) {
        if (partial_.size() + piece.size() > max_line_bytes_) {
          overlong_ = true;
          partial_.clear();
          on_overlong();
        } else if (newline && partial_.empty()) {
          on_line(piece);  // the whole line is in this piece
        } else {
          partial_.append(piece);
          if (newline) on_line(std::string_view(partial_));
        }
      }
      if (!newline) return;
      partial_.clear();
      overlong_ = false;
      bytes.remove_prefix(length + 1);
    }
  }

  /// The stream ended: a last line without '\n' is handed over.
  template <class OnLine>
  void finish(OnLine&& on_line) {
    if (!overlong_ && !partial_.empty()) on_line(std::string_view(partial_));
    partial_.clear();
    overlong_ = false;
  }

 private:
  std::size_t max_line_bytes_;
  std::string partial_;
  bool overlong_ = false;  // the current line is past max_line_bytes_: skip to its end
};

}  // namespace sluice::util
