// test/gdb/gdb_target.cpp — the program test/gdb/run.sh debugs with
// tools/goro-gdb.py.
//
// The main fiber starts three fibers that each block in a function with a
// recognisable name: parked_in_recv() on an unbuffered channel, parked_in_lock()
// on a goro::mutex the main fiber holds, parked_in_sleep() in a long sleep.
// Once the fiber dump shows all three parked, the main fiber calls
// gdb_stop_here(), where the test's breakpoint is. Then it releases the
// receiver and the locker, waits for them, and returns; run() unwinds the
// sleeper (goro/runtime.hpp) and returns, the program calls gdb_after_run()
// (where the test checks that no runtime is found) and exits 0.
//
// The fibers' ids are stored in globals so that the test can name them in
// gdb (`goro bt g_recv_fiber`). The parked_in_* functions are noinline and do
// something after their blocking call, so that neither inlining nor a tail
// call removes their frame at -O2.
#include <goro/goro.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>

volatile std::uint64_t g_main_fiber = 0;
volatile std::uint64_t g_recv_fiber = 0;
volatile std::uint64_t g_lock_fiber = 0;
volatile std::uint64_t g_sleep_fiber = 0;
volatile int g_received = 0;
volatile int g_locked = 0;

[[gnu::noinline]] void parked_in_recv(const goro::chan<int>& ch) {
  g_recv_fiber = goro::fiber_id();
  const std::optional<int> v = ch.recv();
  g_received = v.value_or(-1);
}

[[gnu::noinline]] void parked_in_lock(goro::mutex& mu) {
  g_lock_fiber = goro::fiber_id();
  mu.lock();
  g_locked = 1;
  mu.unlock();
}

[[gnu::noinline]] void parked_in_sleep() {
  g_sleep_fiber = goro::fiber_id();
  goro::sleep_for(std::chrono::hours(1));  // never returns: unwound at exit
  std::puts("gdb_target: the sleeper woke up");
}

// The test's breakpoints: with the fibers parked, and after run() returned.
// The asm statements keep the calls from being dropped.
[[gnu::noinline]] void gdb_stop_here() { asm volatile("" ::: "memory"); }
[[gnu::noinline]] void gdb_after_run() { asm volatile("" ::: "memory"); }

namespace {

// Waits until the fiber dump shows the three fibers parked where expected.
void wait_until_parked() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    std::ostringstream os;
    goro::dump(os);
    const std::string d = os.str();
    if (d.find("[chan receive") != std::string::npos && d.find("[mutex") != std::string::npos &&
        d.find("[sleep") != std::string::npos) {
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "gdb_target: the fibers did not park in time:\n%s", d.c_str());
      std::exit(1);
    }
    goro::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main() {
  goro::run({.maxprocs = 2}, [] {
    g_main_fiber = goro::fiber_id();
    const goro::chan<int> ch = goro::make_chan<int>();
    goro::mutex mu;
    mu.lock();
    goro::wait_group wg;
    wg.add(2);
    goro::go([&ch, &wg] {
      parked_in_recv(ch);
      wg.done();
    });
    goro::go([&mu, &wg] {
      parked_in_lock(mu);
      wg.done();
    });
    goro::go([] { parked_in_sleep(); });
    wait_until_parked();

    gdb_stop_here();

    ch.send(42);
    mu.unlock();
    wg.wait();
    if (g_received != 42 || g_locked != 1) {
      std::fprintf(stderr, "gdb_target: wrong results %d %d\n", g_received, g_locked);
      std::exit(1);
    }
  });
  gdb_after_run();
  std::puts("gdb_target: done");
  return 0;
}
