// A blocking one-shot HTTP/1.1 client for the calls around a load run (the simulators' stats
// and config, sluice's /admin/state): each on its own io_context, under one timeout per step.
// Private to src/bench.
#pragma once

#include <chrono>
#include <string>

#include "sluice/bench/target.hpp"

namespace sluice::bench {

struct GetResult {
  int status = 0;
  std::string body;
  std::string error;  ///< why there is no answer ("" when status is set)
  std::chrono::steady_clock::time_point sent, received;  ///< request written, head read
};

/// A GET of `path`, or a POST of the JSON `post_body` when given. Answers up to 256 MiB.
GetResult http_get(const HttpTarget& target, const std::string& path, std::chrono::seconds timeout,
                   const std::string* post_body = nullptr);

}  // namespace sluice::bench
