// SourceMap: JSON pointer -> line/column in the original text, with comments and tricky strings;
// and the one readable form of a pointer that config messages use.
#include <doctest/doctest.h>

#include <string>

#include "sluice/config/config.hpp"
#include "sluice/config/source_map.hpp"

using sluice::config::location_of;
using sluice::config::pointer_append;
using sluice::config::SourceLocation;
using sluice::config::SourceMap;
using sluice::config::SourceProblem;

TEST_CASE("source map: object members map to the line of their key") {
  const std::string text =
      "{\n"                            // 1
      "  \"a\": 1,\n"                  // 2
      "  \"b\": {\n"                   // 3
      "    \"c\": [10,\n"              // 4
      "            20, {\"d\": 3}]\n"  // 5
      "  }\n"                          // 6
      "}\n";
  SourceMap map = SourceMap::build(text);
  CHECK_FALSE(map.problem().has_value());
  CHECK(map.find("") == SourceLocation{1, 1});
  CHECK(map.find("/a") == SourceLocation{2, 3});
  CHECK(map.find("/b") == SourceLocation{3, 3});
  CHECK(map.find("/b/c") == SourceLocation{4, 5});
  CHECK(map.find("/b/c/0") == SourceLocation{4, 11});
  CHECK(map.find("/b/c/1") == SourceLocation{5, 13});
  CHECK(map.find("/b/c/2") == SourceLocation{5, 17});
  CHECK(map.find("/b/c/2/d") == SourceLocation{5, 18});
  CHECK_FALSE(map.find("/b/c/3").has_value());
}

TEST_CASE("source map: comments and strings with braces, quotes and comment markers") {
  const std::string text =
      "// leading comment with { and \"\n"                   // 1
      "{\n"                                                  // 2
      "  /* block { [ \" comment\n"                          // 3
      "     spanning lines } */\n"                           // 4
      "  \"s\": \"a } ] { [ \\\" // not a comment /* \",\n"  // 5
      "  // \"fake\": 1,\n"                                  // 6
      "  \"t\": \"x\", /* inline */ \"u\": 2 // tail\n"      // 7
      "  , \"v\": true\n"                                    // 8
      "}\n";
  SourceMap map = SourceMap::build(text);
  CHECK_FALSE(map.problem().has_value());
  CHECK(map.find("/s")->line == 5);
  CHECK_FALSE(map.find("/fake").has_value());
  CHECK(map.find("/t")->line == 7);
  CHECK(map.find("/u")->line == 7);
  CHECK(map.find("/v")->line == 8);
}

TEST_CASE("source map: keys with escapes and pointer escaping") {
  const std::string text = "{\"a/b\": 1, \"c~d\": 2, \"\\u00e9\\\"q\": 3,\n \"\\ud83d\\ude00\": 4}";
  SourceMap map = SourceMap::build(text);
  CHECK_FALSE(map.problem().has_value());
  CHECK(map.find(pointer_append("", "a/b")).has_value());
  CHECK(pointer_append("", "a/b") == "/a~1b");
  CHECK(pointer_append("/x", "c~d") == "/x/c~0d");
  CHECK(map.find(pointer_append("", "c~d")).has_value());
  CHECK(map.find(pointer_append("", "\xc3\xa9\"q")).has_value());
  CHECK(map.find(pointer_append("", "\xf0\x9f\x98\x80"))->line == 2);
}

TEST_CASE("source map: locate falls back to the nearest ancestor") {
  const std::string text = "{\n \"a\": {\n  \"b\": 1\n }\n}";
  SourceMap map = SourceMap::build(text);
  CHECK(map.locate("/a/b").line == 3);
  CHECK(map.locate("/a/zzz").line == 2);
  CHECK(map.locate("/nothing/here").line == 1);
  CHECK(SourceMap::build("").locate("/x").line == 0);
}

TEST_CASE("source map: duplicate keys are reported with the second occurrence") {
  SourceMap map = SourceMap::build("{\n \"a\": {\"x\": 1,\n  \"x\": 2}}");
  REQUIRE(map.problem().has_value());
  CHECK(map.problem()->kind == SourceProblem::Kind::duplicate_key);
  CHECK(map.problem()->pointer == "/a/x");
  CHECK(map.problem()->where.line == 3);
  // The same key in different objects is fine.
  CHECK_FALSE(SourceMap::build("[{\"x\": 1}, {\"x\": 2}]").problem().has_value());
}

TEST_CASE("source map: nesting depth is bounded without recursion") {
  std::string deep(100000, '[');
  SourceMap map = SourceMap::build(deep);
  REQUIRE(map.problem().has_value());
  CHECK(map.problem()->kind == SourceProblem::Kind::too_deep);
  CHECK(map.problem()->where.column == SourceMap::kDefaultMaxDepth + 1);

  std::string ok = std::string(10, '[') + std::string(10, ']');
  CHECK_FALSE(SourceMap::build(ok).problem().has_value());
}

