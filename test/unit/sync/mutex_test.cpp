// Unit tests for goro::mutex, goro::shared_mutex and goro::once: exclusion
// under contention (fibers, OS threads, both), try_lock, starvation mode,
// misuse, reader/writer semantics, once semantics, lifetime.
#define BOOST_TEST_MODULE mutex
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"
#include "sync/mutex_internal.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;
using goro_test::ms_since;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// Iteration counts are divided by this under the sanitizers (5-20x slower).
constexpr int kScale = goro_test::kSanitized ? 4 : 1;

using goro_test::eventually;

}  // namespace

// ---- mutex: exclusion under contention -------------------------------------

BOOST_DATA_TEST_CASE(lock_guard_exact_count, bdata::make(kProcs), procs) {
  const int fibers = 64;
  const int iters = 2000 / kScale;
  int counter = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f) {
      goro::go([&] {
        for (int i = 0; i < iters; ++i) {
          std::lock_guard lk(mu);
          const int v = counter;
          if (i % 64 == 0) goro::yield();
          counter = v + 1;
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(counter == fibers * iters);
}

BOOST_DATA_TEST_CASE(unique_lock_exact_count, bdata::make(kProcs), procs) {
  const int fibers = 64;
  const int iters = 2000 / kScale;
  int counter = 0;
  int relocked = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f) {
      goro::go([&] {
        for (int i = 0; i < iters; ++i) {
          std::unique_lock lk(mu);
          int v = counter;
          if (i % 64 == 0) goro::yield();
          counter = v + 1;
          if (i % 16 == 0) {  // give it up and take it again mid-way
            lk.unlock();
            goro::yield();
            lk.lock();
            v = relocked;
            goro::yield();
            relocked = v + 1;
          }
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(counter == fibers * iters);
  BOOST_TEST(relocked == fibers * ((iters + 15) / 16));
}

BOOST_DATA_TEST_CASE(scoped_lock_two_mutexes_exact_count, bdata::make(kProcs), procs) {
  // Half the fibers lock (a, b), half (b, a): std::scoped_lock's deadlock
  // avoidance (lock + try_lock) must not deadlock and must exclude.
  const int fibers = 32;
  const int iters = 1000 / kScale;
  int both = 0, only_a = 0, only_b = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex a, b;
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f) {
      goro::go([&, f] {
        for (int i = 0; i < iters; ++i) {
          if (f % 2 == 0) {
            std::scoped_lock lk(a, b);
            const int v = both;
            if (i % 32 == 0) goro::yield();
            both = v + 1;
          } else {
            std::scoped_lock lk(b, a);
            const int v = both;
            if (i % 32 == 0) goro::yield();
            both = v + 1;
          }
          {
            std::lock_guard lk(f % 2 == 0 ? a : b);
            int& c = f % 2 == 0 ? only_a : only_b;
            const int v = c;
            if (i % 32 == 1) goro::yield();
            c = v + 1;
          }
        }
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(both == fibers * iters);
  BOOST_TEST(only_a == fibers / 2 * iters);
  BOOST_TEST(only_b == fibers / 2 * iters);
}

BOOST_DATA_TEST_CASE(fibers_and_os_threads_exact_count, bdata::make(kProcs), procs) {
  const int fibers = 16;
  const int threads = 3;
  const int iters = 2000 / kScale;
  int counter = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::wait_group wg;
    wg.add(fibers + threads);
    auto body = [&] {
      for (int i = 0; i < iters; ++i) {
        std::lock_guard lk(mu);
        const int v = counter;
        if (i % 64 == 0) goro::yield();  // std::this_thread::yield on a thread
        counter = v + 1;
      }
      wg.done();
    };
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(body);
    for (int f = 0; f < fibers; ++f) goro::go(body);
    wg.wait();  // parks: the threads may still need fibers to unlock
    for (auto& t : ts) t.join();
  });
  BOOST_TEST(counter == (fibers + threads) * iters);
}

BOOST_AUTO_TEST_CASE(os_threads_without_runtime_exact_count) {
  const int threads = 4;
  const int iters = 20000 / kScale;
  goro::mutex mu;
  int counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < iters; ++i) {
        std::unique_lock lk(mu);
        const int v = counter;
        if (i % 128 == 0) std::this_thread::yield();
        counter = v + 1;
      }
    });
  }
  for (auto& t : ts) t.join();
  BOOST_TEST(counter == threads * iters);
}

// ---- try_lock ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(try_lock_without_runtime) {
  goro::mutex mu;
  BOOST_TEST(mu.try_lock());
  bool other = true;
  std::thread([&] { other = mu.try_lock(); }).join();
  BOOST_TEST(!other);
  mu.unlock();
  std::thread([&] {
    other = mu.try_lock();
    if (other) mu.unlock();
  }).join();
  BOOST_TEST(other);
  // lock() blocks a thread until the holder unlocks.
  mu.lock();
  std::atomic<bool> got{false};
  std::thread t([&] {
    mu.lock();
    got = true;
    mu.unlock();
  });
  std::this_thread::sleep_for(20ms);
  BOOST_TEST(!got.load());
  mu.unlock();
  t.join();
  BOOST_TEST(got.load());
}

BOOST_DATA_TEST_CASE(try_lock_fibers_and_threads, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::mutex mu;
    BOOST_TEST(mu.try_lock());
    BOOST_TEST(!mu.try_lock());  // not recursive

    std::atomic<int> fiber_result{-1};
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      fiber_result = mu.try_lock() ? 1 : 0;
      wg.done();
    });
    wg.wait();
    BOOST_TEST(fiber_result.load() == 0);
    bool thread_result = true;
    std::thread([&] { thread_result = mu.try_lock(); }).join();
    BOOST_TEST(!thread_result);

    mu.unlock();
    wg.add(1);
    goro::go([&] {
      fiber_result = mu.try_lock() ? 1 : 0;
      if (fiber_result == 1) mu.unlock();
      wg.done();
    });
    wg.wait();
    BOOST_TEST(fiber_result.load() == 1);

    // Held by another fiber: try_lock fails here and on a thread.
    std::atomic<bool> held{false}, release{false};
    wg.add(1);
    goro::go([&] {
      mu.lock();
      held = true;
      eventually([&] { return release.load(); });
      mu.unlock();
      wg.done();
    });
    BOOST_TEST_REQUIRE(eventually([&] { return held.load(); }));
    BOOST_TEST(!mu.try_lock());
    std::thread([&] { thread_result = mu.try_lock(); }).join();
    BOOST_TEST(!thread_result);
    release = true;
    wg.wait();
    BOOST_TEST(mu.try_lock());
    mu.unlock();
  });
}

