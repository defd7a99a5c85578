// Unit tests for diagnostics: deadlock detection (and what it must never
// flag), the fiber dump, the leak report and check, SIGQUIT dumps, the
// migration debug mode and the internal-lock misuse check.
#define BOOST_TEST_MODULE diag
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"
#include "goro/net.hpp"

using goro_test::procs;
using namespace std::chrono_literals;

namespace {

constexpr const char* kDeadlock = "goro: fatal error: all fibers are asleep - deadlock!";

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t pos = 0; (pos = s.find(what, pos)) != std::string::npos; ++pos) ++n;
  return n;
}

// Runs `body` in a child process for at most `limit`: its stderr, and how
// it ended (killed with SIGKILL if it was still running at the limit).
struct child_run {
  std::string err;
  bool killed = false;  // still running at the limit
  int signal = 0;       // the signal that ended it, else 0
  int exit_code = -1;
};
child_run run_child_for(const std::function<void()>& body, std::chrono::milliseconds limit) {
  int fds[2];
  BOOST_REQUIRE_EQUAL(::pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDERR_FILENO);
    // Die as a user's program would, not through the framework's handlers.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::signal(sig, SIG_DFL);
    body();
    std::fflush(nullptr);
    ::_exit(0);
  }
  ::close(fds[1]);
  child_run r;
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.killed = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 20))) != 1) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // EOF: it has exited
    r.err.append(buf, static_cast<std::size_t>(n));
  }
  if (r.killed) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  if (!r.killed) {
    r.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  return r;
}

// Runs `body` in a child process and checks it died of SIGABRT after
// printing the deadlock report, within 1 s (a missed deadlock is killed
// after 10 s). Returns its stderr.
std::string expect_deadlock(const std::function<void()>& body) {
  const auto t0 = std::chrono::steady_clock::now();
  child_run r = run_child_for(body, 10s);
  const double ms = goro_test::ms_since(t0);
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK(!r.killed);
  BOOST_CHECK_EQUAL(r.signal, SIGABRT);
  BOOST_CHECK_EQUAL(count(r.err, kDeadlock), 1u);
  BOOST_CHECK_LT(ms, 1000.0);
  return r.err;
}

void expect_no_deadlock(const std::function<void()>& body) {
  child_run r = run_child_for(body, 30s);
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK(!r.killed);
  BOOST_CHECK_EQUAL(r.exit_code, 0);
  BOOST_CHECK_EQUAL(r.err.find("deadlock"), std::string::npos);
}

}  // namespace

// A frame the deadlock report's backtraces must show.
[[gnu::noinline]] void receive_then_send(goro::chan<int>& from, goro::chan<int>& to) {
  from.recv();
  to.send(1);
  asm volatile("");  // not a tail call
}

BOOST_AUTO_TEST_SUITE(deadlock)

BOOST_AUTO_TEST_CASE(main_blocked_on_a_nil_channel) {
  const std::string err = expect_deadlock([] {
    goro::run(procs(2), [] {
      goro::chan<int> nil;
      nil.recv();
    });
  });
  BOOST_CHECK_NE(err.find("fiber 1 [chan receive (nil chan), "), std::string::npos);
  BOOST_CHECK_NE(err.find("(main)"), std::string::npos);
}

BOOST_AUTO_TEST_CASE(two_fibers_waiting_on_each_others_channels) {
  const std::string err = expect_deadlock([] {
    goro::run(procs(2), [] {
      goro::chan<int> a = goro::make_chan<int>(0), b = goro::make_chan<int>(0);
      goro::wait_group wg;
      wg.add(2);
      goro::go([&] {
        receive_then_send(a, b);
        wg.done();
      });
      goro::go([&] {
        receive_then_send(b, a);
        wg.done();
      });
      wg.wait();
    });
  });
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // Each parked fiber's stack (not printed under the sanitizers).
  BOOST_CHECK_EQUAL(count(err, " receive_then_send("), 2u);
  BOOST_CHECK_NE(err.find(" goro::wait_group::wait("), std::string::npos);
#endif
  // Both fibers, their channels and where they were spawned; main in wg.wait.
  BOOST_CHECK_EQUAL(count(err, "[chan receive 0x"), 2u);
  BOOST_CHECK_EQUAL(count(err, "spawned at "), 2u);
  BOOST_CHECK_EQUAL(count(err, "diag_test.cpp:"), 2u);
  BOOST_CHECK_NE(err.find("[wait_group.wait 0x"), std::string::npos);
}

