// Unit tests for goro::semaphore: weights, strict FIFO order, cancellation
// (x/sync/semaphore's cases), misuse, and OS threads with and without fibers.
#define BOOST_TEST_MODULE semaphore
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;
using goro_test::ms_since;
using goro_test::procs;
using namespace std::chrono_literals;

// Named, not anonymous: the data test cases are templates that capture these
// types (-Wsubobject-linkage).
namespace semaphore_test {

using goro_test::kSlow;

using goro_test::eventually;

// try_acquire fails while anyone waits (strict FIFO), and 0 permits always
// fit: so try_acquire(0) fails exactly while a waiter is queued.
bool has_waiters(goro::semaphore& s) { return !s.try_acquire(0); }

struct cancellable {
  goro::context ctx;
  goro::cancel_func cancel;
};

cancellable make_cancel(const goro::context& parent = goro::context::background()) {
  auto [c, f] = goro::with_cancel(parent);
  return {std::move(c), std::move(f)};
}

cancellable make_timeout(goro::clock::duration d) {
  auto [c, f] = goro::with_timeout(goro::context::background(), d);
  return {std::move(c), std::move(f)};
}

// Sum of the weights held by those that got through acquire; never more
// than the semaphore's size if the accounting is exact.
struct held_tracker {
  explicit held_tracker(std::int64_t s) : size(s) {}
  const std::int64_t size;
  std::atomic<std::int64_t> held{0};
  std::atomic<std::int64_t> max_held{0};
  std::atomic<int> over{0};

  void enter(std::int64_t w) {
    const std::int64_t h = held.fetch_add(w) + w;
    if (h > size) over.fetch_add(1);
    std::int64_t m = max_held.load();
    while (h > m && !max_held.compare_exchange_weak(m, h)) {
    }
  }
  void leave(std::int64_t w) { held.fetch_sub(w); }
};

}  // namespace semaphore_test

using namespace semaphore_test;

// ---- weights ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(weights_are_counted) {
  goro::semaphore s(10);
  BOOST_TEST(s.size() == 10);
  s.acquire(3);
  s.acquire(7);
  BOOST_TEST(!s.try_acquire(1));
  s.release(3);
  BOOST_TEST(!s.try_acquire(4));
  BOOST_TEST(s.try_acquire(3));
  BOOST_TEST(!s.try_acquire(1));
  s.release(10);
  BOOST_TEST(s.try_acquire(10));
  s.release(4);
  s.release(6);
  s.acquire();  // one permit by default
  BOOST_TEST(s.try_acquire(9));
  BOOST_TEST(!s.try_acquire(1));
  BOOST_TEST(s.try_acquire(0));  // zero always fits when nobody waits
  s.release();
  BOOST_TEST(s.try_acquire(1));
  BOOST_TEST(!s.try_acquire(1));
  s.release(10);
  BOOST_TEST(s.try_acquire(10));
}

BOOST_AUTO_TEST_CASE(zero_size_semaphore) {
  goro::semaphore s(0);
  BOOST_TEST(s.size() == 0);
  s.acquire(0);
  BOOST_TEST(s.try_acquire(0));
  BOOST_TEST(!s.try_acquire(1));
  BOOST_CHECK_THROW(s.acquire(1), std::invalid_argument);
  BOOST_CHECK_THROW(s.release(1), std::logic_error);
}

