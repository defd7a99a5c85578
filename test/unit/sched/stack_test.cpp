// Unit tests for fiber stacks: overflow detection (in child processes), stack
// size option, lazily committed memory.
#define BOOST_TEST_MODULE stack
#include <atomic>
#include <cstring>
#include <string>

#include "common.hpp"
#include "goro/goro.hpp"

namespace {

// Recurses until `depth` frames of ~1 KiB each are live; at the bottom it
// yields (a context switch, where slab stacks are checked) if asked to.
__attribute__((noinline)) int recurse(int depth, bool yield_at_bottom = true) {
  volatile char frame[1024];
  std::memset(const_cast<char*>(frame), (depth & 0x7f) + 1, sizeof frame);
  if (depth == 0) {
    if (yield_at_bottom) goro::yield();
    return frame[3];
  }
  return recurse(depth - 1, yield_at_bottom) + frame[7];
}

// `reuse`: first run a fiber that exits normally, so that the overflowing one
// gets a stack whose canary was already checked once (the first check of a
// fresh stack asks the kernel whether the page exists; later ones read it).
void expect_overflow_report(long guarded, bool yield_at_bottom = true, bool reuse = false) {
  auto r = goro_test::run_in_child([guarded, yield_at_bottom, reuse] {
    goro::run({.maxprocs = 1, .stack_size = 64 * 1024, .guarded_stacks = guarded},
              [yield_at_bottom, reuse] {
                if (reuse) {
                  goro::wait_group first;
                  first.add(1);
                  goro::go([&] { first.done(); });
                  first.wait();
                }
                goro::wait_group wg;
                wg.add(1);
                // Keep another fiber runnable so the overflowing one has someone to
                // switch to. Spawned first: the last one spawned runs first (and
                // takes the stack the first fiber left, when `reuse`).
                std::atomic<bool> stop{false};
                goro::go([&] {
                  while (!stop.load()) goro::yield();
                });
                goro::go([&] {
                  recurse(80, yield_at_bottom);  // ~80 KiB on a 64 KiB stack
                  wg.done();
                });
                wg.wait();  // only if the overflow went unnoticed
                stop.store(true);
              });
  });
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan the overflowing writes into the neighbouring slab stack may be
  // caught by ASan first (poisoned frames there); either report is a catch.
  if (r.err.find("AddressSanitizer") != std::string::npos) return;
#endif
  BOOST_TEST(r.signaled);
  BOOST_TEST(r.signal == SIGABRT);
  BOOST_TEST(r.err.find("goro: stack overflow in fiber ") != std::string::npos, r.err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(overflow_of_guarded_stack_is_reported) { expect_overflow_report(-1); }

BOOST_AUTO_TEST_CASE(overflow_of_slab_stack_is_reported) { expect_overflow_report(0); }

// The overflow returns before any switch: the canary catches it at exit.
BOOST_AUTO_TEST_CASE(overflow_of_slab_stack_caught_at_exit) { expect_overflow_report(0, false); }

BOOST_AUTO_TEST_CASE(overflow_of_reused_slab_stack_caught_at_exit) {
  expect_overflow_report(0, false, true);
}

BOOST_AUTO_TEST_CASE(deep_but_fitting_recursion_is_fine) {
  int got = -1;
  goro::run({.maxprocs = 2, .stack_size = 256 * 1024, .guarded_stacks = 0}, [&] {
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      got = recurse(150) >= 0 ? 1 : 0;  // ~150 KiB of 256 KiB
      wg.done();
    });
    wg.wait();
  });
  BOOST_TEST(got == 1);
}