BOOST_AUTO_TEST_CASE(every_fiber_in_an_empty_select) {
  const std::string err = expect_deadlock([] {
    goro::run(procs(4), [] {
      for (int i = 0; i < 10; ++i) goro::go([] { goro::select(); });
      goro::select();
    });
  });
  BOOST_CHECK_EQUAL(count(err, "[select (no cases), "), 11u);
}

BOOST_AUTO_TEST_CASE(a_plain_thread_parked_in_a_goro_call_counts_as_asleep) {
  // The thread waits on a channel only a fiber could send on: it can wake
  // nobody, so main waiting for it is a deadlock.
  expect_deadlock([] {
    goro::run(procs(2), [] {
      goro::chan<int> never = goro::make_chan<int>(0), done = goro::make_chan<int>(0);
      std::thread t([&] {
        never.recv();
        done.send(1);
      });
      done.recv();
      t.join();
    });
  });
}

BOOST_AUTO_TEST_CASE(a_pending_timer_is_not_a_deadlock) {
  expect_no_deadlock([] {
    goro::run(procs(2), [] {
      goro::timer t(300ms);
      t.c().recv();
    });
  });
}

BOOST_AUTO_TEST_CASE(a_sleeping_fiber_is_not_a_deadlock) {
  expect_no_deadlock([] {
    goro::run(procs(2), [] {
      goro::chan<int> c = goro::make_chan<int>(0);
      goro::go([&] {
        goro::sleep_for(300ms);
        c.send(1);
      });
      BOOST_CHECK_EQUAL(*c.recv(), 1);  // in the child: a failure shows as a non-zero exit
    });
  });
}

BOOST_AUTO_TEST_CASE(a_running_plain_thread_that_will_send_is_not_a_deadlock) {
  // The documented rule: a thread outside goro may still wake a fiber.
  expect_no_deadlock([] {
    goro::run(procs(2), [] {
      goro::chan<int> c = goro::make_chan<int>(0);
      std::thread t([c]() mutable {
        std::this_thread::sleep_for(300ms);
        c.send(7);
      });
      const int v = *c.recv();
      t.join();
      if (v != 7) std::abort();
    });
  });
}

BOOST_AUTO_TEST_CASE(a_socket_wait_is_not_a_deadlock) {
  // The peer is another process (nothing in this one could wake main): it
  // connects after 300 ms while main is parked in accept().
  expect_no_deadlock([] {
    goro::run(procs(2), [] {
      auto l = goro::net::listen_tcp("127.0.0.1:0");
      if (!l.ok()) std::abort();
      const int port = l->local_address()->port();
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      if (pid == 0) {
        timespec ts{0, 300'000'000};
        ::nanosleep(&ts, nullptr);
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        ::_exit(0);
      }
      auto c = l->accept();
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (!c.ok()) std::abort();
    });
  });
}

BOOST_AUTO_TEST_CASE(a_fiber_in_goro_blocking_is_not_a_deadlock) {
  expect_no_deadlock([] {
    goro::run(procs(2), [] { goro::blocking([] { std::this_thread::sleep_for(300ms); }); });
  });
}

BOOST_AUTO_TEST_CASE(report_prints_once_and_keeps_running) {
  goro::options o = procs(2);
  o.on_deadlock = goro::deadlock_action::report;
  child_run r = run_child_for(
      [o] {
        goro::run(o, [] {
          goro::chan<int> nil;
          nil.recv();
        });
      },
      600ms);
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK(r.killed);  // still waiting, not aborted
  BOOST_CHECK_EQUAL(count(r.err, kDeadlock), 1u);
}

BOOST_AUTO_TEST_CASE(ignore_prints_nothing) {
  goro::options o = procs(2);
  o.on_deadlock = goro::deadlock_action::ignore;
  child_run r = run_child_for(
      [o] {
        goro::run(o, [] {
          goro::chan<int> nil;
          nil.recv();
        });
      },
      300ms);
  BOOST_CHECK(r.killed);
  BOOST_CHECK_EQUAL(r.err, "");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dump)

