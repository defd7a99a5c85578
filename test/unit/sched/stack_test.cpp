// Unit tests for fiber stacks: overflow detection (in child processes), stack
// size option, lazily committed memory.
#define BOOST_TEST_MODULE stack
#include <atomic>
#include <cstring>
#include <string>

#include "common.hpp"
#include "goro/goro.hpp"

namespace {

// Recurses until `depth` frames of ~1 KiB each are live, then yields (a
// context switch, where slab stacks are checked).
__attribute__((noinline)) int recurse(int depth) {
  volatile char frame[1024];
  std::memset(const_cast<char*>(frame), depth & 0xff, sizeof frame);
  if (depth == 0) {
    goro::yield();
    return frame[3];
  }
  return recurse(depth - 1) + frame[7];
}

void expect_overflow_report(long guarded) {
  auto r = goro_test::run_in_child([guarded] {
    goro::run({.maxprocs = 1, .stack_size = 64 * 1024, .guarded_stacks = guarded}, [] {
      goro::wait_group wg;
      wg.add(1);
      goro::go([&] {
        recurse(80);  // ~80 KiB on a 64 KiB stack
        wg.done();
      });
      // Keep another fiber runnable so the overflowing one has someone to
      // switch to.
      goro::go([] {
        for (;;) goro::yield();
      });
      wg.wait();
    });
  });
  BOOST_TEST(r.signaled);
  BOOST_TEST(r.signal == SIGABRT);
  BOOST_TEST(r.err.find("goro: stack overflow in fiber ") != std::string::npos, r.err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(overflow_of_guarded_stack_is_reported) { expect_overflow_report(-1); }

BOOST_AUTO_TEST_CASE(overflow_of_slab_stack_is_reported) { expect_overflow_report(0); }

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