BOOST_DATA_TEST_CASE(accounting_under_contention, bdata::make(kProcs), np) {
  // 64 fibers take random weights 1..4 of 8 permits by the three ways in, and
  // hold them across a yield: the weights held never sum to more than 8.
  constexpr int kFibers = 64;
  const int iters = 1000 / kSlow;
  goro::semaphore sem(8);
  held_tracker t(8);
  std::atomic<int> work{0};
  std::atomic<int> ctx_failures{0};
  goro::run(procs(np), [&] {
    cancellable live = make_cancel();  // never cancelled
    goro::wait_group wg;
    wg.add(kFibers);
    for (int i = 0; i < kFibers; ++i) {
      goro::go([&, i] {
        std::minstd_rand rng(static_cast<unsigned>(i + 1));
        for (int k = 0; k < iters; ++k) {
          const std::int64_t w = 1 + static_cast<std::int64_t>(rng() % 4);
          switch (k % 3) {
            case 0:
              sem.acquire(w);
              break;
            case 1:
              if (!sem.acquire(live.ctx, w).ok()) {
                ctx_failures.fetch_add(1);
                continue;
              }
              break;
            default:
              while (!sem.try_acquire(w)) goro::yield();
              break;
          }
          t.enter(w);
          if (k % 2 == 0) goro::yield();
          t.leave(w);
          sem.release(w);
          work.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
    live.cancel();
  });
  BOOST_TEST(ctx_failures.load() == 0);
  BOOST_TEST(work.load() == kFibers * iters);
  BOOST_TEST(t.over.load() == 0);
  BOOST_TEST(t.max_held.load() <= 8);
  BOOST_TEST(t.max_held.load() >= 1);
  BOOST_TEST(t.held.load() == 0);
  BOOST_TEST(sem.try_acquire(8));  // every permit came back
}

// ---- FIFO -------------------------------------------------------------------

BOOST_DATA_TEST_CASE(large_request_served_before_later_small_ones, bdata::make(kProcs), np) {
  // acquire(8) queues behind the 4 permits we hold; the small requests that
  // arrive after it must not take the 4 free permits ahead of it.
  constexpr int kSmall = 50;
  std::atomic<int> small_before_big{0};
  std::atomic<int> small_done{0};
  std::atomic<int> small_got_while_queued{0};
  bool big_queued = false;
  bool big_got = false;
  goro::run(procs(np), [&] {
    goro::semaphore sem(8);
    sem.acquire(4);
    std::atomic<bool> big_has{false};
    goro::wait_group wg;
    wg.add(1 + kSmall);
    goro::go([&] {
      sem.acquire(8);
      big_has.store(true);
      goro::yield();
      sem.release(8);
      wg.done();
    });
    big_queued = eventually([&] { return has_waiters(sem); });
    auto small = [&] {
      sem.acquire(1);
      if (!big_has.load()) small_before_big.fetch_add(1);
      sem.release(1);
      small_done.fetch_add(1);
      wg.done();
    };
    for (int i = 0; i < kSmall / 2; ++i) goro::go(small);
    goro::sleep_for(20ms);
    small_got_while_queued = small_done.load();  // they all queue behind the big one
    sem.release(4);
    for (int i = 0; i < kSmall / 2; ++i) goro::go(small);  // the stream goes on
    wg.wait();
    big_got = big_has.load();
    BOOST_TEST(sem.try_acquire(8));
  });
  BOOST_TEST(big_queued);
  BOOST_TEST(big_got);
  BOOST_TEST(small_got_while_queued.load() == 0);
  BOOST_TEST(small_before_big.load() == 0);
  BOOST_TEST(small_done.load() == kSmall);
}

BOOST_DATA_TEST_CASE(large_request_not_starved_by_stream, bdata::make(kProcs), np) {
  // Six fibers keep taking 2 of 8 permits, so 8 are rarely all free at once;
  // a FIFO semaphore still serves acquire(8) as soon as those ahead leave.
  bool served = false;
  long rounds_before = 0;
  goro::run(procs(np), [&] {
    goro::semaphore sem(8);
    std::atomic<bool> stop{false};
    std::atomic<bool> big_got{false};
    std::atomic<long> small_rounds{0};
    goro::wait_group wg;
    wg.add(7);
    for (int i = 0; i < 6; ++i) {
      goro::go([&] {
        while (!stop.load()) {
          sem.acquire(2);
          small_rounds.fetch_add(1);
          goro::yield();
          sem.release(2);
          goro::yield();
        }
        wg.done();
      });
    }
    eventually([&] { return small_rounds.load() > 100; });
    rounds_before = small_rounds.load();
    goro::go([&] {
      sem.acquire(8);
      big_got.store(true);
      sem.release(8);
      wg.done();
    });
    served = eventually([&] { return big_got.load(); }, 10000ms);
    stop.store(true);  // starved or not, let everyone finish
    wg.wait();
    BOOST_TEST(sem.try_acquire(8));
  });
  BOOST_TEST(rounds_before > 100);
  BOOST_TEST(served);
}

BOOST_DATA_TEST_CASE(try_acquire_fails_while_someone_waits, bdata::make(kProcs), np) {
  bool blocked = false, got_early = true, second_try = true, got = false, rest = false, over = true;
  goro::run(procs(np), [&] {
    goro::semaphore sem(4);
    sem.acquire(3);  // one permit stays free
    std::atomic<bool> waiter_got{false};
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      sem.acquire(2);
      waiter_got.store(true);
      wg.done();
    });
    // Before the waiter queues, try_acquire(1) may succeed (we give it back);
    // once it is queued try_acquire(1) must fail though one permit is free.
    blocked = eventually([&] {
      if (sem.try_acquire(1)) {
        sem.release(1);
        return false;
      }
      return true;
    });
    got_early = waiter_got.load();
    second_try = sem.try_acquire(1);
    sem.release(3);  // the waiter gets its 2
    wg.wait();
    got = waiter_got.load();
    rest = sem.try_acquire(2);
    over = sem.try_acquire(1);
  });
  BOOST_TEST(blocked);
  BOOST_TEST(!got_early);
  BOOST_TEST(!second_try);
  BOOST_TEST(got);
  BOOST_TEST(rest);
  BOOST_TEST(!over);
}

// ---- cancellation -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(ended_context_fails_at_once_even_with_free_permits) {
  goro::semaphore sem(5);
  cancellable c = make_cancel();
  c.cancel();
  absl::Status st = sem.acquire(c.ctx, 2);
  BOOST_TEST(absl::IsCancelled(st));
  BOOST_TEST(sem.try_acquire(5));  // nothing was taken
  // With every permit held it must not block either (no runtime here: a
  // blocked main thread would hang the test).
  st = sem.acquire(c.ctx, 1);
  BOOST_TEST(absl::IsCancelled(st));
  sem.release(5);

  auto [past, pcancel] = goro::with_deadline(goro::context::background(), goro::clock::now() - 1s);
  st = sem.acquire(past, 1);
  BOOST_TEST(absl::IsDeadlineExceeded(st));
  BOOST_TEST(sem.try_acquire(5));
  sem.release(5);

  // A child of an ended context has ended too.
  cancellable child = make_cancel(c.ctx);
  BOOST_TEST(absl::IsCancelled(sem.acquire(child.ctx, 1)));

  // Live contexts (and background) take permits as usual.
  cancellable live = make_cancel();
  BOOST_TEST(sem.acquire(live.ctx, 3).ok());
  BOOST_TEST(sem.acquire(goro::context::background(), 2).ok());
  BOOST_TEST(!sem.try_acquire(1));
  sem.release(5);
  BOOST_TEST(sem.try_acquire(5));
  live.cancel();
  pcancel();
}

BOOST_DATA_TEST_CASE(cancel_while_waiting_returns_promptly_holding_nothing, bdata::make(kProcs),
                     np) {
  absl::Status st = absl::UnknownError("not returned");
  bool queued = false, early = true, returned = false, waiters_left = true, all_free = false;
  double ms = -1;
  goro::run(procs(np), [&] {
    goro::semaphore sem(4);
    sem.acquire(4);
    cancellable c = make_cancel();
    std::atomic<bool> ret{false};
    goro::wait_group wg;
    wg.add(1);
    goro::go([&] {
      st = sem.acquire(c.ctx, 2);
      ret.store(true);
      wg.done();
    });
    queued = eventually([&] { return has_waiters(sem); });
    goro::sleep_for(2ms);
    early = ret.load();
    const auto t0 = goro::clock::now();
    std::thread([&] { c.cancel(); }).join();  // cancelled from a plain thread
    returned = eventually([&] { return ret.load(); }, 1000ms);
    ms = ms_since(t0);
    if (!returned) sem.release(4);  // unstick it so that the test can end
    wg.wait();
    waiters_left = has_waiters(sem);
    if (returned) sem.release(4);
    all_free = sem.try_acquire(4);  // the cancelled waiter holds nothing
  });
  BOOST_TEST(queued);
  BOOST_TEST(!early);
  BOOST_TEST(returned);
  BOOST_TEST(ms < 1000);
  BOOST_TEST(absl::IsCancelled(st));
  BOOST_TEST(!waiters_left);
  BOOST_TEST(all_free);
}

BOOST_AUTO_TEST_CASE(cancel_while_waiting_os_thread_without_runtime) {
  goro::semaphore sem(3);
  sem.acquire(2);
  cancellable c = make_cancel();
  absl::Status st = absl::UnknownError("not returned");
  std::atomic<bool> ret{false};
  std::thread waiter([&] {
    st = sem.acquire(c.ctx, 2);
    ret.store(true);
  });
  BOOST_TEST(eventually([&] { return has_waiters(sem); }));
  BOOST_TEST(!ret.load());
  c.cancel();
  const bool returned = eventually([&] { return ret.load(); }, 1000ms);
  BOOST_TEST(returned);
  if (!returned) sem.release(2);
  waiter.join();
  BOOST_TEST(absl::IsCancelled(st));
  BOOST_TEST(!has_waiters(sem));
  if (returned) {
    sem.release(2);
    BOOST_TEST(sem.try_acquire(3));
  }
}

BOOST_DATA_TEST_CASE(removed_front_waiter_lets_the_next_one_through, bdata::make(kProcs), np) {
  // x/sync's "notify behind a removed front waiter": A (8) waits at the
  // front, B (3) waits behind it though 4 permits are free. Cancelling A must
  // let B through with no release.
  absl::Status a_st = absl::UnknownError("not returned");
  bool queued = false, b_early = true, b_through = false, a_returned = false, one_free = false,
       two_free = true, all_free = false;
  goro::run(procs(np), [&] {
    goro::semaphore sem(10);
    sem.acquire(6);
    cancellable a = make_cancel();
    std::atomic<bool> a_ret{false}, b_started{false}, b_got{false};
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      a_st = sem.acquire(a.ctx, 8);
      a_ret.store(true);
      wg.done();
    });
    queued = eventually([&] { return has_waiters(sem); });
    goro::go([&] {
      b_started.store(true);
      sem.acquire(3);
      b_got.store(true);
      wg.done();
    });
    eventually([&] { return b_started.load(); });
    goro::sleep_for(20ms);  // let B queue behind A
    b_early = b_got.load();
    a.cancel();
    b_through = eventually([&] { return b_got.load(); }, 1000ms);
    a_returned = eventually([&] { return a_ret.load(); }, 1000ms);
    if (!b_through) sem.release(6);  // unstick B so that the test can end
    wg.wait();
    if (b_through) {
      // We hold 6, B holds 3, A nothing: exactly one is free.
      one_free = sem.try_acquire(1);
      if (one_free) sem.release(1);
      two_free = sem.try_acquire(2);
      if (two_free) sem.release(2);
      sem.release(6);
    }
    sem.release(3);
    all_free = sem.try_acquire(10);
  });
  BOOST_TEST(queued);
  BOOST_TEST(!b_early);
  BOOST_TEST(b_through);
  BOOST_TEST(a_returned);
  BOOST_TEST(absl::IsCancelled(a_st));
  BOOST_TEST(one_free);
  BOOST_TEST(!two_free);
  BOOST_TEST(all_free);
}

