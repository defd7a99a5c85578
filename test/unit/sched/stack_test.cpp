// Unit tests for fiber stacks: overflow detection (in child processes), stack
// size option, lazily committed memory.
#define BOOST_TEST_MODULE stack
#include <sys/mman.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "fiber/stack.hpp"
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

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

// Whether this kernel has guard regions (Linux 6.13+), asked the way the
// pool asks, independently of it.
bool kernel_has_guard_regions() {
  const long page = ::sysconf(_SC_PAGESIZE);
  void* p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  BOOST_REQUIRE(p != MAP_FAILED);
  const bool ok = ::madvise(p, page, MADV_GUARD_INSTALL) == 0;
  ::munmap(p, 2 * page);
  return ok;
}

bool resident(const void* addr) {
  unsigned char v = 0;
  BOOST_REQUIRE(::mincore(const_cast<void*>(addr), 1, &v) == 0);
  return (v & 1) != 0;
}

// A write just below `s` kills a child process with SIGSEGV.
bool write_below_faults(const goro::detail::stack& s) {
  auto r = goro_test::run_in_child([lo = s.lo] { *(lo - 1) = 1; });
  return r.signaled && r.signal == SIGSEGV;
}

// The top page of every stack: its first write happened (or take() did it).
std::size_t count_resident_tops(const std::vector<goro::detail::stack>& v, std::size_t page) {
  std::size_t n = 0;
  for (const auto& s : v) n += resident(s.top() - page) ? 1 : 0;
  return n;
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

// With guard regions every slab stack has a guard page below it (one VMA per
// slab all the same), and the guards survive the pool dropping the pages
// of stacks it trims. Without them, exactly `guarded_stacks` stacks are
// guarded (their own mappings) and the rest rely on the canary.
BOOST_AUTO_TEST_CASE(slab_stacks_have_guard_pages_where_the_kernel_has_guard_regions) {
  using namespace std::chrono_literals;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const bool regions = kernel_has_guard_regions();
  BOOST_TEST_MESSAGE("guard regions: " << (regions ? "yes" : "no"));
  goro::detail::stack_pool pool(64 * 1024, 8, 20ms);
  BOOST_TEST(pool.guard_regions() == regions);
  std::vector<goro::detail::stack> v;
  pool.take(v, 1300);  // several slabs
  std::size_t guarded = 0;
  for (const auto& s : v) guarded += s.guarded ? 1 : 0;
  BOOST_TEST(guarded == (regions ? v.size() : 8u));
  for (std::size_t i : {std::size_t{0}, std::size_t{255}, std::size_t{256}, v.size() - 1}) {
    if (v[i].guarded) BOOST_TEST(write_below_faults(v[i]), "stack " << i);
  }
  if (!regions) return;
  for (auto& s : v) s.top()[-1] = 1;
  const std::vector<goro::detail::stack> out = v;
  std::this_thread::sleep_for(60ms);  // past two windows: the peak is forgotten
  pool.give(v);                       // all but a few are trimmed
  BOOST_TEST(count_resident_tops(out, page) <= out.size() - 1024);
  for (std::size_t i : {std::size_t{0}, std::size_t{300}, out.size() - 1}) {
    BOOST_TEST(write_below_faults(out[i]), "trimmed stack " << i);
  }
}

// The pool remembers the peak of stacks in use for one to two windows: a
// load that comes back a little lower than its last peak, and whose stacks
// come back while that peak is still remembered, keeps them all committed
// (each stack's top page stays resident); two windows after, a big give
// back is trimmed.
BOOST_AUTO_TEST_CASE(pool_keeps_a_recent_peak_committed_and_trims_after_it) {
  using namespace std::chrono_literals;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  constexpr auto kWindow = 200ms;
  goro::detail::stack_pool pool(64 * 1024, 1, kWindow);
  std::vector<goro::detail::stack> v;
  pool.take(v, 3100);
  for (auto& s : v) s.top()[-1] = 1;
  pool.give(v);  // all kept: the peak is 3100
  std::this_thread::sleep_for(kWindow + 50ms);
  pool.take(v, 3000);  // a new window; a lower peak
  for (auto& s : v) s.top()[-1] = 1;
  std::vector<goro::detail::stack> out = v;
  // Half come back now, the rest a window later, in batches as fibers end.
  std::vector<goro::detail::stack> batch;
  auto give_range = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; i += 32) {
      batch.assign(out.begin() + static_cast<std::ptrdiff_t>(i),
                   out.begin() + static_cast<std::ptrdiff_t>(std::min(i + 32, to)));
      pool.give(batch);
    }
  };
  give_range(0, 1000);
  std::this_thread::sleep_for(kWindow + 50ms);
  give_range(1000, 3000);
  BOOST_TEST(count_resident_tops(out, page) == out.size());
  // Out for more than two windows: nothing remembers them, so most of them
  // are trimmed when they come back.
  v.clear();
  pool.take(v, 3100);
  for (auto& s : v) s.top()[-1] = 1;
  out = v;
  std::this_thread::sleep_for(2 * kWindow + 50ms);
  pool.give(v);
  BOOST_TEST(count_resident_tops(out, page) <= out.size() - 1024);
}