BOOST_AUTO_TEST_CASE(shows_states_wait_objects_durations_and_spawn_sites) {
  goro::run(procs(2), [] {
    goro::mutex m;
    goro::chan<int> c = goro::make_chan<int>(0);
    m.lock();
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      m.lock();
      m.unlock();
      wg.done();
    });
    goro::go([&] {
      c.recv();
      wg.done();
    });
    goro::sleep_for(50ms);
    std::ostringstream os;
    goro::dump(os);
    const std::string d = os.str();
    BOOST_TEST_INFO("dump: " << d);
    std::ostringstream mutex_line, chan_line;
    mutex_line << "[mutex " << static_cast<const void*>(&m) << ", ";
    BOOST_CHECK_NE(d.find("goro: 3 fibers, maxprocs 2"), std::string::npos);
    BOOST_CHECK_NE(d.find(mutex_line.str()), std::string::npos);
    BOOST_CHECK_NE(d.find("[chan receive 0x"), std::string::npos);
    BOOST_CHECK_NE(d.find("fiber 1 [running] (main):\n\tstarted by goro::run"), std::string::npos);
    BOOST_CHECK_EQUAL(count(d, "spawned at "), 2u);
    BOOST_CHECK_EQUAL(count(d, "diag_test.cpp:"), 2u);
    BOOST_CHECK_EQUAL(count(d, " ms]"), 2u);  // parked for ~50 ms each
    m.unlock();
    c.send(1);
    wg.wait();
  });
}

BOOST_AUTO_TEST_CASE(says_when_no_runtime_runs) {
  std::ostringstream os;
  goro::dump(os);
  BOOST_CHECK_EQUAL(os.str(), "goro: no runtime is running\n");
}