BOOST_AUTO_TEST_CASE(cancelling_a_waiter_behind_the_front_keeps_order) {
  // A (5) waits at the front, B (2) behind it, C (1) behind B. Cancelling B
  // must not let C pass A.
  bool c_early = true, a_got = false, c_got = false, all_free = false;
  absl::Status b_st;
  goro::run(procs(2), [&] {
    goro::semaphore sem(5);
    sem.acquire(4);  // one free: C would fit
    cancellable b = make_cancel();
    std::atomic<bool> a_has{false}, c_has{false};
    std::atomic<int> started{0};
    goro::wait_group wg;
    wg.add(3);
    goro::go([&] {
      sem.acquire(5);
      a_has.store(true);
      sem.release(5);
      wg.done();
    });
    eventually([&] { return has_waiters(sem); });
    goro::go([&] {
      started.fetch_add(1);
      b_st = sem.acquire(b.ctx, 2);
      wg.done();
    });
    goro::go([&] {
      started.fetch_add(1);
      sem.acquire(1);
      c_has.store(true);
      sem.release(1);
      wg.done();
    });
    eventually([&] { return started.load() == 2; });
    goro::sleep_for(20ms);
    b.cancel();
    goro::sleep_for(20ms);
    c_early = c_has.load();
    sem.release(4);
    wg.wait();
    a_got = a_has.load();
    c_got = c_has.load();
    all_free = sem.try_acquire(5);
  });
  BOOST_TEST(!c_early);
  BOOST_TEST(a_got);
  BOOST_TEST(c_got);
  BOOST_TEST((b_st.ok() || absl::IsCancelled(b_st)));
  BOOST_TEST(all_free);
}

