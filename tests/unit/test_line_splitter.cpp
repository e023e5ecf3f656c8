// util::LineSplitter: lines in place or across pieces, the bound, the last line without '\n'.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "sluice/util/line_splitter.hpp"

using sluice::util::LineSplitter;

namespace {

struct Collect {
  std::vector<std::string> lines;
  int overlong = 0;
  void feed(LineSplitter& s, std::string_view bytes) {
    s.feed(
        bytes, [&](std::string_view line) { lines.emplace_back(line); }, [&] { ++overlong; });
  }
  void finish(LineSplitter& s) {
    s.finish([&](std::string_view line) { lines.emplace_back(line); });
  }
};

}  // namespace

TEST_CASE("LineSplitter: the same lines however the stream is cut") {
  const std::string stream = "a\nbb\n\nccc\nlast";
  for (std::size_t cut = 1; cut <= stream.size(); ++cut) {
    INFO("pieces of " << cut);
    LineSplitter splitter(64);
    Collect c;
    for (std::size_t at = 0; at < stream.size(); at += cut)
      c.feed(splitter, std::string_view(stream).substr(at, cut));
    c.finish(splitter);
    CHECK(c.lines == std::vector<std::string>{"a", "bb", "", "ccc", "last"});
    CHECK(c.overlong == 0);
  }
}

TEST_CASE("LineSplitter: a line past the bound is skipped to its end, reported once") {
  LineSplitter splitter(4);
  Collect c;
  c.feed(splitter, "ok\n12345");  // in place: too long already
  c.feed(splitter, "678");
  c.feed(splitter, "9\nab");
  c.feed(splitter, "cd\n");  // spans pieces, exactly at the bound
  c.feed(splitter, "abc");
  c.feed(splitter, "de\nz");  // spans pieces, past the bound
  c.finish(splitter);
  CHECK(c.lines == std::vector<std::string>{"ok", "abcd", "z"});
  CHECK(c.overlong == 2);
}

TEST_CASE(
    "LineSplitter: finish() hands over nothing after a complete last line or an overlong one") {
  LineSplitter splitter(3);
  Collect c;
  c.feed(splitter, "x\n");
  c.finish(splitter);
  c.feed(splitter, "toolong");
  c.finish(splitter);
  CHECK(c.lines == std::vector<std::string>{"x"});
  CHECK(c.overlong == 1);
}