// ---- fairness: starvation mode -----------------------------------------------

BOOST_DATA_TEST_CASE(starvation_mode_lets_waiter_in, bdata::make({1, 2}), procs) {
  // Go's TestMutexFairness: a fiber holds the lock in a loop, sleeping
  // 100 µs while holding it and relocking at once after unlock. In normal
  // mode it would nearly always win; starvation mode must hand the lock to the
  // other fiber, 10 times well within 2 s.
  int got_in_time = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    std::atomic<bool> stop{false};
    const auto deadline = steady::now() + 2s;
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      // Bounded, so that a failing run still ends.
      while (!stop.load() && steady::now() < deadline + 1s) {
        mu.lock();
        goro::sleep_for(100us);
        mu.unlock();
      }
      wg.done();
    });
    goro::go([&] {
      for (int i = 0; i < 10; ++i) {
        goro::sleep_for(100us);
        mu.lock();
        if (steady::now() < deadline) ++got_in_time;
        mu.unlock();
      }
      stop = true;
      wg.done();
    });
    wg.wait();
  });
  BOOST_TEST(got_in_time >= 10);
}

// ---- misuse ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(unlock_of_unlocked_mutex_throws) {
  goro::mutex mu;
  BOOST_CHECK_THROW(mu.unlock(), std::logic_error);
  // Still usable, and not left locked or unlocked by the failed call.
  BOOST_TEST(mu.try_lock());
  BOOST_TEST(!mu.try_lock());
  mu.unlock();
  BOOST_CHECK_THROW(mu.unlock(), std::logic_error);
  mu.lock();
  mu.unlock();
  BOOST_TEST(mu.try_lock());
  mu.unlock();

  goro::run({.maxprocs = 2}, [] {
    goro::mutex m2;
    BOOST_CHECK_THROW(m2.unlock(), std::logic_error);
    {
      std::lock_guard lk(m2);
      BOOST_TEST(!m2.try_lock());
    }
    BOOST_CHECK_THROW(m2.unlock(), std::logic_error);
    BOOST_TEST(m2.try_lock());
    m2.unlock();
  });
}

