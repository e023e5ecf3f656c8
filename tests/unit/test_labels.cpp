#include <doctest/doctest.h>

#include "sluice/core/labels.hpp"

using namespace sluice::core;

TEST_CASE("labels: set replaces, get finds, bounded size") {
  Labels labels{{"user", "alice"}, {"tier", "paid"}};
  CHECK(labels.get("user") == "alice");
  labels.set("user", "bob");
  CHECK(labels.get("user") == "bob");
  CHECK(labels.size() == 2);
  CHECK_FALSE(labels.get("nope"));
  CHECK(labels.value_or_empty("nope").empty());
  CHECK(labels.erase("tier"));
  CHECK_FALSE(labels.erase("tier"));
  for (std::size_t i = labels.size(); i < kMaxLabels; ++i) {
    std::string name = "l";  // (not "l" + ...: GCC 12 -Wrestrict false positive)
    name += std::to_string(i);
    CHECK(labels.set(name, "v"));
  }
  CHECK_FALSE(labels.set("one-too-many", "v"));
}

TEST_CASE("labels: priority accepts positive finite numbers only") {
  CHECK(parse_priority("8") == 8.0);
  CHECK(parse_priority("0.5") == 0.5);
  CHECK(parse_priority("1e3") == 1000.0);
  CHECK(parse_priority("1000000") == 1e6);
  std::string error;
  for (const char* bad : {"abc", "-3", "0", "1e999", "nan", "inf", "8x", "", " 8", "1000001"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_priority(bad, &error));
    CHECK_FALSE(error.empty());
  }
  parse_priority("1e999", &error);
  CHECK(error.find("out of range") != std::string::npos);
}

TEST_CASE("labels: tokens are bounded positive integers") {
  CHECK(parse_tokens("1") == 1);
  CHECK(parse_tokens("4096") == 4096);
  std::string error;
  for (const char* bad : {"0", "-1", "1.5", "x", "", "100000001", "99999999999999999999"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_tokens(bad, &error));
  }
}

TEST_CASE("labels: values must be short printable ASCII") {
  CHECK(valid_label_value("alice"));
  CHECK(valid_label_value("user 42"));
  std::string error;
  CHECK_FALSE(valid_label_value("", &error));
  CHECK_FALSE(valid_label_value(std::string(kMaxLabelValueBytes + 1, 'a'), &error));
  CHECK(error.find("longer than") != std::string::npos);
  CHECK_FALSE(valid_label_value("a\x01b", &error));
  CHECK_FALSE(valid_label_value("caf\xc3\xa9", &error));
  CHECK_FALSE(valid_label_value(" alice", &error));
}
