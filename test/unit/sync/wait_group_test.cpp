// Unit tests for goro::wait_group: fibers, OS threads, misuse, lifetime.
#define BOOST_TEST_MODULE wait_group
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;
using goro_test::ms_since;
using namespace std::chrono_literals;

// Named, not anonymous: the data test cases are templates that capture these
// types (-Wsubobject-linkage).
namespace wait_group_test {

using goro_test::kSlow;

using goro_test::eventually;

struct cancellable {
  goro::context ctx;
  goro::cancel_func cancel;
};

cancellable make_cancel() {
  auto [c, f] = goro::with_cancel(goro::context::background());
  return {std::move(c), std::move(f)};
}

cancellable make_timeout(goro::clock::duration d) {
  auto [c, f] = goro::with_timeout(goro::context::background(), d);
  return {std::move(c), std::move(f)};
}

}  // namespace wait_group_test

using namespace wait_group_test;

BOOST_AUTO_TEST_CASE(negative_counter_throws) {
  goro::wait_group wg;
  BOOST_CHECK_THROW(wg.done(), std::logic_error);
  wg.add(2);
  wg.done();
  wg.done();
  wg.wait();  // zero: returns at once
}

BOOST_AUTO_TEST_CASE(os_threads_without_runtime) {
  goro::wait_group wg;
  std::atomic<int> n{0};
  std::vector<std::thread> ts;
  wg.add(8);
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      n.fetch_add(1);
      wg.done();
    });
  }
  std::thread waiter([&] { wg.wait(); });
  wg.wait();
  waiter.join();
  BOOST_TEST(n.load() == 8);
  for (auto& t : ts) t.join();
}

BOOST_DATA_TEST_CASE(many_waiters_all_released, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::wait_group gate, waited;
    gate.add(1);
    std::atomic<int> released{0};
    waited.add(100);
    for (int i = 0; i < 100; ++i) {
      goro::go([&] {
        gate.wait();
        released.fetch_add(1);
        waited.done();
      });
    }
    std::thread t([&] { gate.wait(); });  // an OS thread waits too
    for (int i = 0; i < 50; ++i) goro::yield();
    gate.done();
    waited.wait();
    t.join();
    BOOST_TEST(released.load() == 100);
  });
}

BOOST_DATA_TEST_CASE(reusable_after_zero, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::wait_group wg;
    for (int round = 0; round < 200; ++round) {
      std::atomic<int> n{0};
      wg.add(10);
      for (int i = 0; i < 10; ++i) {
        goro::go([&] {
          n.fetch_add(1);
          wg.done();
        });
      }
      wg.wait();
      BOOST_TEST_REQUIRE(n.load() == 10);
    }
  });
}

BOOST_DATA_TEST_CASE(destroy_right_after_wait, bdata::make(kProcs), procs) {
  // The wait_group lives on the waiter's stack (heap here, to let ASan see a
  // use after free) and is destroyed the moment wait() returns.
  goro::run({.maxprocs = procs}, [] {
    for (int round = 0; round < 2000; ++round) {
      auto wg = std::make_unique<goro::wait_group>();
      wg->add(2);
      goro::wait_group* raw = wg.get();
      goro::go([raw] { raw->done(); });
      goro::go([raw] { raw->done(); });
      wg->wait();
      wg.reset();
    }
  });
}

// ---- wait(ctx) --------------------------------------------------------------

BOOST_DATA_TEST_CASE(wait_ctx_ok_when_counter_hits_zero, bdata::make(kProcs), procs) {
  absl::Status st = absl::UnknownError("not waited"), at_zero, at_zero_bg;
  int done_at_return = -1;
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    cancellable c = make_cancel();
    std::atomic<int> n{0};
    wg.add(3);
    for (int i = 0; i < 3; ++i) {
      goro::go([&, i] {
        goro::sleep_for(std::chrono::milliseconds(2 * i));
        n.fetch_add(1);
        wg.done();
      });
    }
    st = wg.wait(c.ctx);
    done_at_return = n.load();
    at_zero = wg.wait(c.ctx);                           // zero: at once
    at_zero_bg = wg.wait(goro::context::background());  // never ends
    c.cancel();
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(done_at_return == 3);
  BOOST_TEST(at_zero.ok());
  BOOST_TEST(at_zero_bg.ok());
}