BOOST_AUTO_TEST_CASE(timeout_gives_deadline_exceeded) {
  absl::Status st;
  double ms = -1;
  bool partial = false, all_free = false;
  goro::run(procs(2), [&] {
    goro::semaphore sem(3);
    sem.acquire(2);
    cancellable c = make_timeout(30ms);
    const auto t0 = goro::clock::now();
    st = sem.acquire(c.ctx, 2);
    ms = ms_since(t0);
    c.cancel();
    partial = sem.try_acquire(1);  // the timed-out waiter left nothing behind
    if (partial) sem.release(1);
    sem.release(2);
    all_free = sem.try_acquire(3);
  });
  BOOST_TEST(absl::IsDeadlineExceeded(st));
  BOOST_TEST(ms >= 20);  // it did wait for the deadline
  BOOST_TEST(ms < 5000);
  BOOST_TEST(partial);
  BOOST_TEST(all_free);
}

BOOST_DATA_TEST_CASE(cancellation_stress_accounts_every_permit, bdata::make(kProcs), np) {
  // Every round: all permits held, 8 waiters of random weight queue; a
  // canceller cancels a random half while the permits are released one by
  // one. Some waiters have tiny timeouts instead. Waiters that get permits
  // hold them across a yield. At the end of every round all permits are free.
  const int rounds = 4000 / kSlow;
  constexpr int kWaiters = 8;
  std::atomic<int> ok{0}, ended{0}, bad{0}, over{0};
  int leaked = 0;
  goro::run(procs(np), [&] {
    std::minstd_rand rng(static_cast<unsigned>(np) * 7919u);
    for (int r = 0; r < rounds; ++r) {
      const std::int64_t size = 1 + static_cast<std::int64_t>(rng() % 6);
      goro::semaphore sem(size);
      held_tracker t(size);
      sem.acquire(size);
      std::vector<cancellable> cs;
      std::vector<std::atomic<bool>> may_fail(kWaiters);
      for (int i = 0; i < kWaiters; ++i) {
        if (i % 4 == 3) {
          cs.push_back(make_timeout(std::chrono::microseconds(rng() % 300)));
          may_fail[i].store(true);
        } else {
          cs.push_back(make_cancel());
        }
      }
      goro::wait_group wg;
      wg.add(kWaiters + 1);
      std::atomic<int> started{0};
      for (int i = 0; i < kWaiters; ++i) {
        const std::int64_t w = 1 + static_cast<std::int64_t>(rng() % size);
        goro::go([&, i, w] {
          started.fetch_add(1);
          absl::Status st = sem.acquire(cs[i].ctx, w);
          if (st.ok()) {
            t.enter(w);
            goro::yield();
            t.leave(w);
            sem.release(w);
            ok.fetch_add(1);
          } else if ((absl::IsCancelled(st) || absl::IsDeadlineExceeded(st)) &&
                     may_fail[i].load()) {
            ended.fetch_add(1);
          } else {
            bad.fetch_add(1);  // failed though nobody ended its context
          }
          wg.done();
        });
      }
      if (r % 2 == 0) {
        // Mostly queued before the race starts (every other round: racing
        // their arrival too).
        while (started.load() != kWaiters) goro::yield();
        for (int k = 0; k < 3; ++k) goro::yield();
      }
      const unsigned seed = static_cast<unsigned>(rng());
      goro::go([&, seed] {
        std::minstd_rand r2(seed);
        for (int i = 0; i < kWaiters; ++i) {
          if (r2() % 2 != 0) {
            may_fail[i].store(true);
            cs[i].cancel();
          }
          if (r2() % 2 != 0) goro::yield();
        }
        wg.done();
      });
      for (std::int64_t k = 0; k < size; ++k) {
        if (rng() % 2 != 0) goro::yield();
        sem.release(1);
      }
      // Bounded: a leaked permit strands the waiters that were not cancelled.
      cancellable bound = make_timeout(30s);
      if (!wg.wait(bound.ctx).ok()) {
        BOOST_ERROR("round " << r << ": waiters still blocked after 30 s (a permit leaked?)");
        std::fflush(nullptr);
        std::abort();  // they refer to this frame: no way to end the test cleanly
      }
      bound.cancel();
      for (auto& c : cs) c.cancel();
      if (t.over.load() != 0) over.fetch_add(1);
      if (sem.try_acquire(size)) {
        sem.release(size);
      } else {
        ++leaked;
      }
    }
  });
  BOOST_TEST_MESSAGE("procs " << np << ": " << ok.load() << " acquired, " << ended.load()
                              << " ended by their context");
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(over.load() == 0);
  BOOST_TEST(leaked == 0);
  BOOST_TEST(ok.load() + ended.load() == rounds * kWaiters);
  BOOST_TEST(ok.load() > 0);
  BOOST_TEST(ended.load() > 0);
}

