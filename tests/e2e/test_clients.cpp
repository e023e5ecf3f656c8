// Real clients, unchanged, against sluice with progress on: tests/clients/progress.test.mjs runs
// the npm `ollama` and `openai` packages and an undici fetch with a 2 s headersTimeout against
// a Proxy in this process in front of sluice-sim. Needs Node and tests/clients/node_modules
// (scripts/setup.sh installs both: `npm ci`); without them the test is skipped (exit 77) with a
// message saying so.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "child_process.hpp"
#include "proxy_harness.hpp"

using namespace sluice::test;

namespace {

const std::filesystem::path kClients = std::filesystem::path(SLUICE_SOURCE_DIR) / "tests/clients";

// Skips the whole binary (ctest SKIP_RETURN_CODE 77) when the clients cannot run here.
const bool kAvailable = [] {
  std::string why;
  if (std::string(SLUICE_NODE).empty())
    why = "node was not found when the build was configured";
  else if (!std::filesystem::exists(kClients / "node_modules/ollama"))
    why = "tests/clients/node_modules is missing (run scripts/setup.sh, which runs npm ci)";
  if (why.empty()) return true;
  std::cout << "clients_node skipped: " << why << "\n";
  std::exit(77);
}();

}  // namespace

TEST_CASE("npm ollama, npm openai and a 2 s headersTimeout fetch, unchanged, with progress") {
  REQUIRE(kAvailable);
  Simulator sim;
  ProxyUnderTest proxy(proxy_config(sim.url(), R"({"max_concurrency": 1,
      "progress_interval": "1s"})"));
  ChildProcess node(SLUICE_NODE,
                    {(kClients / "progress.test.mjs").string(), std::to_string(proxy.port())});
  const std::optional<int> code = node.wait_exit(std::chrono::seconds(120));
  INFO(node.output());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  MESSAGE(node.stdout_text());
}