BOOST_DATA_TEST_CASE(wait_ctx_cancelled_while_waiting, bdata::make(kProcs), procs) {
  // A fiber and a plain thread wait with their own contexts; each returns
  // Cancelled promptly when its context is cancelled (one from a thread, one
  // from a fiber), while the counter stays at 1.
  absl::Status fiber_st = absl::UnknownError("not returned");
  absl::Status thread_st = absl::UnknownError("not returned");
  bool early = true, fiber_ret = false, thread_ret = false, zero_ok = false;
  double fiber_ms = -1, thread_ms = -1;
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    wg.add(1);
    cancellable cf = make_cancel(), ct = make_cancel();
    std::atomic<bool> f_ret{false}, t_ret{false};
    goro::wait_group joined;
    joined.add(1);
    goro::go([&] {
      fiber_st = wg.wait(cf.ctx);
      f_ret.store(true);
      joined.done();
    });
    std::thread t([&] {
      thread_st = wg.wait(ct.ctx);
      t_ret.store(true);
    });
    goro::sleep_for(20ms);
    early = f_ret.load() || t_ret.load();  // nothing ended yet

    auto t0 = goro::clock::now();
    std::thread([&] { cf.cancel(); }).join();
    fiber_ret = eventually([&] { return f_ret.load(); }, 1000ms);
    fiber_ms = ms_since(t0);

    t0 = goro::clock::now();
    ct.cancel();
    thread_ret = eventually([&] { return t_ret.load(); }, 1000ms);
    thread_ms = ms_since(t0);

    wg.done();  // releases anyone still stuck, so that the test can end
    joined.wait();
    t.join();
    zero_ok = wg.wait(make_cancel().ctx).ok();
  });
  BOOST_TEST(!early);
  BOOST_TEST(fiber_ret);
  BOOST_TEST(thread_ret);
  BOOST_TEST(absl::IsCancelled(fiber_st));
  BOOST_TEST(absl::IsCancelled(thread_st));
  BOOST_TEST(fiber_ms < 1000);
  BOOST_TEST(thread_ms < 1000);
  BOOST_TEST(zero_ok);
}

BOOST_AUTO_TEST_CASE(wait_ctx_cancelled_os_thread_without_runtime) {
  goro::wait_group wg;
  wg.add(1);
  cancellable c = make_cancel();
  absl::Status st = absl::UnknownError("not returned");
  std::atomic<bool> ret{false};
  std::thread t([&] {
    st = wg.wait(c.ctx);
    ret.store(true);
  });
  std::this_thread::sleep_for(20ms);
  BOOST_TEST(!ret.load());
  c.cancel();
  BOOST_TEST(eventually([&] { return ret.load(); }, 1000ms));
  wg.done();
  t.join();
  BOOST_TEST(absl::IsCancelled(st));
  wg.wait();
}

BOOST_AUTO_TEST_CASE(wait_ctx_already_ended_returns_at_once) {
  // No runtime: a wait that blocked would hang the test.
  goro::wait_group wg;
  wg.add(1);
  cancellable c = make_cancel();
  c.cancel();
  BOOST_TEST(absl::IsCancelled(wg.wait(c.ctx)));

  auto [past, pcancel] = goro::with_deadline(goro::context::background(), goro::clock::now() - 1s);
  BOOST_TEST(absl::IsDeadlineExceeded(wg.wait(past)));

  // err(), not the cause, is what wait(ctx) returns.
  auto [cctx, ccancel] = goro::with_cancel_cause(goro::context::background());
  ccancel(absl::DataLossError("why"));
  const absl::Status st = wg.wait(cctx);
  BOOST_TEST(absl::IsCancelled(st));

  wg.done();
  // The counter is zero, but an already-ended context still returns its error
  // at once (as context-aware channel operations do).
  BOOST_TEST(absl::IsCancelled(wg.wait(c.ctx)));
  wg.wait();
  pcancel();
}