#if GORO_MUTEX_OWNER_CHECKS
BOOST_AUTO_TEST_CASE(unlock_by_non_owner_throws) {
  // Plain threads, no runtime.
  {
    goro::mutex mu;
    mu.lock();
    bool threw = false;
    std::thread([&] {
      try {
        mu.unlock();
      } catch (const std::logic_error&) {
        threw = true;
      }
    }).join();
    BOOST_TEST(threw);
    BOOST_TEST(!mu.try_lock());  // still held
    mu.unlock();
    BOOST_TEST(mu.try_lock());
    mu.unlock();
  }
  goro::run({.maxprocs = 2}, [] {
    goro::mutex mu;
    goro::wait_group wg;
    // Locked by this fiber, unlocked by another fiber and by a thread.
    mu.lock();
    std::atomic<int> fiber_threw{-1};
    wg.add(1);
    goro::go([&] {
      try {
        mu.unlock();
        fiber_threw = 0;
      } catch (const std::logic_error&) {
        fiber_threw = 1;
      }
      wg.done();
    });
    wg.wait();
    BOOST_TEST(fiber_threw.load() == 1);
    bool thread_threw = false;
    std::thread([&] {
      try {
        mu.unlock();
      } catch (const std::logic_error&) {
        thread_threw = true;
      }
    }).join();
    BOOST_TEST(thread_threw);
    BOOST_TEST(!mu.try_lock());
    mu.unlock();  // the owner may

    // Locked by a thread, unlocked by a fiber.
    std::atomic<bool> locked{false}, release{false};
    std::thread t([&] {
      mu.lock();
      locked = true;
      while (!release.load()) std::this_thread::sleep_for(100us);
      mu.unlock();
    });
    BOOST_TEST_REQUIRE(eventually([&] { return locked.load(); }));
    BOOST_CHECK_THROW(mu.unlock(), std::logic_error);
    release = true;
    t.join();
    BOOST_TEST(mu.try_lock());
    mu.unlock();
  });
}
#endif

BOOST_AUTO_TEST_CASE(shared_mutex_misuse_throws) {
  goro::shared_mutex rw;
  BOOST_CHECK_THROW(rw.unlock_shared(), std::logic_error);
  BOOST_CHECK_THROW(rw.unlock(), std::logic_error);
  // Neither failed call changed the state.
  BOOST_TEST(rw.try_lock());
  BOOST_TEST(!rw.try_lock_shared());
  // unlock_shared while write-locked (no reader) throws; the writer keeps it.
  BOOST_CHECK_THROW(rw.unlock_shared(), std::logic_error);
  BOOST_TEST(!rw.try_lock_shared());
  rw.unlock();
  BOOST_CHECK_THROW(rw.unlock(), std::logic_error);
  // unlock() while only read-locked throws; the reader keeps it.
  rw.lock_shared();
  BOOST_CHECK_THROW(rw.unlock(), std::logic_error);
  BOOST_TEST(!rw.try_lock());
  BOOST_TEST(rw.try_lock_shared());
  rw.unlock_shared();
  rw.unlock_shared();
  BOOST_CHECK_THROW(rw.unlock_shared(), std::logic_error);
  rw.lock();
  rw.unlock();
  rw.lock_shared();
  rw.unlock_shared();
  BOOST_TEST(rw.try_lock());
  rw.unlock();
}