// ---- bad input --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bad_input) {
  BOOST_CHECK_THROW(goro::semaphore(-1), std::invalid_argument);
  goro::semaphore sem(4);
  BOOST_CHECK_THROW(sem.acquire(-1), std::invalid_argument);
  BOOST_CHECK_THROW(sem.acquire(5), std::invalid_argument);
  BOOST_CHECK_THROW(sem.try_acquire(-1), std::invalid_argument);
  BOOST_CHECK_THROW(sem.release(-1), std::invalid_argument);
  cancellable c = make_cancel();
  BOOST_TEST(absl::IsInvalidArgument(sem.acquire(c.ctx, 5)));
  BOOST_TEST(absl::IsInvalidArgument(sem.acquire(c.ctx, -1)));
  BOOST_TEST(absl::IsInvalidArgument(sem.acquire(goro::context::background(), 5)));
  // More than the size never fits, but does not throw from try_acquire.
  BOOST_TEST(!sem.try_acquire(5));
  BOOST_TEST(sem.try_acquire(4));  // none of the above took a permit
  sem.release(4);

  BOOST_CHECK_THROW(sem.release(1), std::logic_error);  // nothing held
  sem.acquire(2);
  BOOST_CHECK_THROW(sem.release(3), std::logic_error);
  // The failed release changed nothing: 2 are still held.
  BOOST_TEST(!sem.try_acquire(3));
  sem.release(2);
  BOOST_TEST(sem.try_acquire(4));
  c.cancel();
}