BOOST_AUTO_TEST_CASE(wait_ctx_timeout_gives_deadline_exceeded) {
  absl::Status st, after;
  double ms = -1;
  goro::run({.maxprocs = 2}, [&] {
    goro::wait_group wg;
    wg.add(1);
    cancellable c = make_timeout(30ms);
    const auto t0 = goro::clock::now();
    st = wg.wait(c.ctx);
    ms = ms_since(t0);
    c.cancel();
    goro::go([&] { wg.done(); });
    cancellable live = make_timeout(60s);
    after = wg.wait(live.ctx);  // a later wait(ctx) is released by done()
    live.cancel();
  });
  BOOST_TEST(absl::IsDeadlineExceeded(st));
  BOOST_TEST(ms >= 20);  // it did wait for the deadline
  BOOST_TEST(ms < 5000);
  BOOST_TEST(after.ok());
}

BOOST_DATA_TEST_CASE(plain_wait_after_cancelled_wait, bdata::make(kProcs), procs) {
  // A cancelled wait(ctx) leaves the queue; a later plain wait() must still
  // block until the final done(), and be released by it. The wait_group is
  // reused across rounds; every other round the plain waiter is an OS thread.
  const int rounds = 60 / (kSlow > 1 ? 4 : 1);
  int bad_cancel = 0, early = 0, stuck = 0, wrong_counter = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::wait_group wg;
    for (int r = 0; r < rounds; ++r) {
      wg.add(2);
      cancellable c = make_cancel();
      absl::Status a_st;
      std::atomic<bool> a_ret{false}, b_ret{false};
      std::atomic<int> finished{0};
      goro::wait_group joined;
      joined.add(1);
      goro::go([&] {
        a_st = wg.wait(c.ctx);
        a_ret.store(true);
        joined.done();
      });
      goro::sleep_for(1ms);
      c.cancel();
      if (!eventually([&] { return a_ret.load(); }, 1000ms)) ++stuck;
      joined.wait();
      if (!absl::IsCancelled(a_st)) ++bad_cancel;

      auto plain = [&] {
        wg.wait();
        if (finished.load() != 2) wrong_counter++;
        b_ret.store(true);
      };
      std::thread t;
      joined.add(1);
      if (r % 2 == 0) {
        goro::go([&] {
          plain();
          joined.done();
        });
      } else {
        t = std::thread([&] {
          plain();
          joined.done();
        });
      }
      goro::sleep_for(1ms);
      finished.fetch_add(1);
      wg.done();
      goro::sleep_for(1ms);
      if (b_ret.load()) ++early;  // the counter is still 1
      finished.fetch_add(1);
      wg.done();
      if (!eventually([&] { return b_ret.load(); }, 1000ms)) ++stuck;
      joined.wait();
      if (t.joinable()) t.join();
    }
  });
  BOOST_TEST(bad_cancel == 0);
  BOOST_TEST(early == 0);
  BOOST_TEST(wrong_counter == 0);
  BOOST_TEST(stuck == 0);
}

