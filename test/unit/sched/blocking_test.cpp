// Unit tests for goro::blocking: results and exceptions, the calling worker
// stays free (the monitor's spare workers must not be what keeps fibers
// running), parallelism, the thread limit, inline calls, and runtime exit.
#define BOOST_TEST_MODULE blocking
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/blocking.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::eventually;
using goro_test::kProcs;
using goro_test::ms_since;
using goro_test::procs;
using namespace std::chrono_literals;

// Named, not anonymous: the data test cases are templates that capture these
// types (-Wsubobject-linkage).
namespace blocking_test {

using goro_test::pipe_pair;

// Sets the pool's limit for one test and puts the default back afterwards,
// even when the test fails: the pool is process-wide.
struct limit_guard {
  explicit limit_guard(int n) { goro::set_max_blocking_threads(n); }
  ~limit_guard() { goro::set_max_blocking_threads(64); }
};

// How many jobs run at once, and the most seen.
struct concurrency {
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  void enter() {
    const int n = now.fetch_add(1) + 1;
    int p = peak.load();
    while (n > p && !peak.compare_exchange_weak(p, n)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

// A job that waits for a condition on its pool thread (a plain OS thread):
// true if it held before `limit`.
template <class Pred>
bool thread_wait(Pred pred, std::chrono::milliseconds limit) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!pred()) {
    if (std::chrono::steady_clock::now() - t0 > limit) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

struct my_error : std::runtime_error {
  explicit my_error(int c) : std::runtime_error("my_error"), code(c) {}
  int code;
};

int g_value = 5;
int& global_ref() { return g_value; }

}  // namespace blocking_test

using namespace blocking_test;

BOOST_DATA_TEST_CASE(returns_values_computed_on_another_thread, bdata::make(kProcs), n) {
  goro::run(procs(n), [] {
    const auto caller = std::this_thread::get_id();
    std::atomic<bool> off_fiber{true}, off_thread{true};
    auto where = [&] {
      if (goro::fiber_id() != 0) off_fiber = false;
      if (std::this_thread::get_id() == caller) off_thread = false;
    };
    const int i = goro::blocking([&] {
      where();
      return 42;
    });
    BOOST_TEST(i == 42);
    const std::string s = goro::blocking([&] {
      where();
      return std::string(1000, 'x');
    });
    BOOST_TEST(s == std::string(1000, 'x'));
    std::unique_ptr<int> p = goro::blocking([&] {
      where();
      return std::make_unique<int>(7);
    });
    BOOST_REQUIRE(p != nullptr);
    BOOST_TEST(*p == 7);
    int side = 0;
    goro::blocking([&] {
      where();
      side = 9;
    });
    static_assert(std::is_void_v<decltype(goro::blocking([] {}))>);
    BOOST_TEST(side == 9);
    // A reference comes back as a copy.
    auto r = goro::blocking(&global_ref);
    static_assert(std::is_same_v<decltype(r), int>);
    BOOST_TEST(r == 5);
    // A move-only callable is called in place; a mutable one keeps its state.
    BOOST_TEST(goro::blocking([q = std::make_unique<int>(3)] { return *q + 1; }) == 4);
    auto counter = [k = 0]() mutable { return ++k; };
    goro::blocking(counter);
    BOOST_TEST(goro::blocking(counter) == 2);
    BOOST_TEST(off_fiber.load());
    BOOST_TEST(off_thread.load());
  });
}

BOOST_AUTO_TEST_CASE(rethrows_exceptions_with_their_type) {
  goro::run(procs(2), [] {
    try {
      goro::blocking([]() -> int { throw my_error(17); });
      BOOST_ERROR("no exception");
    } catch (const my_error& e) {
      BOOST_TEST(e.code == 17);
    }
    BOOST_CHECK_THROW(goro::blocking([] { throw std::out_of_range("x"); }), std::out_of_range);
    try {
      goro::blocking([] { throw 5; });
      BOOST_ERROR("no exception");
    } catch (int v) {
      BOOST_TEST(v == 5);
    }
    BOOST_TEST(goro::blocking([] { return 1; }) == 1);  // still works
  });
}

// The key property. With one processor, a fiber in a blocking read leaves the
// only worker to the others. The monitor would also start a spare worker for
// them if the read blocked the worker itself, so the test also checks that
// every other fiber ran on the one regular worker thread.
BOOST_AUTO_TEST_CASE(a_blocking_read_with_maxprocs_1_does_not_stop_others) {
  goro::run(procs(1), [] {
    const auto worker = std::this_thread::get_id();
    std::atomic<int> elsewhere{0};
    auto on_worker = [&] {
      if (std::this_thread::get_id() != worker) elsewhere.fetch_add(1);
    };
    pipe_pair p;
    std::atomic<bool> inside{false}, read_ok{false};
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      read_ok = goro::blocking([&] {
        inside = true;
        return p.read_one();
      });
      on_worker();
      wg.done();
    });
    goro::chan<int> ping = goro::make_chan<int>(0), pong = goro::make_chan<int>(0);
    // The channels by value: this fiber may still be on its way out of
    // recv() (woken by close) when main returns and unwinds it.
    goro::go([&on_worker, ping, pong]() mutable {
      while (auto v = ping.recv()) {
        on_worker();
        pong.send(*v + 1);
      }
    });
    BOOST_REQUIRE(eventually([&] { return inside.load(); }));
    int x = 0;
    for (int i = 0; i < 1000; ++i) {
      ping.send(x);
      x = *pong.recv();
      on_worker();
    }
    BOOST_TEST(x == 1000);
    BOOST_TEST(!read_ok.load());  // still blocked in read()
    ping.close();
    BOOST_TEST(p.write_one());
    wg.wait();
    BOOST_TEST(read_ok.load());
    BOOST_TEST(elsewhere.load() == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_sleep_with_maxprocs_1_does_not_stop_others) {
  goro::run(procs(1), [] {
    const auto worker = std::this_thread::get_id();
    std::atomic<bool> inside{false}, done{false};
    std::atomic<int> ticks_inside{0}, elsewhere{0};
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      goro::blocking([&] {
        inside = true;
        ::usleep(300'000);
        inside = false;
      });
      done = true;
      wg.done();
    });
    goro::go([&] {
      while (!done.load()) {
        if (inside.load()) ticks_inside.fetch_add(1);
        if (std::this_thread::get_id() != worker) elsewhere.fetch_add(1);
        goro::sleep_for(1ms);
      }
      wg.done();
    });
    wg.wait();
    BOOST_TEST_MESSAGE("ticks while the other fiber slept: " << ticks_inside.load());
    BOOST_TEST(ticks_inside.load() >= 20);
    BOOST_TEST(elsewhere.load() == 0);
  });
}

// 50 sleeps of 20 ms on two processors: they overlap. Inline calls would
// take 1 s, or about 100 ms with the monitor's spare workers; either way at
// most 10 threads (maxprocs workers, 4 * maxprocs spares) would run them at
// once, hence the check on the peak. A first round starts the threads (slow
// under TSan), the second is measured; sanitized builds sleep longer, as
// submitting 50 jobs takes them longer.
BOOST_AUTO_TEST_CASE(fifty_sleeps_with_maxprocs_2_overlap) {
  constexpr unsigned kSleepUs = 20'000 * goro_test::kSlow;
  goro::run(procs(2), [] {
    for (int round = 0; round < 2; ++round) {
      concurrency c;
      goro::wait_group wg;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 50; ++i) {
        wg.add(1);
        goro::go([&] {
          goro::blocking([&] {
            c.enter();
            ::usleep(kSleepUs);
            c.leave();
          });
          wg.done();
        });
      }
      wg.wait();
      const double ms = ms_since(t0);
      BOOST_TEST_MESSAGE("round " << round << ": 50 x " << kSleepUs / 1000 << " ms: " << ms
                                  << " ms, peak " << c.peak.load() << " at once");
      if (round == 0) {
        // Thread start-up is in this round (seconds under TSan on a slow
        // virtual machine): only that the sleeps overlapped at all, i.e.
        // well under the 50 sleeps back to back.
        BOOST_TEST(ms < 25.0 * kSleepUs / 1000);
      } else {
        BOOST_TEST(ms < 600.0);
        BOOST_TEST(c.peak.load() >= 16);
      }
    }
  });
}

BOOST_DATA_TEST_CASE(the_limit_bounds_the_threads, bdata::make(kProcs), n) {
  limit_guard lim(2);
  BOOST_TEST(goro::max_blocking_threads() == 2);
  goro::run(procs(n), [] {
    concurrency c;
    std::atomic<int> finished{0};
    goro::wait_group wg;
    for (int i = 0; i < 6; ++i) {
      wg.add(1);
      goro::go([&] {
        goro::blocking([&] {
          c.enter();
          ::usleep(30'000);
          c.leave();
        });
        finished.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
    BOOST_TEST(finished.load() == 6);
    BOOST_TEST(c.peak.load() == 2);
  });
}

// Jobs waiting at the limit get threads as soon as it is raised: here the
// first job only returns once all three run at once.
BOOST_AUTO_TEST_CASE(raising_the_limit_starts_threads_for_waiting_jobs) {
  limit_guard lim(1);
  goro::run(procs(2), [] {
    concurrency c;
    std::atomic<int> met{0};
    goro::wait_group wg;
    for (int i = 0; i < 3; ++i) {
      wg.add(1);
      goro::go([&] {
        goro::blocking([&] {
          c.enter();
          if (thread_wait([&] { return c.now.load() == 3; }, 5s)) met.fetch_add(1);
          // Stay until all three have seen it.
          thread_wait([&] { return met.load() == 3; }, 5s);
          c.leave();
        });
        wg.done();
      });
    }
    goro::sleep_for(50ms);
    BOOST_TEST(c.peak.load() == 1);
    goro::set_max_blocking_threads(3);
    wg.wait();
    BOOST_TEST(met.load() == 3);
  });
}

BOOST_AUTO_TEST_CASE(jobs_beyond_the_limit_run_in_fifo_order) {
  limit_guard lim(1);
  goro::run(procs(2), [] {
    pipe_pair p;
    std::atomic<bool> first_in{false};
    std::mutex mu;
    std::vector<int> order;
    goro::wait_group wg;
    wg.add(6);
    goro::go([&] {
      goro::blocking([&] {
        first_in = true;
        return p.read_one();
      });
      wg.done();
    });
    BOOST_REQUIRE(eventually([&] { return first_in.load(); }));
    for (int i = 1; i <= 5; ++i) {
      goro::go([&, i] {
        goro::blocking([&, i] {
          std::lock_guard lk(mu);
          order.push_back(i);
        });
        wg.done();
      });
      goro::sleep_for(10ms * goro_test::kSlow);  // let it queue before the next
    }
    BOOST_TEST(p.write_one());
    wg.wait();
    BOOST_TEST(order == (std::vector<int>{1, 2, 3, 4, 5}), boost::test_tools::per_element());
  });
}

BOOST_AUTO_TEST_CASE(an_invalid_limit_throws) {
  BOOST_TEST(goro::max_blocking_threads() == 64);
  BOOST_CHECK_THROW(goro::set_max_blocking_threads(0), std::invalid_argument);
  BOOST_CHECK_THROW(goro::set_max_blocking_threads(-3), std::invalid_argument);
  BOOST_TEST(goro::max_blocking_threads() == 64);
  {
    limit_guard lim(1);
    BOOST_TEST(goro::max_blocking_threads() == 1);
  }
  BOOST_TEST(goro::max_blocking_threads() == 64);
}

BOOST_AUTO_TEST_CASE(a_plain_thread_runs_it_inline) {
  goro::run(procs(2), [] {
    std::thread::id caller, inside;
    int v = 0;
    std::thread t([&] {
      caller = std::this_thread::get_id();
      v = goro::blocking([&] {
        inside = std::this_thread::get_id();
        return 3;
      });
    });
    t.join();
    BOOST_TEST(v == 3);
    BOOST_TEST((inside == caller));
  });
}

BOOST_AUTO_TEST_CASE(with_no_runtime_it_runs_inline) {
  std::thread::id inside;
  const std::string s = goro::blocking([&] {
    inside = std::this_thread::get_id();
    return std::string("inline");
  });
  BOOST_TEST(s == "inline");
  BOOST_TEST((inside == std::this_thread::get_id()));
  BOOST_CHECK_THROW(goro::blocking([] { throw my_error(1); }), my_error);
}

BOOST_DATA_TEST_CASE(many_short_jobs_sum_exactly, bdata::make(kProcs), n) {
  constexpr int kFibers = 100;
  const int per_fiber = 100 / goro_test::kSlow;
  std::atomic<long> sum{0};
  goro::run(procs(n), [&] {
    goro::wait_group wg;
    for (int f = 0; f < kFibers; ++f) {
      wg.add(1);
      goro::go([&, f] {
        long local = 0;
        for (int i = 0; i < per_fiber; ++i) {
          const long k = static_cast<long>(f) * per_fiber + i;
          local += goro::blocking([k] { return k; });
        }
        sum.fetch_add(local);
        wg.done();
      });
    }
    wg.wait();
  });
  const long total = static_cast<long>(kFibers) * per_fiber;
  BOOST_TEST(sum.load() == total * (total - 1) / 2);
}

// main returns while a fiber waits for a job that is still running and uses
// the fiber's stack: run() returns only after the job has finished, and the
// fiber is unwound (its destructors run, the code after blocking() does not).
BOOST_AUTO_TEST_CASE(exit_waits_for_a_running_job) {
  pipe_pair p;
  std::atomic<bool> started{false}, job_done{false}, after_call{false}, unwound{false};
  std::thread releaser;
  goro::run(procs(2), [&] {
    goro::go([&] {
      struct on_exit {
        std::atomic<bool>* flag;
        ~on_exit() { *flag = true; }
      } guard{&unwound};
      int on_stack = 0;
      goro::blocking([&] {
        started = true;
        p.read_one();
        ::usleep(20'000);
        on_stack = 42;  // the fiber's frame must still be there
        job_done = true;
      });
      after_call = on_stack == 42;
    });
    BOOST_REQUIRE(eventually([&] { return started.load(); }));
    releaser = std::thread([&] {
      std::this_thread::sleep_for(100ms);
      p.write_one();
    });
  });
  BOOST_TEST(job_done.load());
  BOOST_TEST(unwound.load());
  BOOST_TEST(!after_call.load());
  releaser.join();
}

// A job still waiting for a thread when its fiber is unwound never runs. The
// unwinder takes the most recently started fiber first, so the queued job's
// fiber goes before the one whose job holds the only thread.
BOOST_AUTO_TEST_CASE(exit_drops_a_job_no_thread_started) {
  limit_guard lim(1);
  std::atomic<bool> a_in{false}, a_done{false}, b_ran{false};
  std::atomic<int> unwound{0};
  std::atomic<char> first_unwound{0};
  struct on_exit {
    std::atomic<int>* n;
    std::atomic<char>* first;
    char name;
    ~on_exit() {
      char none = 0;
      first->compare_exchange_strong(none, name);
      n->fetch_add(1);
    }
  };
  goro::run(procs(1), [&] {
    goro::go([&] {
      on_exit g{&unwound, &first_unwound, 'A'};
      goro::blocking([&] {
        a_in = true;
        ::usleep(200'000);
        a_done = true;
      });
    });
    BOOST_REQUIRE(eventually([&] { return a_in.load(); }));
    goro::go([&] {
      on_exit g{&unwound, &first_unwound, 'B'};
      goro::blocking([&] { b_ran = true; });
    });
    goro::sleep_for(20ms);  // B parks with its job queued
  });
  BOOST_TEST(unwound.load() == 2);
  BOOST_TEST(a_done.load());
  BOOST_REQUIRE_MESSAGE(first_unwound.load() == 'B',
                        "the unwinder's order changed: B unwound "
                        "after A, so B's job got the thread");
  BOOST_TEST(!b_ran.load());
}

// Fibers keep calling blocking() while main returns at an arbitrary moment:
// jobs finish before, during and after the stop. Nothing may crash or hang.
BOOST_AUTO_TEST_CASE(exit_races_with_finishing_jobs) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> started{0}, unwound{0};
    const int stop_after_us = static_cast<int>(rng() % 3000);
    goro::run(procs(2), [&] {
      for (int i = 0; i < 16; ++i) {
        goro::go([&, i] {
          started.fetch_add(1);  // a fiber that never started is only destroyed
          struct on_exit {
            std::atomic<int>* n;
            ~on_exit() { n->fetch_add(1); }
          } g{&unwound};
          for (int k = 0;; ++k) {
            goro::blocking([&] { ::usleep(static_cast<unsigned>((i * 37 + k * 11) % 500)); });
          }
        });
      }
      // Every fiber starts first: this tests blocking(), not the exit of
      // fibers that never ran.
      BOOST_REQUIRE(eventually([&] { return started.load() == 16; }));
      goro::sleep_for(std::chrono::microseconds(stop_after_us));
    });
    BOOST_TEST(unwound.load() == started.load());
  }
}

// At exit a destructor may not park; blocking() there runs f inline.
BOOST_AUTO_TEST_CASE(in_a_destructor_at_exit_it_runs_inline) {
  std::atomic<int> got{0};
  std::atomic<bool> on_fiber{false};
  goro::run(procs(2), [&] {
    goro::go([&] {
      struct on_exit {
        std::atomic<int>* got;
        std::atomic<bool>* on_fiber;
        ~on_exit() {
          *got = goro::blocking([this] {
            *on_fiber = goro::fiber_id() != 0;
            return 7;
          });
        }
      } g{&got, &on_fiber};
      goro::chan<int> never = goro::make_chan<int>(0);
      never.recv();  // parked until unwound
    });
    goro::sleep_for(10ms);
  });
  BOOST_TEST(got.load() == 7);
  BOOST_TEST(on_fiber.load());
}

// A forked child has none of the parent's pool threads; its blocking() calls
// must start their own instead of queueing for threads that do not exist.
// (TSan does not support threads in a child forked from a threaded process.)
#if !defined(__SANITIZE_THREAD__)
BOOST_AUTO_TEST_CASE(a_forked_child_starts_its_own_threads) {
  // Leave idle threads in the parent's pool.
  goro::run(procs(2), [] { BOOST_TEST(goro::blocking([] { return 1; }) == 1); });
  goro_test::child_result r = goro_test::run_in_child([] {
    ::alarm(20);  // a hang ends the child with SIGALRM
    int v = 0;
    goro::run(procs(1), [&] { v = goro::blocking([] { return 7; }); });
    if (v != 7) ::_exit(3);
  });
  BOOST_TEST(!r.signaled, "child killed by signal " << r.signal << "; stderr: " << r.err);
  BOOST_TEST(r.exit_code == 0);
}
#endif