// However stacks come back, the pool hands them out again in its own order
// (neighbours in a slab one after another), apart from the few it keeps last
// in, first out for a P that refills right after another spilled.
BOOST_AUTO_TEST_CASE(pool_hands_stacks_out_in_a_fixed_order_whatever_order_they_came_back) {
  using namespace std::chrono_literals;
  constexpr std::size_t kN = 2000;
  goro::detail::stack_pool pool(64 * 1024, 0, 10s);
  auto neighbours = [](const std::vector<goro::detail::stack>& v) {
    std::size_t n = 0;
    for (std::size_t i = 1; i < v.size(); ++i) {
      const auto d = std::abs(v[i].lo - v[i - 1].lo);
      n += static_cast<std::size_t>(d) <= v[i].size + 4096 ? 1 : 0;
    }
    return n;
  };
  std::vector<goro::detail::stack> v;
  pool.take(v, kN);
  const std::size_t fresh = neighbours(v);
  BOOST_TEST(fresh >= kN - kN / 100);  // a slab boundary every 256
  std::vector<char*> first;
  for (const auto& s : v) first.push_back(s.lo);
  std::sort(first.begin(), first.end());
  // Back in a scrambled order, in batches as Ps spill them.
  std::vector<goro::detail::stack> scrambled;
  for (std::size_t i = 0; i < kN; ++i) scrambled.push_back(v[(i * 7919) % kN]);
  for (std::size_t i = 0; i < kN; i += 32) {
    std::vector<goro::detail::stack> batch(
        scrambled.begin() + static_cast<std::ptrdiff_t>(i),
        scrambled.begin() + static_cast<std::ptrdiff_t>(std::min(i + 32, kN)));
    pool.give(batch);
  }
  v.clear();
  while (v.size() < kN) pool.take(v, std::min<std::size_t>(32, kN - v.size()));  // as Ps refill
  std::vector<char*> second;
  for (const auto& s : v) second.push_back(s.lo);
  std::sort(second.begin(), second.end());
  BOOST_TEST(second == first);  // the same stacks (all kept warm: the peak is kN)
  // All in order but the up to 64 handed out LIFO (and the gaps they leave
  // in the ordered rest); given back in a LIFO list, hardly any would be.
  BOOST_TEST(neighbours(v) >= fresh - 2 * 64 - 10);
  pool.give(v);
}

#if defined(__SANITIZE_ADDRESS__)
// Dead fibers leave their frames poisoned on their stacks; the pool clears
// that when it unmaps them, or whatever is mapped there next (a fiber
// record, the program's own memory) would fault under ASan.
BOOST_AUTO_TEST_CASE(unmapped_stacks_leave_no_asan_poison_behind) {
  char* lo = nullptr;
  std::size_t size = 0;
  {
    goro::detail::stack_pool pool(64 * 1024, 0);
    std::vector<goro::detail::stack> v;
    pool.take(v, 1);
    lo = v[0].lo;
    size = v[0].size;
    __asan_poison_memory_region(lo + size / 2, 256);  // as a frame never returned through
    pool.give(v);
  }
  void* p = ::mmap(lo, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  BOOST_REQUIRE(p != MAP_FAILED);
  BOOST_TEST(__asan_region_is_poisoned(p, size) == nullptr);
  static_cast<char*>(p)[size / 2 + 8] = 1;
  ::munmap(p, size);
}
#endif

// Past the guarded budget, with guard regions, an overflow is still caught
// at the faulting write (the signal handler's report), not at exit.
BOOST_AUTO_TEST_CASE(overflow_past_the_guarded_budget) {
  if (!kernel_has_guard_regions()) {
    expect_overflow_report(1, false);  // the canary's report at exit
    return;
  }
  auto r = goro_test::run_in_child([] {
    goro::run({.maxprocs = 1, .stack_size = 64 * 1024, .guarded_stacks = 1}, [] {
      goro::wait_group wg;
      wg.add(1);
      goro::go([&] {
        recurse(80, false);
        wg.done();
      });
      wg.wait();
    });
  });
  BOOST_TEST(r.signaled);
  BOOST_TEST(r.signal == SIGABRT);
  BOOST_TEST(r.err.find("goro: stack overflow in fiber ") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("(stack of") == std::string::npos, r.err);  // not the exit check
}
