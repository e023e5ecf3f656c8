// Unit tests of POST /sim/config's validation and GET /sim/config's JSON (src/sim/live_config).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "duration.hpp"
#include "live_config.hpp"

using namespace sluice::sim;

namespace {

std::string error_of(const LiveSettings& s, std::string_view body) {
  auto r = apply_live_changes(s, body);
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("POST /sim/config changes the fields it names and keeps the rest") {
  LiveSettings s;
  s.parallel = 4;
  s.keep_alive_ns = 300'000'000'000;
  auto r =
      apply_live_changes(s, R"({"parallel":2,"decode_rate":30.5,"load_time":"1.5s","keep_alive":-1,
             "max_loaded":3,"external_streams":2,"decode_scaling":"2:0.8"})");
  REQUIRE(std::holds_alternative<LiveSettings>(r));
  const auto& n = std::get<LiveSettings>(r);
  CHECK(n.parallel == 2);
  CHECK(n.gpu.decode_tokens_per_second == 30.5);
  CHECK(n.gpu.prefill_tokens_per_second == s.gpu.prefill_tokens_per_second);
  CHECK(n.load_ns == 1'500'000'000);
  CHECK(n.keep_alive_ns == kForever);
  CHECK(n.max_loaded == 3);
  CHECK(n.external_streams == 2);
  CHECK(n.gpu.scaling.size() == 2);
  CHECK(n.max_queue == 0);
  // Numbers are seconds; "0" is a duration too.
  auto z = std::get<LiveSettings>(apply_live_changes(s, R"({"load_time":0.25,"keep_alive":"0"})"));
  CHECK(z.load_ns == 250'000'000);
  CHECK(z.keep_alive_ns == 0);
}

TEST_CASE(
    "POST /sim/config rejects bad values naming the field, and unknown keys; nothing changes") {
  LiveSettings s;
  CHECK(error_of(s, R"({"parallel":0})") == "field \"parallel\" must be an integer from 1 to 1024");
  CHECK(error_of(s, R"({"parallel":1.5})").find("\"parallel\"") != std::string::npos);
  CHECK(error_of(s, R"({"parallel":"2"})").find("\"parallel\"") != std::string::npos);
  CHECK(error_of(s, R"({"decode_rate":-1})").find("\"decode_rate\"") != std::string::npos);
  CHECK(error_of(s, R"({"load_time":"-1s"})").find("\"load_time\"") != std::string::npos);
  CHECK(error_of(s, R"({"load_time":"soon"})") ==
        "field \"load_time\": time: invalid duration \"soon\"");
  CHECK(error_of(s, R"({"decode_scaling":"4:2"})").find("decode_scaling") != std::string::npos);
  CHECK(error_of(s, R"({"parallel":2,"turbo":true})").find("unknown field \"turbo\"") == 0);
  CHECK(error_of(s, "[1]") == "request body must be a JSON object");
  CHECK(error_of(s, "{").find("invalid JSON") == 0);
}

TEST_CASE("GET /sim/config's JSON is accepted back by POST") {
  LiveSettings s;
  s.parallel = 3;
  s.load_ns = 2'000'000'000;
  s.keep_alive_ns = kForever;
  const auto text = live_settings_json(s);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["parallel"] == 3);
  CHECK(j["load_time"] == 2.0);
  CHECK(j["keep_alive"] == -1.0);
  CHECK(j["decode_scaling"] == "1:1,2:0.7,4:0.37,8:0.18");
  auto back = apply_live_changes(LiveSettings{}, text);
  REQUIRE(std::holds_alternative<LiveSettings>(back));
  CHECK(live_settings_json(std::get<LiveSettings>(back)) == text);
}
