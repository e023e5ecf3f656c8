// What sluice-sim remembers about requests, for GET /sim/stats: counters and a bounded log of
// per-request records. Pure (no I/O, no clock; times are simulated nanoseconds since start).
//
// Invariants: ids increase by one per GPU request; the log holds at most `max_records`
// records, dropping the oldest; a record is shared with the request that owns it, so a request
// still updates its record after the log dropped it (or after a reset), and its final outcome
// is always counted.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::sim {

struct Record {
  std::uint64_t id = 0;
  std::string route;
  std::string model;  ///< canonical name
  std::int64_t arrival_ns = 0;
  std::optional<std::int64_t> model_ready_ns;  ///< its model was loaded (residency)
  std::optional<std::int64_t> start_ns;        ///< slot acquired
  std::optional<std::int64_t> first_token_ns;  ///< first token produced
  std::optional<std::int64_t> end_ns;          ///< finished, failed or cancelled
  std::int64_t load_ns = 0;     ///< load_duration reported (time until scheduled on the model)
  bool triggered_load = false;  ///< this request's arrival made the model load
  int prompt_tokens = 0;
  int planned_tokens = 0;  ///< output length chosen at arrival
  int tokens = 0;          ///< tokens produced so far
  bool stream = false;
  /// waiting | running | completed | cancelled | error | rejected | fault | load
  std::string outcome = "waiting";
  bool cancelled = false;
  std::string fault;  ///< X-Sim-Fault or drawn fault, canonical text
  std::string host;   ///< Host header as received
  std::vector<std::pair<std::string, std::string>> headers;  ///< lowercased names, bounded
};

struct Counters {
  std::uint64_t total = 0;
  std::uint64_t completed = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t errors = 0;    ///< ended by a fault or error after admission
  std::uint64_t rejected = 0;  ///< refused before admission (queue full, faults at arrival)
};

class RecordLog {
 public:
  explicit RecordLog(std::size_t max_records) : max_records_(max_records) {}

  /// Adds a record (its id is assigned here) and returns the shared handle.
  std::shared_ptr<Record> add(Record record);
  /// Marks `record` finished with `outcome` at `now_ns` and counts it. Idempotent.
  void finish(Record& record, std::string outcome, std::int64_t now_ns);
  /// Forgets finished records and zeroes the counters (records in flight stay).
  void reset();

  const Counters& counters() const { return counters_; }
  const std::deque<std::shared_ptr<Record>>& records() const { return records_; }
  std::size_t max_records() const { return max_records_; }

 private:
  std::size_t max_records_;
  std::uint64_t next_id_ = 1;
  std::deque<std::shared_ptr<Record>> records_;
  Counters counters_;
};

/// A request to /api/show or /api/pull (not a GPU request): what a fleet test checks reached
/// this backend.
struct CallRecord {
  std::string method;
  std::string path;
  std::string model;                                         ///< as the body named it
  std::vector<std::pair<std::string, std::string>> headers;  ///< lowercased names, bounded
};

/// JSON of one call record (for /sim/stats "calls").
std::string call_json(const CallRecord& call);

/// JSON of one record (for /sim/stats).
std::string record_json(const Record& record);

}  // namespace sluice::sim
