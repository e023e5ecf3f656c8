// Child processes for end-to-end tests (see child_process.hpp).
#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace sluice::test {
namespace {

constexpr std::size_t kMaxCaptured = 16 * 1024 * 1024;

void append_bounded(std::string& to, const char* data, std::size_t n) {
  if (to.size() >= kMaxCaptured) return;
  to.append(data, std::min(n, kMaxCaptured - to.size()));
}

}  // namespace

ChildProcess::ChildProcess(std::string path, std::vector<std::string> args)
    : path_(std::move(path)) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error("pipe failed");
  }
  std::vector<std::string> argv_storage;
  argv_storage.push_back(path_);
  for (auto& a : args)
    argv_storage.push_back(std::move(a));
  std::vector<char*> argv;
  for (auto& a : argv_storage)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  // fork + exec rather than posix_spawn, so the child can ask the kernel to kill it when this
  // test process dies (PR_SET_PDEATHSIG): a test killed by a ctest timeout or a crash must not
  // leave servers behind. Between fork and exec only async-signal-safe calls.
  const pid_t parent = ::getpid();
  int exec_error[2];
  if (::pipe2(exec_error, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0) {
      int e = errno;
      (void)!::write(exec_error[1], &e, sizeof e);
      ::_exit(127);
    }
    ::execve(path_.c_str(), argv.data(), environ);
    int e = errno;
    (void)!::write(exec_error[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(exec_error[1]);
  ::close(out[1]);
  ::close(err[1]);
  int rc = pid_ < 0 ? errno : 0;
  if (pid_ > 0) {
    // The write end closes on a successful exec (O_CLOEXEC): EOF means the program started.
    int child_errno = 0;
    ssize_t n;
    do {
      n = ::read(exec_error[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
      rc = child_errno;
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      reaped_ = true;
    }
  }
  ::close(exec_error[0]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error("cannot start " + path_ + ": " + std::strerror(rc));
  }
  reader_ = std::thread([this, o = out[0], e = err[0]] { read_loop(o, e); });
}

ChildProcess::~ChildProcess() {
  stop();
  if (reader_.joinable()) reader_.join();
}

void ChildProcess::read_loop(int out_fd, int err_fd) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open = 2;
  char buf[8192];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (auto& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n > 0) {
        std::lock_guard lock(mutex_);
        append_bounded(p.fd == out_fd ? out_ : err_, buf, std::size_t(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(p.fd);
        p.fd = -1;
        --open;
      }
      changed_.notify_all();
    }
  }
  for (auto& p : fds)
    if (p.fd >= 0) ::close(p.fd);
  std::lock_guard lock(mutex_);
  streams_closed_ = true;
  changed_.notify_all();
}

std::string ChildProcess::wait_for_line(std::string_view prefix,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mutex_);
  for (;;) {
    std::size_t pos = 0;
    while (pos < out_.size()) {
      const auto nl = out_.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string_view line(out_.data() + pos, nl - pos);
      if (line.substr(0, prefix.size()) == prefix) return std::string(line.substr(prefix.size()));
      pos = nl + 1;
    }
    if (streams_closed_) {
      lock.unlock();
      throw std::runtime_error(path_ + " exited before printing '" + std::string(prefix) + "'\n" +
                               output());
    }
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      lock.unlock();
      throw std::runtime_error("timed out waiting for '" + std::string(prefix) + "' from " + path_ +
                               "\n" + output());
    }
  }
}

std::uint16_t ChildProcess::wait_for_port(std::string_view prefix,
                                          std::chrono::milliseconds timeout) {
  const std::string rest = wait_for_line(prefix, timeout);
  const unsigned long value = std::stoul(rest);
  if (value == 0 || value > 65535) throw std::runtime_error("bad port in '" + rest + "'");
  port_ = std::uint16_t(value);
  return port_;
}

std::string ChildProcess::stdout_text() const {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string ChildProcess::stderr_text() const {
  std::lock_guard lock(mutex_);
  return err_;
}

std::string ChildProcess::output() const {
  std::lock_guard lock(mutex_);
  return "--- stdout of " + path_ + " ---\n" + out_ + "--- stderr ---\n" + err_ + "--- end ---";
}

bool ChildProcess::try_reap(int flags) {
  if (reaped_) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, flags);
  if (r != pid_) return false;
  reaped_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

void ChildProcess::signal(int sig) {
  if (!reaped_ && pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!try_reap(WNOHANG)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Let the reader drain what the child wrote before it exited.
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [this] { return streams_closed_; });
  return exit_code_;
}

void ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0 || reaped_) return;
  signal(SIGTERM);
  if (!wait_exit(grace)) {
    signal(SIGKILL);
    try_reap(0);
  }
}

}  // namespace sluice::test