#if GORO_MUTEX_OWNER_CHECKS
BOOST_AUTO_TEST_CASE(shared_mutex_unlock_by_non_owner_throws) {
  // As for goro::mutex: the writer's lock is owned; unlock() from another
  // thread throws and must leave it write-locked by its owner.
  goro::shared_mutex rw;
  rw.lock();
  bool threw = false;
  std::thread([&] {
    try {
      rw.unlock();
    } catch (const std::logic_error&) {
      threw = true;
    }
  }).join();
  BOOST_TEST(threw);
  const bool reader_got_in = rw.try_lock_shared();  // must not: still write-locked
  if (reader_got_in) rw.unlock_shared();
  BOOST_TEST(!reader_got_in);
  BOOST_CHECK_NO_THROW(rw.unlock());  // the owner still can
  const bool writer_got_in = rw.try_lock();
  BOOST_TEST(writer_got_in);  // and it is free afterwards
  if (writer_got_in) rw.unlock();
}
#endif

// ---- shared_mutex ------------------------------------------------------------

BOOST_DATA_TEST_CASE(shared_readers_inside_together, bdata::make(kProcs), procs) {
  // Every reader waits, holding its shared lock, until all are inside: this
  // deadlocks (times out) unless they share it. One reader is an OS thread.
  const int fibers = 15;
  const int total = fibers + 1;
  int all_met = 0;
  int max_inside = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::shared_mutex rw;
    std::atomic<int> inside{0}, max{0}, met{0};
    goro::wait_group wg;
    wg.add(total);
    auto reader = [&] {
      {
        std::shared_lock lk(rw);
        const int n = inside.fetch_add(1) + 1;
        int m = max.load();
        while (n > m && !max.compare_exchange_weak(m, n)) {
        }
        if (eventually([&] { return inside.load() == total; }, 10s)) met.fetch_add(1);
        // Stay until everyone has seen it, so nobody leaves early.
        eventually([&] { return met.load() == total; }, 10s);
      }
      inside.fetch_sub(1);
      wg.done();
    };
    std::thread t(reader);
    for (int f = 0; f < fibers; ++f) goro::go(reader);
    wg.wait();
    t.join();
    all_met = met.load();
    max_inside = max.load();
  });
  BOOST_TEST(all_met == total);
  BOOST_TEST(max_inside == total);
}

BOOST_DATA_TEST_CASE(shared_mutex_mixed_load_exclusive_and_exact, bdata::make(kProcs), procs) {
  // Writers increment a plain int; readers read it twice across a yield and
  // must see it unchanged. Atomics track who is inside: a writer must never
  // see anybody else, a reader never a writer. One writer and one reader are
  // OS threads.
  const int writers = 6, readers = 12;
  const int iters = 600 / kScale;
  int counter = 0;
  int violations = 0;
  int torn_reads = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::shared_mutex rw;
    std::atomic<int> readers_in{0}, writers_in{0}, bad{0}, torn{0};
    goro::wait_group wg;
    wg.add(writers + readers);
    auto writer = [&](int w) {
      for (int i = 0; i < iters; ++i) {
        auto locked = [&] {
          if (writers_in.fetch_add(1) != 0) bad.fetch_add(1);
          if (readers_in.load() != 0) bad.fetch_add(1);
          const int v = counter;
          if (i % 8 == 0) goro::yield();
          counter = v + 1;
          if (readers_in.load() != 0) bad.fetch_add(1);
          writers_in.fetch_sub(1);
        };
        if ((i + w) % 3 == 0) {
          std::unique_lock lk(rw);
          locked();
        } else if ((i + w) % 3 == 1) {
          std::lock_guard lk(rw);
          locked();
        } else {
          while (!rw.try_lock()) goro::yield();
          locked();
          rw.unlock();
        }
      }
      wg.done();
    };
    auto reader = [&](int r) {
      for (int i = 0; i < iters; ++i) {
        auto locked = [&] {
          readers_in.fetch_add(1);
          if (writers_in.load() != 0) bad.fetch_add(1);
          const int v1 = counter;
          if (i % 4 == 0) goro::yield();
          const int v2 = counter;
          if (v1 != v2) torn.fetch_add(1);
          if (writers_in.load() != 0) bad.fetch_add(1);
          readers_in.fetch_sub(1);
        };
        if ((i + r) % 2 == 0) {
          std::shared_lock lk(rw);
          locked();
        } else {
          while (!rw.try_lock_shared()) goro::yield();
          locked();
          rw.unlock_shared();
        }
      }
      wg.done();
    };
    std::thread tw(writer, 0);
    std::thread tr(reader, 0);
    for (int w = 1; w < writers; ++w) goro::go(writer, w);
    for (int r = 1; r < readers; ++r) goro::go(reader, r);
    wg.wait();
    tw.join();
    tr.join();
    violations = bad.load();
    torn_reads = torn.load();
  });
  BOOST_TEST(counter == writers * iters);
  BOOST_TEST(violations == 0);
  BOOST_TEST(torn_reads == 0);
}