TEST_CASE("source map: malformed input is survived, never over-read") {
  const char* inputs[] = {"{",          "}",       "\"abc",     "{\"a\" 1}", "[1,,2]",
                          "{\"a\":1}}", "/* open", "\"\\u12",   "\"\\",      "{{}}",
                          "1 2",        "[/ 1]",   "{\"a\": /}"};
  for (const char* input : inputs) {
    CAPTURE(input);
    SourceMap map = SourceMap::build(input);
    (void)map.locate("/a/0");
  }
  CHECK(SourceMap::build("}").problem()->kind == SourceProblem::Kind::malformed);
  CHECK(SourceMap::build("\"abc").problem()->kind == SourceProblem::Kind::malformed);
  CHECK(SourceMap::build("{{}}").problem()->kind == SourceProblem::Kind::malformed);
}

TEST_CASE("location_of counts lines and columns in bytes") {
  CHECK(location_of("ab\ncd", 0) == SourceLocation{1, 1});
  CHECK(location_of("ab\ncd", 3) == SourceLocation{2, 1});
  CHECK(location_of("ab\ncd", 4) == SourceLocation{2, 2});
  CHECK(location_of("ab\ncd", 99) == SourceLocation{2, 3});
}

TEST_CASE("source map: knows which values are arrays") {
  SourceMap map = SourceMap::build(R"({"a": [1, {"b": []}], "c": {"0": [2]}})");
  CHECK(map.is_array("/a"));
  CHECK(map.is_array("/a/1/b"));
  CHECK(map.is_array("/c/0"));
  CHECK_FALSE(map.is_array(""));
  CHECK_FALSE(map.is_array("/a/1"));
  CHECK_FALSE(map.is_array("/c"));
  CHECK_FALSE(map.is_array("/nowhere"));
}

TEST_CASE("display: members, elements and whole pointers read as config messages write them") {
  using sluice::config::display_element;
  using sluice::config::display_member;
  using sluice::config::display_pointer;
  CHECK(display_member("", "scheduler") == "scheduler");
  CHECK(display_member("scheduler", "max_queue") == "scheduler.max_queue");
  CHECK(display_member("", "$schema") == "$schema");
  CHECK(display_member("limits", "max body") == "limits[\"max body\"]");
  CHECK(display_member("", "a.b") == "[\"a.b\"]");
  CHECK(display_member("x", "") == "x[\"\"]");
  CHECK(display_member("x", "say \"hi\"") == "x[\"say \\\"hi\\\"\"]");
  CHECK(display_element("scheduler.workloads", 1) == "scheduler.workloads[1]");

  // An index is shown in brackets only where the value is an array: "1" may be a key.
  const std::string text = R"({"scheduler": {"workloads": [{"name": "a"},
      {"name": "b", "match": {"tier": ["x", "y"], "1": "z"}}]}, "limits": {"a/b~c": 1}})";
  SourceMap map = SourceMap::build(text);
  auto is_array = [&](std::string_view prefix) { return map.is_array(prefix); };
  CHECK(display_pointer("", is_array) == "");
  CHECK(display_pointer("/scheduler/workloads/1/match/tier/0", is_array) ==
        "scheduler.workloads[1].match.tier[0]");
  CHECK(display_pointer("/scheduler/workloads/1/match/1", is_array) ==
        "scheduler.workloads[1].match.1");
  CHECK(display_pointer("/limits/a~1b~0c", is_array) == "limits[\"a/b~c\"]");
  // The same pointer shown the way Path builds it step by step.
  CHECK(display_pointer(pointer_append(pointer_append("/scheduler/workloads", "1"), "match"),
                        is_array) ==
        display_member(
            display_element(display_member(display_member("", "scheduler"), "workloads"), 1),
            "match"));
}

TEST_CASE("config: errors inside arrays show the index in brackets, duplicate keys too") {
  sluice::config::ConfigResult r =
      sluice::config::parse_config(R"({"scheduler": {"workloads": [{"name": "a"},
      {"name": "b", "match": {"tier": [7]}}]}})",
                                   "c.json");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() ==
        "c.json:2: scheduler.workloads[1].match.tier[0]: must be a "
        "string, not a number");
  r = sluice::config::parse_config(
      "{\"scheduler\": {\"workloads\": [{\"name\": \"a\"},\n"
      "  {\"name\": \"b\", \"name\": \"c\"}]}}",
      "c.json");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() ==
        "c.json:2: scheduler.workloads[1].name: duplicate key (each key may appear once per "
        "object)");
  // A label named like an index stays a key.
  r = sluice::config::parse_config(
      R"({"scheduler": {"workloads": [{"name": "a", "match": {"1": "x", "1": "y"}}]}})", "c.json");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].field == "scheduler.workloads[0].match.1");
}
