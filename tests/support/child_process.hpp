// Test helper: runs a program (a server under test) as a child process.
//
// The child gets /dev/null as stdin; its stdout and stderr are captured by a reader thread
// (so the child never blocks on a full pipe) and kept for failure messages. wait_for_port()
// reads stdout until the `listening on http://127.0.0.1:PORT` line every sluice server prints.
// The destructor sends SIGTERM, waits briefly, then SIGKILLs and reaps: no test leaks a process.
// If the test process itself dies (a ctest timeout, a crash), the kernel kills the child
// (PR_SET_PDEATHSIG). That signal follows the *thread* that created the child: create
// ChildProcess objects on a thread that lives as long as they do (the test's main thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sluice::test {

class ChildProcess {
 public:
  /// Starts `path` with `args` (argv[0] is `path`). Throws std::runtime_error on failure.
  ChildProcess(std::string path, std::vector<std::string> args);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Waits until stdout has a line starting with `prefix`; returns the rest of that line.
  /// Throws (with the captured output in the message) on timeout or if the child exits first.
  std::string wait_for_line(std::string_view prefix, std::chrono::milliseconds timeout);

  /// Waits for `<prefix>PORT` (default: the sluice listening line) and returns PORT; also
  /// remembered as port().
  std::uint16_t wait_for_port(std::string_view prefix = "listening on http://127.0.0.1:",
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  /// Captured output so far.
  std::string stdout_text() const;
  std::string stderr_text() const;
  /// Both streams, labelled, for failure messages.
  std::string output() const;

  /// Sends a signal (no-op once reaped).
  void signal(int sig);
  /// Waits for the child to exit (and its output to be captured); returns its exit code
  /// (128 + signal if killed), or nullopt if it is still running after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// SIGTERM, then SIGKILL after `grace`, and reap. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  void read_loop(int out_fd, int err_fd);
  bool try_reap(int flags);

  std::string path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_, err_;
  bool streams_closed_ = false;
  std::thread reader_;
};

}  // namespace sluice::test
