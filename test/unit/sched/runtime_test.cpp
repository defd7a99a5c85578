// Unit tests for the runtime: run, go, yield, maxprocs, num_fibers, unwinding.
#define BOOST_TEST_MODULE runtime
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;

BOOST_DATA_TEST_CASE(spawn_join_counts, bdata::make(kProcs), procs) {
  constexpr int kFibers = 20000;
  std::atomic<int> ran{0};
  std::atomic<long> sum{0};
  goro::run({.maxprocs = procs}, [&] {
    BOOST_TEST(goro::maxprocs() == procs);
    BOOST_TEST(goro::num_fibers() == 1);
    BOOST_TEST(goro::fiber_id() == 1u);
    goro::wait_group wg;
    for (int i = 0; i < kFibers; ++i) {
      wg.add(1);
      goro::go([&, i] {
        ran.fetch_add(1);
        sum.fetch_add(i);
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(ran.load() == kFibers);
  BOOST_TEST(sum.load() == static_cast<long>(kFibers) * (kFibers - 1) / 2);
  BOOST_TEST(goro::num_fibers() == 0);
}

BOOST_DATA_TEST_CASE(go_passes_arguments_by_value, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::wait_group wg;
    std::atomic<int> got{0};
    auto add = [&](int a, std::unique_ptr<int> b) {
      got.fetch_add(a + *b);
      wg.done();
    };
    wg.add(1);
    goro::go(add, 40, std::make_unique<int>(2));
    wg.wait();
    BOOST_TEST(got.load() == 42);
  });
}

BOOST_DATA_TEST_CASE(nested_spawns_all_run, bdata::make(kProcs), procs) {
  // A tree of spawns: every fiber spawns two children down to depth 12.
  std::atomic<int> ran{0};
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    std::function<void(int)> node = [&](int depth) {
      ran.fetch_add(1);
      if (depth < 12) {
        wg.add(2);
        goro::go(node, depth + 1);
        goro::go(node, depth + 1);
      }
      wg.done();
    };
    wg.add(1);
    goro::go(node, 0);
    wg.wait();
  });
  BOOST_TEST(ran.load() == (1 << 13) - 1);
}

BOOST_DATA_TEST_CASE(yield_is_fair, bdata::make(kProcs), procs) {
  // Two fibers spinning with yield both make progress, even on one processor.
  constexpr long kTarget = 10000;
  goro::run({.maxprocs = procs}, [&] {
    std::atomic<long> a{0}, b{0};
    std::atomic<bool> stop{false};
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      while (!stop.load()) {
        a.fetch_add(1);
        goro::yield();
      }
      wg.done();
    });
    goro::go([&] {
      while (!stop.load()) {
        b.fetch_add(1);
        goro::yield();
      }
      wg.done();
    });
    while (a.load() < kTarget || b.load() < kTarget) goro::yield();
    stop.store(true);
    wg.wait();
    BOOST_TEST(a.load() >= kTarget);
    BOOST_TEST(b.load() >= kTarget);
  });
}

BOOST_DATA_TEST_CASE(work_is_stolen, bdata::make(std::vector<int>{2, 4, 8}), procs) {
  // All fibers are spawned by main on its processor; other workers must
  // steal them. Each fiber records the OS thread it ran on.
  std::mutex mu;
  std::set<std::thread::id> threads;
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    for (int i = 0; i < 2000; ++i) {
      wg.add(1);
      goro::go([&] {
        // Busy for a while so that the spawner cannot run them all itself.
        auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        while (std::chrono::steady_clock::now() < until) {
        }
        {
          std::lock_guard lk(mu);
          threads.insert(std::this_thread::get_id());
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(threads.size() >= 2u);
}

BOOST_DATA_TEST_CASE(runqueue_overflow_goes_global, bdata::make(kProcs), procs) {
  // 10,000 spawns without yielding overflow the 256-slot local queue many
  // times; with one processor nothing steals, so every fiber that runs went
  // through the global queue or the local one: all must run exactly once.
  constexpr int kFibers = 10000;
  std::vector<std::atomic<int>> seen(kFibers);
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    wg.add(kFibers);
    for (int i = 0; i < kFibers; ++i) {
      goro::go([&, i] {
        seen[static_cast<std::size_t>(i)].fetch_add(1);
        wg.done();
      });
    }
    BOOST_TEST(goro::num_fibers() >= 1);
    wg.wait();
  });
  for (int i = 0; i < kFibers; ++i)
    BOOST_TEST_REQUIRE(seen[static_cast<std::size_t>(i)].load() == 1);
}

BOOST_DATA_TEST_CASE(go_from_os_thread, bdata::make(kProcs), procs) {
  std::atomic<int> ran{0};
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    wg.add(3000);
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) {
      ts.emplace_back([&] {
        for (int i = 0; i < 1000; ++i) {
          goro::go([&] {
            ran.fetch_add(1);
            wg.done();
          });
        }
      });
    }
    wg.wait();
    for (auto& t : ts) t.join();
  });
  BOOST_TEST(ran.load() == 3000);
}

BOOST_AUTO_TEST_CASE(go_without_runtime_throws) {
  BOOST_CHECK_THROW(goro::go([] {}), goro::runtime_error);
  BOOST_TEST(goro::num_fibers() == 0);
  BOOST_TEST(goro::fiber_id() == 0u);
}

BOOST_AUTO_TEST_CASE(run_inside_fiber_throws) {
  bool threw = false;
  goro::run({.maxprocs = 1}, [&] {
    try {
      goro::run([] {});
    } catch (const goro::runtime_error&) {
      threw = true;
    }
  });
  BOOST_TEST(threw);
}