BOOST_DATA_TEST_CASE(shared_try_lock_semantics, bdata::make({1, 2, 4}), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::shared_mutex rw;
    goro::wait_group wg;
    auto on_fiber = [&](auto fn) {
      wg.add(1);
      goro::go([&, fn] {
        fn();
        wg.done();
      });
      wg.wait();
    };

    // Write-locked: no try_lock or try_lock_shared succeeds, anywhere.
    BOOST_TEST(rw.try_lock());
    bool r1 = true, r2 = true;
    on_fiber([&] {
      r1 = rw.try_lock();
      r2 = rw.try_lock_shared();
    });
    BOOST_TEST(!r1);
    BOOST_TEST(!r2);
    std::thread([&] {
      r1 = rw.try_lock();
      r2 = rw.try_lock_shared();
    }).join();
    BOOST_TEST(!r1);
    BOOST_TEST(!r2);
    rw.unlock();

    // Read-locked: more readers get in, writers don't.
    BOOST_TEST(rw.try_lock_shared());
    on_fiber([&] {
      r1 = rw.try_lock();
      r2 = rw.try_lock_shared();
      if (r2) rw.unlock_shared();
    });
    BOOST_TEST(!r1);
    BOOST_TEST(r2);
    rw.unlock_shared();
    BOOST_TEST(rw.try_lock());
    rw.unlock();

    // A writer waiting behind a reader: try_lock_shared fails and lock_shared
    // queues behind the writer (no new reader jumps ahead of it).
    rw.lock_shared();
    std::atomic<bool> writer_in{false}, writer_out{false};
    std::atomic<int> late_reader_saw_writer_out{-1};
    wg.add(1);
    goro::go([&] {
      rw.lock();
      writer_in = true;
      goro::sleep_for(5ms);
      writer_out = true;
      rw.unlock();
      wg.done();
    });
    // Poll until the writer is pending (it cannot get in: we read-hold).
    bool blocked_by_writer = false;
    const auto t0 = steady::now();
    while (steady::now() - t0 < 10s) {
      if (!rw.try_lock_shared()) {
        blocked_by_writer = true;
        break;
      }
      rw.unlock_shared();
      goro::yield();
    }
    BOOST_TEST(blocked_by_writer);
    BOOST_TEST(!writer_in.load());
    wg.add(1);
    goro::go([&] {
      {
        std::shared_lock lk(rw);
        late_reader_saw_writer_out = writer_out.load() ? 1 : 0;
      }  // unlocked before done(): main's try_lock below must not race it
      wg.done();
    });
    goro::sleep_for(10ms);
    BOOST_TEST(late_reader_saw_writer_out.load() == -1);  // still queued
    BOOST_TEST(!writer_in.load());
    rw.unlock_shared();
    wg.wait();
    BOOST_TEST(writer_in.load());
    BOOST_TEST(late_reader_saw_writer_out.load() == 1);
    BOOST_TEST(rw.try_lock());
    rw.unlock();
  });
}

BOOST_DATA_TEST_CASE(shared_writer_not_starved_by_readers, bdata::make({1, 2, 4}), procs) {
  // Readers keep re-locking, staggered so that one is nearly always inside.
  // A writer must still get in quickly (it waits only for the readers already
  // inside), and while it holds the lock no reader gets in.
  const double limit_ms = goro_test::kSanitized ? 3000 : 1000;
  double waited_ms = -1;
  bool exclusive = false;
  goro::run({.maxprocs = procs}, [&] {
    goro::shared_mutex rw;
    const int nreaders = 4;
    std::atomic<bool> stop{false};
    std::atomic<int> reads{0};
    goro::wait_group wg;
    wg.add(nreaders);
    const auto hard_stop = steady::now() + 20s;
    for (int r = 0; r < nreaders; ++r) {
      goro::go([&, r] {
        goro::sleep_for(r * 250us);
        while (!stop.load() && steady::now() < hard_stop) {
          std::shared_lock lk(rw);
          reads.fetch_add(1);
          goro::sleep_for(1ms);
        }
        wg.done();
      });
    }
    BOOST_TEST_REQUIRE(eventually([&] { return reads.load() >= 8 * nreaders; }));
    const auto t0 = steady::now();
    rw.lock();
    waited_ms = ms_since(t0);
    const int at_lock = reads.load();
    goro::sleep_for(5ms);
    exclusive = reads.load() == at_lock;
    rw.unlock();
    stop = true;
    wg.wait();
  });
  BOOST_TEST(waited_ms >= 0.0);
  BOOST_TEST(waited_ms < limit_ms);
  BOOST_TEST(exclusive);
}