// ---- OS threads -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(os_threads_without_runtime) {
  constexpr int kThreads = 6;
  const int iters = 3000 / kSlow;
  goro::semaphore sem(3);
  held_tracker t(3);
  std::atomic<int> work{0}, ctx_failures{0};
  cancellable live = make_cancel();
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&, i] {
      std::minstd_rand rng(static_cast<unsigned>(i + 11));
      for (int k = 0; k < iters; ++k) {
        const std::int64_t w = 1 + static_cast<std::int64_t>(rng() % 3);
        switch (k % 3) {
          case 0:
            sem.acquire(w);
            break;
          case 1:
            if (!sem.acquire(live.ctx, w).ok()) {
              ctx_failures.fetch_add(1);
              continue;
            }
            break;
          default:
            while (!sem.try_acquire(w)) std::this_thread::yield();
            break;
        }
        t.enter(w);
        if (k % 8 == 0) std::this_thread::yield();
        t.leave(w);
        sem.release(w);
        work.fetch_add(1);
      }
    });
  }
  for (auto& th : ts) th.join();
  live.cancel();
  BOOST_TEST(ctx_failures.load() == 0);
  BOOST_TEST(work.load() == kThreads * iters);
  BOOST_TEST(t.over.load() == 0);
  BOOST_TEST(t.held.load() == 0);
  BOOST_TEST(sem.try_acquire(3));
}