BOOST_AUTO_TEST_CASE(run_twice) {
  int runs = 0;
  for (int i = 0; i < 3; ++i) goro::run({.maxprocs = 2}, [&] { ++runs; });
  BOOST_TEST(runs == 3);
}

BOOST_DATA_TEST_CASE(main_exception_is_rethrown, bdata::make(kProcs), procs) {
  struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  BOOST_CHECK_THROW(goro::run({.maxprocs = procs}, [] { throw custom_error("main failed"); }),
                    custom_error);
}

namespace {
struct counted {
  std::atomic<int>* n;
  explicit counted(std::atomic<int>* n) : n(n) {}
  ~counted() { n->fetch_add(1); }
};
}  // namespace

BOOST_DATA_TEST_CASE(parked_fibers_are_unwound_at_exit, bdata::make(kProcs), procs) {
  // Fibers blocked forever when main returns must have their destructors run.
  constexpr int kParked = 100;
  std::atomic<int> destroyed{0}, resumed{0};
  auto never = std::make_shared<goro::wait_group>();
  never->add(1);
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group started;
    started.add(kParked);
    for (int i = 0; i < kParked; ++i) {
      goro::go([&, never] {
        counted c(&destroyed);
        started.done();
        never->wait();  // never returns normally
        resumed.fetch_add(1);
      });
    }
    started.wait();
    BOOST_TEST(goro::num_fibers() == kParked + 1);
  });
  BOOST_TEST(destroyed.load() == kParked);
  BOOST_TEST(resumed.load() == 0);     // unwound, not resumed normally
  BOOST_TEST(never.use_count() == 1);  // every fiber's captured copy is gone
  never->done();                       // the wait table holds no stale waiter of `never`
}

BOOST_DATA_TEST_CASE(unstarted_and_yielding_fibers_are_unwound, bdata::make(kProcs), procs) {
  std::atomic<int> destroyed{0};
  auto token = std::make_shared<int>(7);
  goro::run({.maxprocs = procs}, [&] {
    // Spawned but (most likely) never run: their closures must be destroyed.
    for (int i = 0; i < 50; ++i) goro::go([token] { (void)token; });
    // Runnable forever: yields in a loop until unwound.
    goro::wait_group started;
    started.add(4);
    for (int i = 0; i < 4; ++i) {
      goro::go([&] {
        counted c(&destroyed);
        started.done();
        for (;;) goro::yield();
      });
    }
    started.wait();
  });
  BOOST_TEST(token.use_count() == 1);
  BOOST_TEST(destroyed.load() == 4);
}

BOOST_DATA_TEST_CASE(fiber_local_is_per_fiber, bdata::make(kProcs), procs) {
  static goro::fiber_local<int> mine;
  static goro::fiber_local<std::vector<int>> vec;
  std::atomic<int> bad{0};
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    for (int i = 0; i < 500; ++i) {
      wg.add(1);
      goro::go([&, i] {
        if (*mine != 0) bad.fetch_add(1);  // default-constructed on first access
        *mine = i;
        vec->push_back(i);
        for (int k = 0; k < 20; ++k) {
          goro::yield();
          if (*mine != i || vec->size() != 1u || vec->front() != i) bad.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(bad.load() == 0);
}

BOOST_AUTO_TEST_CASE(maxprocs_honours_gomaxprocs) {
  ::setenv("GOMAXPROCS", "3", 1);
  BOOST_TEST(goro::maxprocs() == 3);
  int inside = 0;
  goro::run([&] { inside = goro::maxprocs(); });
  BOOST_TEST(inside == 3);
  ::setenv("GOMAXPROCS", "bogus", 1);
  BOOST_TEST(goro::maxprocs() >= 1);
  ::unsetenv("GOMAXPROCS");
  BOOST_TEST(goro::maxprocs() >= 1);
  BOOST_TEST(goro::maxprocs() <= static_cast<int>(std::thread::hardware_concurrency()));
  BOOST_CHECK_THROW(goro::run({.maxprocs = -1}, [] {}), goro::runtime_error);
}

BOOST_AUTO_TEST_CASE(idle_runtime_uses_no_cpu) {
  // Main parks for ~300 ms waiting on an OS thread; the idle workers must
  // sleep, not spin. (A resource check, not a speed one: spinning would burn
  // ~maxprocs × 300 ms of CPU.)
  auto cpu_now = [] {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  };
  std::chrono::microseconds used{};
  goro::run({.maxprocs = 4}, [&] {
    goro::wait_group wg;
    wg.add(1);
    std::thread t([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      wg.done();
    });
    auto before = cpu_now();
    wg.wait();
    used = std::chrono::duration_cast<std::chrono::microseconds>(cpu_now() - before);
    t.join();
  });
  BOOST_TEST(used.count() < 60'000, "idle runtime used " << used.count() << " us of CPU in 300 ms");
}

BOOST_AUTO_TEST_CASE(fiber_panic_crashes_with_message) {
  auto r = goro_test::run_in_child([] {
    goro::run({.maxprocs = 2}, [] {
      goro::wait_group wg;
      wg.add(1);
      goro::go([] { throw std::runtime_error("boom from a fiber"); });
      wg.wait();
    });
  });
  BOOST_TEST(r.signaled);
  BOOST_TEST(r.signal == SIGABRT);
  BOOST_TEST(r.err.find("goro: panic in fiber ") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("boom from a fiber") != std::string::npos, r.err);
}