BOOST_DATA_TEST_CASE(cancellation_races_final_done, bdata::make(kProcs), procs) {
  // Every round: 12 fibers and 2 plain threads wait(ctx) on a counter of 3;
  // a canceller cancels a random subset (some contexts time out by
  // themselves) while three workers count down. Every waiter must return: OK
  // only once the counter is zero, or the error of a context that ended.
  const int rounds = 600 / kSlow;
  constexpr int kFibers = 12, kThreads = 2, kWaiters = kFibers + kThreads, kWorkers = 3;
  std::atomic<int> ok{0}, ended{0}, bad{0}, early{0};
  int hung_round = -1;
  goro::run({.maxprocs = procs}, [&] {
    std::minstd_rand rng(static_cast<unsigned>(procs) * 104729u);
    for (int r = 0; r < rounds && hung_round < 0; ++r) {
      goro::wait_group wg;
      wg.add(kWorkers);
      std::atomic<int> counted_down{0}, returned{0};
      goro::wait_group all_returned;  // another wait_group, waited for with a bound
      all_returned.add(kWaiters);
      std::vector<cancellable> cs;
      std::vector<std::atomic<bool>> may_fail(kWaiters);
      for (int i = 0; i < kWaiters; ++i) {
        if (i % 5 == 4) {
          cs.push_back(make_timeout(std::chrono::microseconds(rng() % 300)));
          may_fail[i].store(true);
        } else {
          cs.push_back(make_cancel());
        }
      }
      std::atomic<int> started{0};
      auto waiter = [&](int i) {
        started.fetch_add(1);
        const absl::Status st = wg.wait(cs[i].ctx);
        if (st.ok()) {
          if (counted_down.load() != kWorkers) early.fetch_add(1);
          ok.fetch_add(1);
        } else if ((absl::IsCancelled(st) || absl::IsDeadlineExceeded(st)) && may_fail[i].load()) {
          ended.fetch_add(1);
        } else {
          bad.fetch_add(1);
        }
        returned.fetch_add(1);
        all_returned.done();
      };
      for (int i = 0; i < kFibers; ++i) goro::go(waiter, i);
      std::vector<std::thread> ts;
      for (int i = kFibers; i < kWaiters; ++i) ts.emplace_back(waiter, i);
      if (r % 2 == 0) {
        // Mostly queued before the race starts (every other round: racing
        // their arrival too).
        while (started.load() != kWaiters) goro::yield();
        for (int k = 0; k < 3; ++k) goro::yield();
      }
      // The canceller and the workers may outlive the waiters (all of them
      // cancelled): the round's state must outlive them.
      goro::wait_group helpers;
      helpers.add(1 + kWorkers);
      const unsigned seed = static_cast<unsigned>(rng());
      goro::go([&, seed] {
        std::minstd_rand r2(seed);
        for (int i = 0; i < kWaiters; ++i) {
          if (r2() % 2 != 0) {
            may_fail[i].store(true);
            cs[i].cancel();
          }
          if (r2() % 3 == 0) goro::yield();
        }
        helpers.done();
      });
      for (int k = 0; k < kWorkers; ++k) {
        const int spins = static_cast<int>(rng() % 4);
        goro::go([&, spins] {
          for (int s = 0; s < spins; ++s) goro::yield();
          counted_down.fetch_add(1);
          wg.done();
          helpers.done();
        });
      }
      cancellable bound = make_timeout(20s);
      if (!all_returned.wait(bound.ctx).ok()) {
        hung_round = r;
        // Leave the hung waiters be: wg and the contexts must outlive them.
        BOOST_ERROR("wait(ctx) waiters hung in round " << r << ": " << returned.load() << " of "
                                                       << kWaiters << " returned");
        std::fflush(nullptr);
        std::abort();
      }
      bound.cancel();
      helpers.wait();
      for (auto& t : ts) t.join();
      for (auto& c : cs) c.cancel();
    }
  });
  BOOST_TEST_MESSAGE("procs " << procs << ": " << ok.load() << " released, " << ended.load()
                              << " ended by their context");
  BOOST_TEST(hung_round == -1);
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(early.load() == 0);
  BOOST_TEST(ok.load() + ended.load() == rounds * kWaiters);
  BOOST_TEST(ok.load() > 0);
  BOOST_TEST(ended.load() > 0);
}