BOOST_AUTO_TEST_CASE(os_thread_waiter_woken_by_release_from_another_thread) {
  goro::semaphore sem(2);
  sem.acquire(2);
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    sem.acquire(2);
    got.store(true);
  });
  BOOST_TEST(eventually([&] { return has_waiters(sem); }));
  BOOST_TEST(!got.load());
  std::thread([&] { sem.release(2); }).join();
  BOOST_TEST(eventually([&] { return got.load(); }, 1000ms));
  waiter.join();
  BOOST_TEST(!sem.try_acquire(1));  // the waiter holds both
  sem.release(2);
  BOOST_TEST(sem.try_acquire(2));
}

BOOST_DATA_TEST_CASE(mixed_os_threads_and_fibers, bdata::make(kProcs), np) {
  // OS threads and fibers contend for 4 permits: each side releases permits
  // the other side waits for (a thread blocks, a fiber parks).
  constexpr int kThreads = 3, kFibers = 32;
  const int thread_iters = 1500 / kSlow, fiber_iters = 200 / kSlow;
  goro::semaphore sem(4);
  held_tracker t(4);
  std::atomic<int> work{0}, ctx_failures{0};
  goro::run(procs(np), [&] {
    cancellable live = make_cancel();
    goro::wait_group wg;
    wg.add(kThreads + kFibers);
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i) {
      ts.emplace_back([&, i] {
        std::minstd_rand rng(static_cast<unsigned>(100 + i));
        for (int k = 0; k < thread_iters; ++k) {
          const std::int64_t w = 1 + static_cast<std::int64_t>(rng() % 3);
          if (k % 2 == 0) {
            sem.acquire(w);
          } else if (!sem.acquire(live.ctx, w).ok()) {
            ctx_failures.fetch_add(1);
            continue;
          }
          t.enter(w);
          t.leave(w);
          sem.release(w);
          work.fetch_add(1);
        }
        wg.done();  // from a plain thread
      });
    }
    for (int i = 0; i < kFibers; ++i) {
      goro::go([&, i] {
        std::minstd_rand rng(static_cast<unsigned>(i + 1));
        for (int k = 0; k < fiber_iters; ++k) {
          const std::int64_t w = 1 + static_cast<std::int64_t>(rng() % 4);
          if (k % 2 == 0) {
            sem.acquire(w);
          } else if (!sem.acquire(live.ctx, w).ok()) {
            ctx_failures.fetch_add(1);
            continue;
          }
          t.enter(w);
          goro::yield();
          t.leave(w);
          sem.release(w);
          work.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();  // parks: the threads may still need this worker's fibers
    for (auto& th : ts) th.join();
    live.cancel();
  });
  BOOST_TEST(ctx_failures.load() == 0);
  BOOST_TEST(work.load() == kThreads * thread_iters + kFibers * fiber_iters);
  BOOST_TEST(t.over.load() == 0);
  BOOST_TEST(t.held.load() == 0);
  BOOST_TEST(sem.try_acquire(4));
}