BOOST_AUTO_TEST_CASE(sigquit_prints_a_dump_when_enabled) {
  goro_test::child_result r = goro_test::run_in_child([] {
    goro::options o = procs(2);
    o.dump_on_sigquit = true;
    goro::run(o, [] {
      ::raise(SIGQUIT);
      goro::sleep_for(100ms);  // the monitor prints it at its next tick
    });
  });
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK_EQUAL(r.exit_code, 0);
  BOOST_CHECK_EQUAL(count(r.err, "goro: SIGQUIT: fiber dump\ngoro: 1 fiber, maxprocs 2\n"), 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(leaks)

BOOST_AUTO_TEST_CASE(report_leaks_lists_the_fibers_still_alive_when_main_returns) {
  goro_test::child_result r = goro_test::run_in_child([] {
    goro::options o = procs(2);
    o.report_leaks = true;
    goro::run(o, [] {
      goro::chan<int> c = goro::make_chan<int>(0);
      for (int i = 0; i < 3; ++i) goro::go([c]() mutable { c.recv(); });
      goro::sleep_for(20ms);
    });
  });
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK_EQUAL(r.exit_code, 0);
  BOOST_CHECK_EQUAL(count(r.err, "goro: 3 fibers still alive when main returned"), 1u);
  BOOST_CHECK_EQUAL(count(r.err, "[chan receive 0x"), 3u);
}

BOOST_AUTO_TEST_CASE(no_report_without_leaks) {
  goro_test::child_result r = goro_test::run_in_child([] {
    goro::options o = procs(2);
    o.report_leaks = true;
    // Only the leak report is under test: under TSan on a slow machine a
    // fiber's first run (a TSan fiber created, its stack faulted in) can
    // take long enough for the monitor's "has blocked worker" line.
    o.report_blocked = false;
    goro::run(o, [] {
      goro::wait_group wg;
      wg.add(3);
      for (int i = 0; i < 3; ++i) goro::go([&] { wg.done(); });
      wg.wait();
    });
  });
  BOOST_CHECK_EQUAL(r.exit_code, 0);
  BOOST_CHECK_EQUAL(r.err, "");
}

BOOST_AUTO_TEST_CASE(check_no_leaks_waits_for_finishing_fibers_and_names_stuck_ones) {
  goro::run(procs(2), [] {
    // Finishing within the grace period: not a leak.
    for (int i = 0; i < 5; ++i) goro::go([] { goro::sleep_for(20ms); });
    BOOST_CHECK(goro::check_no_leaks(1s).ok());

    goro::chan<int> c = goro::make_chan<int>(0);
    goro::go([c]() mutable { c.recv(); });
    const absl::Status st = goro::check_no_leaks(50ms);
    BOOST_CHECK_EQUAL(st.code(), absl::StatusCode::kFailedPrecondition);
    BOOST_TEST_INFO("message: " << st.message());
    BOOST_CHECK_NE(st.message().find("goro: 1 fiber leaked"), std::string::npos);
    BOOST_CHECK_NE(st.message().find("[chan receive 0x"), std::string::npos);
    c.close();
    BOOST_CHECK(goro::check_no_leaks().ok());
  });
  BOOST_CHECK_THROW((void)goro::check_no_leaks(), goro::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(debug_modes)

// How many distinct threads one fiber, alone in the runtime, runs on while
// it yields (for up to 2 s, or until it has been on two).
std::size_t threads_seen_by_a_lone_yielder(bool migrate) {
  goro::options o = procs(4);
  o.migrate_always = migrate;
  std::set<long> seen;  // kernel thread ids (pthread_self may be cached across calls)
  goro::run(o, [&] {
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      goro::sleep_for(20ms);  // every worker is up (and idle) by now
      const auto until = std::chrono::steady_clock::now() + 2s;
      for (int i = 0; seen.size() < 2 && (i < 1000 || std::chrono::steady_clock::now() < until);
           ++i) {
        seen.insert(::syscall(SYS_gettid));
        goro::yield();
      }
      wg.done();
    });
    wg.wait();
  });
  return seen.size();
}

BOOST_AUTO_TEST_CASE(migrate_always_moves_a_fiber_between_workers) {
  // Normally a fiber yielding with nothing else to run keeps its worker;
  // under migrate_always it is queued on a random P every time.
  const char* debug = std::getenv("GORO_DEBUG");  // GORO_DEBUG=migrate forces it on
  if (debug == nullptr || std::string(debug).find("migrate") == std::string::npos) {
    BOOST_CHECK_EQUAL(threads_seen_by_a_lone_yielder(false), 1u);
  }
  BOOST_CHECK_EQUAL(threads_seen_by_a_lone_yielder(true), 2u);
}

BOOST_AUTO_TEST_CASE(migrate_always_runs_everything_exactly_once) {
  goro::options o = procs(4);
  o.migrate_always = true;
  constexpr int kFibers = 8;
  constexpr int kYields = 300;
  std::atomic<int> total{0};
  goro::run(o, [&] {
    goro::wait_group wg;
    wg.add(kFibers);
    for (int f = 0; f < kFibers; ++f) {
      goro::go([&] {
        for (int i = 0; i < kYields; ++i) {
          total.fetch_add(1);
          goro::yield();
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_CHECK_EQUAL(total.load(), kFibers * kYields);
}

BOOST_AUTO_TEST_CASE(parking_while_holding_an_internal_lock_aborts_with_checks_on) {
#if defined(GORO_LOCK_CHECKS)
  goro_test::child_result r = goro_test::run_in_child([] {
    goro::run(procs(2), [] {
      goro::detail::spinlock l;
      l.lock();
      goro::sleep_for(1ms);  // a fiber must never block with one held
      l.unlock();
    });
  });
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK(r.signaled);
  BOOST_CHECK_NE(r.err.find("goro: fiber 1 parked while holding 1 internal lock(s)"),
                 std::string::npos);
#else
  BOOST_TEST_MESSAGE("built without lock checks (meson option lock_checks): nothing to test");
#endif
}

BOOST_AUTO_TEST_CASE(a_fiber_blocking_its_worker_in_a_std_mutex_is_reported_with_its_spawn_site) {
  goro_test::child_result r = goro_test::run_in_child([] {
    goro::run(procs(2), [] {
      std::mutex m;
      m.lock();
      goro::wait_group wg;
      wg.add(1);
      goro::go([&] {
        m.lock();  // blocks the worker thread, not just the fiber
        m.unlock();
        wg.done();
      });
      goro::sleep_for(100ms);
      m.unlock();
      wg.wait();
    });
  });
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_CHECK_EQUAL(r.exit_code, 0);
  BOOST_CHECK_EQUAL(count(r.err, "goro: fiber 2 has blocked worker "), 1u);
  BOOST_CHECK_EQUAL(count(r.err, " ms (spawned at "), 1u);
  BOOST_CHECK_EQUAL(count(r.err, "diag_test.cpp:"), 1u);
}

BOOST_AUTO_TEST_SUITE_END()
