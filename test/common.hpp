// test/common.hpp — helpers shared by the test suites.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "goro/runtime.hpp"
#include "goro/time.hpp"

namespace goro_test {

inline goro::options procs(int n) {
  goro::options o;
  o.maxprocs = n;
  return o;
}

// Milliseconds elapsed since `t0`.
inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Sanitizer builds run 5-20x slower: tests scale their loops by these.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
inline constexpr int kSlow = 8;
#elif defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
inline constexpr int kSlow = 4;
#else
inline constexpr bool kSanitized = false;
inline constexpr int kSlow = 1;
#endif

// Polls `pred` (yielding, then sleeping 100 us at a time) until it holds or
// `limit` passes; returns its last value. Works on a fiber and on a plain
// thread (which yields and sleeps the thread).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; !pred(); ++i) {
    if (std::chrono::steady_clock::now() - t0 > limit) return pred();
    if (i < 200) {
      goro::yield();
    } else {
      goro::sleep_for(std::chrono::microseconds(100));
    }
  }
  return true;
}

// A pipe(2), closed on destruction; read_one/write_one move one byte (a
// thread-blocking call a fiber can be stuck in).
struct pipe_pair {
  int fd[2] = {-1, -1};
  pipe_pair() { BOOST_REQUIRE(::pipe(fd) == 0); }
  ~pipe_pair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  pipe_pair(const pipe_pair&) = delete;
  pipe_pair& operator=(const pipe_pair&) = delete;
  bool read_one() {
    char c = 0;
    return ::read(fd[0], &c, 1) == 1;
  }
  bool write_one() { return ::write(fd[1], "x", 1) == 1; }
};

// Tests are parameterized over these worker counts (as marl's are).
inline const std::vector<int> kProcs = {1, 2, 4, 8};

struct child_result {
  bool signaled = false;
  int signal = 0;
  int exit_code = -1;
  std::string err;  // what the child wrote to stderr
};

// Runs `body` in a forked child (stderr captured) and reports how it ended.
// Must be called while no runtime is running in this process.
inline child_result run_in_child(const std::function<void()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) std::abort();
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDERR_FILENO);
    // The test framework's crash handlers would turn an abort into a report
    // and a normal exit; the child must die as a user's program would.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::signal(sig, SIG_DFL);
    body();
    std::fflush(nullptr);
    ::_exit(0);
  }
  ::close(fds[1]);
  child_result r;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    r.err.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.signaled = WIFSIGNALED(status);
  r.signal = r.signaled ? WTERMSIG(status) : 0;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace goro_test