// ---- once --------------------------------------------------------------------

BOOST_DATA_TEST_CASE(once_runs_exactly_once, bdata::make(kProcs), procs) {
  const int callers = 100;
  int runs = 0;  // written only by the function
  int value = 0;
  int saw_value = 0;
  bool done_before = true;
  goro::run({.maxprocs = procs}, [&] {
    goro::once once;
    done_before = once.done();
    std::atomic<int> ok{0};
    goro::wait_group wg;
    wg.add(callers);
    for (int c = 0; c < callers; ++c) {
      goro::go([&] {
        once.call([&] {
          ++runs;
          goro::sleep_for(10ms);  // others arrive and wait meanwhile
          value = 42;             // plain int: visible to every caller after call()
        });
        if (value == 42 && once.done()) ok.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
    saw_value = ok.load();
  });
  BOOST_TEST(!done_before);
  BOOST_TEST(runs == 1);
  BOOST_TEST(saw_value == callers);
}

BOOST_AUTO_TEST_CASE(once_exception_allows_retry) {
  goro::once once;
  int attempts = 0;
  auto throws = [&] {
    ++attempts;
    throw std::runtime_error("first");
  };
  BOOST_CHECK_THROW(once.call(throws), std::runtime_error);
  BOOST_TEST(!once.done());
  int arg_seen = 0;
  auto succeeds = [&](int x) {
    ++attempts;
    arg_seen = x;
  };
  once.call(succeeds, 7);
  BOOST_TEST(once.done());
  BOOST_TEST(arg_seen == 7);
  once.call(succeeds, 8);  // does not run
  BOOST_TEST(attempts == 2);
  BOOST_TEST(arg_seen == 7);
}

BOOST_DATA_TEST_CASE(once_exception_under_contention, bdata::make(kProcs), procs) {
  // The first run throws (to its caller only); one of the callers waiting
  // meanwhile runs it again, and that run counts.
  const int callers = 20;
  int runs = 0, threw = 0, saw_value = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::once once;
    int value = 0;
    std::atomic<int> nthrew{0}, ok{0};
    goro::wait_group wg;
    wg.add(callers);
    for (int c = 0; c < callers; ++c) {
      goro::go([&] {
        try {
          once.call([&] {
            const int n = ++runs;
            goro::sleep_for(5ms);
            if (n == 1) throw std::runtime_error("first run fails");
            value = 42;
          });
          if (value == 42) ok.fetch_add(1);
        } catch (const std::runtime_error&) {
          nthrew.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
    threw = nthrew.load();
    saw_value = ok.load();
  });
  BOOST_TEST(runs == 2);
  BOOST_TEST(threw == 1);
  BOOST_TEST(saw_value == callers - 1);
}

BOOST_AUTO_TEST_CASE(once_from_os_threads) {
  goro::once once;
  int runs = 0, value = 0;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      once.call([&] {
        ++runs;
        std::this_thread::sleep_for(10ms);
        value = 42;
      });
      if (value == 42) ok.fetch_add(1);
    });
  }
  for (auto& t : ts) t.join();
  BOOST_TEST(runs == 1);
  BOOST_TEST(ok.load() == 8);

  // And mixed: fibers and a thread share one once while a runtime runs.
  goro::once once2;
  int runs2 = 0;
  goro::run({.maxprocs = 2}, [&] {
    goro::wait_group wg;
    wg.add(11);
    auto call = [&] {
      once2.call([&] {
        ++runs2;
        goro::sleep_for(5ms);
      });
      wg.done();
    };
    std::thread t(call);
    for (int f = 0; f < 10; ++f) goro::go(call);
    wg.wait();
    t.join();
  });
  BOOST_TEST(runs2 == 1);
}

// ---- lifetime ------------------------------------------------------------------

BOOST_DATA_TEST_CASE(mutex_destroyed_by_waiter_after_last_unlock, bdata::make(kProcs), procs) {
  // N fibers take a heap mutex once each; the waiter locks it until it sees
  // all N done, then deletes it right after its own unlock, while the last
  // fibers may still be inside unlock(). ASan reports any access after that.
  const int rounds = 2000 / kScale;
  const int n = 4;
  int failed_rounds = 0;
  goro::run({.maxprocs = procs}, [&] {
    for (int round = 0; round < rounds; ++round) {
      auto* mu = new goro::mutex;
      int count = 0;  // guarded by *mu
      for (int i = 0; i < n; ++i) {
        goro::go([mu, &count, i] {
          mu->lock();
          const int v = count;
          if (i % 2 == 0) goro::yield();  // holding it: others queue
          count = v + 1;
          mu->unlock();
        });
      }
      const auto t0 = steady::now();
      for (;;) {
        mu->lock();
        const bool all = count == n;
        mu->unlock();
        if (all) break;
        if (steady::now() - t0 > 10s) {  // an increment was lost
          ++failed_rounds;
          break;
        }
        goro::yield();
      }
      delete mu;
      if (failed_rounds > 0) break;
    }
  });
  BOOST_TEST(failed_rounds == 0);
}

BOOST_DATA_TEST_CASE(mutex_destroyed_by_last_unlocker, bdata::make(kProcs), procs) {
  // The classic refcounted object: each owner locks, drops its reference,
  // unlocks, and the one that dropped the last deletes the object (mutex
  // included), while the others may still be returning from unlock().
  struct object {
    goro::mutex mu;
    int refs = 0;
    int value = 0;
  };
  const int rounds = 2000 / kScale;
  static constexpr int n = 4;
  int bad = 0;
  goro::run({.maxprocs = procs}, [&] {
    std::atomic<int> wrong{0};
    for (int round = 0; round < rounds; ++round) {
      goro::wait_group wg;
      wg.add(n);
      auto* obj = new object;
      obj->refs = n;
      for (int i = 0; i < n; ++i) {
        goro::go([obj, &wg, &wrong, i] {
          bool last;
          {
            std::lock_guard lk(obj->mu);
            ++obj->value;
            if (i % 2 == 0) goro::yield();
            last = --obj->refs == 0;
            if (last && obj->value != n) wrong.fetch_add(1);
          }
          if (last) delete obj;
          wg.done();
        });
      }
      wg.wait();
    }
    bad = wrong.load();
  });
  BOOST_TEST(bad == 0);
}

BOOST_AUTO_TEST_CASE(mutex_destroyed_by_last_unlocker_os_threads) {
  struct object {
    goro::mutex mu;
    int refs = 0;
  };
  const int rounds = 1000 / kScale;
  std::atomic<int> deleted{0};
  for (int round = 0; round < rounds; ++round) {
    auto* obj = new object;
    obj->refs = 3;
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) {
      ts.emplace_back([obj, &deleted] {
        bool last;
        {
          std::lock_guard lk(obj->mu);
          const int r = obj->refs;
          std::this_thread::yield();
          obj->refs = r - 1;
          last = r - 1 == 0;
        }
        if (last) {
          delete obj;
          deleted.fetch_add(1);
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  BOOST_TEST(deleted.load() == rounds);  // exactly one owner saw the last reference
}

namespace unlock_window {
std::atomic<std::thread::id> stalled;
std::atomic<int> phase{0};  // 1: the stalled unlocker is in its window, 2: it left the hook
void stall() {
  if (std::this_thread::get_id() != stalled.load()) return;
  phase.store(1);
  std::this_thread::sleep_for(200ms);
  phase.store(2);
}
}  // namespace unlock_window

BOOST_AUTO_TEST_CASE(mutex_destructor_waits_for_an_unlock_still_running) {
  // Deterministic form of the refcount race: unlocker U is held (by a test
  // hook) between its release and its last access to the mutex; meanwhile
  // E takes and releases the lock, which lets the waiter D in; D unlocks
  // and destroys the mutex. ~mutex must not return before U is done.
  namespace uw = unlock_window;
  goro::detail::g_unlock_window_hook.store(&uw::stall);
  int phase_after_destroy = -1;
  bool set_up = false;
  for (int attempt = 0; attempt < 5 && !set_up; ++attempt) {
    alignas(goro::mutex) unsigned char storage[sizeof(goro::mutex)];
    auto* mu = new (storage) goro::mutex;
    uw::phase.store(0);
    uw::stalled.store(std::this_thread::get_id());
    mu->lock();  // U is this thread
    std::thread d([&] {
      mu->lock();  // queues as a waiter
      mu->unlock();
      mu->~mutex();
      phase_after_destroy = uw::phase.load();
    });
    std::this_thread::sleep_for(50ms);  // let D queue
    std::thread e([&] {
      while (uw::phase.load() == 0) std::this_thread::sleep_for(1ms);
      if (uw::phase.load() != 1) return;
      mu->lock();
      mu->unlock();  // wakes D
    });
    mu->unlock();  // slow path (D waits): stalls in the hook, if D had queued
    if (uw::phase.load() == 0) uw::phase.store(3);  // D had not queued: retry
    e.join();
    d.join();
    set_up = uw::phase.load() == 2;
  }
  goro::detail::g_unlock_window_hook.store(nullptr);
  BOOST_TEST_REQUIRE(set_up);
  BOOST_TEST(phase_after_destroy == 2);
}

BOOST_DATA_TEST_CASE(shared_mutex_destroyed_by_last_reader, bdata::make({1, 2, 4}), procs) {
  // A writer holds the lock while readers queue behind it; it drops its
  // reference (under the lock) and unlocks. The readers get in, unlock, drop
  // theirs, and the one that dropped the last deletes the object: every
  // unlock_shared() happens before that, and the writer's unlock() happens
  // before the readers got in, so the delete is legal (as for
  // std::shared_mutex). The writer's unlock() must therefore not touch the
  // object after admitting the readers. Odd rounds: the writer is
  // an OS thread. ASan reports any access after the delete.
  struct object {
    goro::shared_mutex rw;
    std::atomic<int> refs{0};
    int value = 0;
  };
  const int rounds = 1000 / kScale;
  int bad = 0, unlock_threw = 0;
  goro::run({.maxprocs = procs}, [&] {
    std::atomic<int> wrong{0}, writer_threw{0};
    for (int round = 0; round < rounds; ++round) {
      const int readers = 1 + round % 3;
      auto* obj = new object;
      obj->refs = readers + 1;
      std::atomic<int> queued{0};
      std::atomic<bool> locked{false};
      goro::wait_group wg;
      wg.add(readers + 1);
      auto writer = [&, obj] {
        obj->rw.lock();
        obj->value = 42;
        locked = true;
        eventually([&] { return queued.load() == readers; });
        obj->refs.fetch_sub(1);  // never the last: the readers hold theirs
        try {
          obj->rw.unlock();
        } catch (const std::logic_error&) {
          writer_threw.fetch_add(1);  // it read a freed (reused) object
        }
        wg.done();
      };
      std::thread wt;
      if (round % 2 == 1) {
        wt = std::thread(writer);
      } else {
        goro::go(writer);
      }
      eventually([&] { return locked.load(); });
      for (int i = 0; i < readers; ++i) {
        goro::go([obj, &queued, &wrong, &wg] {
          queued.fetch_add(1);
          obj->rw.lock_shared();  // queues behind the writer
          if (obj->value != 42) wrong.fetch_add(1);
          obj->rw.unlock_shared();
          // After unlock_shared: readers are concurrent, so only this orders
          // the other readers' unlock_shared() before the delete.
          if (obj->refs.fetch_sub(1) == 1) delete obj;
          wg.done();
        });
      }
      wg.wait();
      if (wt.joinable()) wt.join();
    }
    bad = wrong.load();
    unlock_threw = writer_threw.load();
  });
  BOOST_TEST(bad == 0);
  BOOST_TEST(unlock_threw == 0);
}
