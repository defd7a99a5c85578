// Unit tests for goro::condition_variable: producer/consumer, notify_one and
// notify_all semantics and order, timed waits, notify racing a deadline,
// misuse, fibers and OS threads together, lifetime.
#define BOOST_TEST_MODULE condition_variable
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;
using goro_test::ms_since;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// Iteration counts are divided by this under the sanitizers (5-20x slower).
constexpr int kScale = goro_test::kSanitized ? 4 : 1;
// How late a timed wait may return (a loaded machine, a sanitizer).
constexpr double kLateMs = goro_test::kSanitized ? 1000 : 250;

using goro_test::eventually;

// `pred` evaluated under `mu`.
template <class Pred>
bool eventually_locked(goro::mutex& mu, Pred pred, std::chrono::milliseconds limit = 10s) {
  return eventually(
      [&] {
        std::lock_guard lk(mu);
        return pred();
      },
      limit);
}

// Checks that the items received are exactly 0..n-1, once each.
void check_exact(std::vector<int> got, int n) {
  BOOST_TEST(static_cast<int>(got.size()) == n);
  std::int64_t sum = 0;
  for (int v : got) sum += v;
  BOOST_TEST(sum == static_cast<std::int64_t>(n) * (n - 1) / 2);
  std::sort(got.begin(), got.end());
  std::vector<int> want(static_cast<std::size_t>(n));
  std::iota(want.begin(), want.end(), 0);
  BOOST_TEST((got == want));
}

}  // namespace

// A bounded queue: producers wait on not_full, consumers on not_empty.
struct bounded_queue {
  static constexpr std::size_t kCap = 8;
  goro::mutex mu;
  goro::condition_variable not_empty, not_full;
  std::deque<int> q;
  int producers_left;

  explicit bounded_queue(int producers) : producers_left(producers) {}

  void put(int v) {
    std::unique_lock lk(mu);
    not_full.wait(lk, [&] { return q.size() < kCap; });
    q.push_back(v);
    if (v % 2 == 0) {  // notify with and without the mutex held
      not_empty.notify_one();
    } else {
      lk.unlock();
      not_empty.notify_one();
    }
  }
  void producer_done() {
    {
      std::lock_guard lk(mu);
      --producers_left;
    }
    not_empty.notify_all();
  }
  // false once the queue is empty and every producer is done.
  bool get(int& v) {
    std::unique_lock lk(mu);
    not_empty.wait(lk, [&] { return !q.empty() || producers_left == 0; });
    if (q.empty()) return false;
    v = q.front();
    q.pop_front();
    lk.unlock();
    not_full.notify_one();
    return true;
  }
};

// ---- producer / consumer -----------------------------------------------------

BOOST_DATA_TEST_CASE(producer_consumer_exact, bdata::make(kProcs), procs) {
  // Fiber producers and consumers, plus one of each on an OS thread.
  const int producers = 5, consumers = 5;  // each: one on a thread
  const int per = 2000 / kScale;
  std::vector<int> got;
  goro::run({.maxprocs = procs}, [&] {
    bounded_queue bq(producers);
    std::vector<std::vector<int>> received(consumers);
    goro::wait_group wg;
    wg.add(producers + consumers);
    auto producer = [&](int p) {
      for (int i = 0; i < per; ++i) {
        bq.put(p * per + i);
        if (i % 64 == 0) goro::yield();
      }
      bq.producer_done();
      wg.done();
    };
    auto consumer = [&](int c) {
      int v;
      while (bq.get(v)) {
        received[c].push_back(v);
        if (v % 32 == 0) goro::yield();
      }
      wg.done();
    };
    std::thread tp(producer, 0);
    std::thread tc(consumer, 0);
    for (int p = 1; p < producers; ++p) goro::go(producer, p);
    for (int c = 1; c < consumers; ++c) goro::go(consumer, c);
    wg.wait();
    tp.join();
    tc.join();
    for (auto& r : received) got.insert(got.end(), r.begin(), r.end());
  });
  check_exact(got, producers * per);
}

BOOST_AUTO_TEST_CASE(producer_consumer_os_threads_without_runtime) {
  const int producers = 3, consumers = 3;
  const int per = 5000 / kScale;
  bounded_queue bq(producers);
  std::vector<std::vector<int>> received(consumers);
  std::vector<std::thread> ts;
  for (int p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      for (int i = 0; i < per; ++i) bq.put(p * per + i);
      bq.producer_done();
    });
  }
  for (int c = 0; c < consumers; ++c) {
    ts.emplace_back([&, c] {
      int v;
      while (bq.get(v)) received[c].push_back(v);
    });
  }
  for (auto& t : ts) t.join();
  std::vector<int> got;
  for (auto& r : received) got.insert(got.end(), r.begin(), r.end());
  check_exact(got, producers * per);
}

// ---- notify_one / notify_all ---------------------------------------------------

BOOST_DATA_TEST_CASE(notify_one_wakes_one_in_fifo_order, bdata::make(kProcs), procs) {
  // Waiters queue one at a time (each is known to be queued once its
  // `entered` increment is seen under the mutex: wait() queues before it
  // releases the mutex). Each notify_one must wake exactly the oldest.
  // Untimed waits have no spurious wake-ups, so every return from wait() is
  // counted.
  const int k = 6;
  std::vector<int> order;
  std::vector<int> wakeups_after;  // total wake-ups after each notify_one
  int wakeups_final = -1;
  bool queued_ok = true;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::condition_variable cv;
    int entered = 0, tickets = 0, wakeups = 0;
    std::vector<int> woken;
    goro::wait_group wg;
    wg.add(k);
    for (int i = 0; i < k; ++i) {
      goro::go([&, i] {
        std::unique_lock lk(mu);
        ++entered;
        while (tickets == 0) {
          cv.wait(lk);
          ++wakeups;
        }
        --tickets;
        woken.push_back(i);
        wg.done();
      });
      queued_ok = queued_ok && eventually_locked(mu, [&] { return entered == i + 1; });
    }
    // notify_one three times: waiters 0, 1, 2 in that order, one each.
    for (int n = 0; n < 3; ++n) {
      {
        std::lock_guard lk(mu);
        tickets = 1;
      }
      cv.notify_one();
      eventually_locked(mu, [&] { return static_cast<int>(woken.size()) == n + 1; });
      goro::sleep_for(5ms);  // a second waiter woken by mistake shows up by now
      std::lock_guard lk(mu);
      wakeups_after.push_back(wakeups);
    }
    // notify_all: the other three.
    {
      std::lock_guard lk(mu);
      tickets = k - 3;
    }
    cv.notify_all();
    eventually_locked(mu, [&] { return static_cast<int>(woken.size()) == k; });
    wg.wait();
    order = woken;
    wakeups_final = wakeups;
  });
  BOOST_TEST_REQUIRE(queued_ok);
  BOOST_TEST_REQUIRE(order.size() == static_cast<std::size_t>(k));
  BOOST_TEST(order[0] == 0);
  BOOST_TEST(order[1] == 1);
  BOOST_TEST(order[2] == 2);
  BOOST_TEST((wakeups_after == std::vector<int>{1, 2, 3}));
  BOOST_TEST(wakeups_final == k);
  std::sort(order.begin(), order.end());
  BOOST_TEST((order == std::vector<int>{0, 1, 2, 3, 4, 5}));
}

BOOST_DATA_TEST_CASE(notify_all_wakes_all, bdata::make(kProcs), procs) {
  const int fibers = 100, threads = 2;
  int released = 0, wakeups = -1;
  bool all_queued = false, none_early = false;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::condition_variable cv;
    int entered = 0, woke = 0;
    bool go_flag = false;
    std::atomic<int> out{0};
    goro::wait_group wg;
    wg.add(fibers + threads);
    auto waiter = [&] {
      std::unique_lock lk(mu);
      ++entered;
      cv.wait(lk);  // one untimed wait: no spurious wake-up
      ++woke;
      if (go_flag) out.fetch_add(1);
      lk.unlock();
      wg.done();
    };
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(waiter);
    for (int f = 0; f < fibers; ++f) goro::go(waiter);
    all_queued = eventually_locked(mu, [&] { return entered == fibers + threads; });
    goro::sleep_for(5ms);
    {
      std::lock_guard lk(mu);
      none_early = woke == 0;
      go_flag = true;
    }
    cv.notify_all();
    wg.wait();
    for (auto& t : ts) t.join();
    released = out.load();
    wakeups = woke;
    // Nobody is left waiting: another notify finds no one.
    cv.notify_all();
    cv.notify_one();
  });
  BOOST_TEST(all_queued);
  BOOST_TEST(none_early);
  BOOST_TEST(released == fibers + threads);
  BOOST_TEST(wakeups == fibers + threads);
}

BOOST_AUTO_TEST_CASE(notify_without_waiters_is_not_remembered) {
  // Unlike a semaphore, a notify that finds no waiter is lost.
  auto body = [] {
    goro::mutex mu;
    goro::condition_variable cv;
    cv.notify_one();
    cv.notify_all();
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 20ms);
  };
  BOOST_TEST((body() == std::cv_status::timeout));
  std::cv_status on_fiber = std::cv_status::no_timeout;
  goro::run({.maxprocs = 1}, [&] { on_fiber = body(); });
  BOOST_TEST((on_fiber == std::cv_status::timeout));
}

// ---- timed waits -------------------------------------------------------------

namespace {

// Timed-wait checks; runs on a fiber or on a plain thread. `spawn(fn)` runs
// fn concurrently (a fiber or a thread) and returns a joiner.
template <class Spawn>
void timed_wait_checks(Spawn spawn) {
  goro::mutex mu;
  goro::condition_variable cv;
  std::unique_lock lk(mu);

  {  // wait_for: timeout after the duration, not before; the lock is held again
    const auto t0 = steady::now();
    const std::cv_status st = cv.wait_for(lk, 50ms);
    const double el = ms_since(t0);
    BOOST_TEST((st == std::cv_status::timeout));
    BOOST_TEST(el >= 50.0);
    BOOST_TEST(el < 50.0 + kLateMs);
    BOOST_TEST(lk.owns_lock());
  }
  {  // wait_until on the steady clock
    const auto t0 = steady::now();
    const std::cv_status st = cv.wait_until(lk, t0 + 30ms);
    const double el = ms_since(t0);
    BOOST_TEST((st == std::cv_status::timeout));
    BOOST_TEST(el >= 30.0);
    BOOST_TEST(el < 30.0 + kLateMs);
    BOOST_TEST(lk.owns_lock());
  }
  {  // wait_until on the system clock (converted when the wait starts)
    const auto t0 = steady::now();
    const std::cv_status st = cv.wait_until(lk, std::chrono::system_clock::now() + 30ms);
    const double el = ms_since(t0);
    BOOST_TEST((st == std::cv_status::timeout));
    BOOST_TEST(el >= 29.0);  // a clock conversion's worth of slack
    BOOST_TEST(el < 30.0 + kLateMs);
  }
  {  // predicate forms: false on timeout, after the duration
    const auto t0 = steady::now();
    const bool r = cv.wait_for(lk, 30ms, [] { return false; });
    const double el = ms_since(t0);
    BOOST_TEST(!r);
    BOOST_TEST(el >= 30.0);
    BOOST_TEST(el < 30.0 + kLateMs);
    BOOST_TEST(!cv.wait_until(lk, std::chrono::system_clock::now() + 10ms, [] { return false; }));
    BOOST_TEST(lk.owns_lock());
  }
  {  // zero and negative timeouts return at once, still locked
    BOOST_TEST((cv.wait_for(lk, 0ms) == std::cv_status::timeout));
    BOOST_TEST((cv.wait_for(lk, -5ms) == std::cv_status::timeout));
    BOOST_TEST((cv.wait_until(lk, steady::now() - 1s) == std::cv_status::timeout));
    BOOST_TEST(!cv.wait_for(lk, 0ms, [] { return false; }));
    BOOST_TEST(cv.wait_for(lk, 0ms, [] { return true; }));
    BOOST_TEST(lk.owns_lock());
  }
  // Predicate forms: true when notified in time (long and saturating
  // timeouts; system clock).
  for (int variant = 0; variant < 3; ++variant) {
    bool ready = false;
    auto joiner = spawn([&] {
      goro::sleep_for(20ms);
      {
        std::lock_guard g(mu);
        ready = true;
      }
      cv.notify_one();
    });
    const auto t0 = steady::now();
    bool r = false;
    if (variant == 0) r = cv.wait_for(lk, 10s, [&] { return ready; });
    if (variant == 1) r = cv.wait_for(lk, std::chrono::seconds::max(), [&] { return ready; });
    if (variant == 2) {
      r = cv.wait_until(lk, std::chrono::system_clock::now() + 10s, [&] { return ready; });
    }
    const double el = ms_since(t0);
    BOOST_TEST(r);
    BOOST_TEST(ready);
    BOOST_TEST(el < 5000.0);
    BOOST_TEST(lk.owns_lock());
    lk.unlock();
    joiner();
    lk.lock();
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(timed_waits_os_thread_without_runtime) {
  timed_wait_checks([](auto fn) {
    auto t = std::make_shared<std::thread>(fn);
    return [t] { t->join(); };
  });
}

BOOST_DATA_TEST_CASE(timed_waits_fiber, bdata::make({1, 2}), procs) {
  goro::run({.maxprocs = procs}, [] {
    timed_wait_checks([](auto fn) {
      auto wg = std::make_shared<goro::wait_group>();
      wg->add(1);
      goro::go([wg, fn] {
        fn();
        wg->done();
      });
      return [wg] { wg->wait(); };
    });
  });
}

BOOST_AUTO_TEST_CASE(timed_waits_os_thread_while_runtime_runs) {
  // A plain thread's timed waits, notified by fibers.
  goro::run({.maxprocs = 2}, [] {
    goro::wait_group wg;
    wg.add(1);
    std::thread t([&] {
      timed_wait_checks([](auto fn) {
        auto done = std::make_shared<goro::wait_group>();
        done->add(1);
        goro::go([done, fn] {
          fn();
          done->done();
        });
        return [done] { done->wait(); };
      });
      wg.done();
    });
    wg.wait();
    t.join();
  });
}

BOOST_DATA_TEST_CASE(notify_racing_timeout_never_lost, bdata::make({1, 2, 4}), procs) {
  // Each round: A waits with a short timeout (0..~500 µs), B waits untimed
  // behind it; one notify_one. Exactly one of them must get it: if A reports
  // timeout, B must wake; if A reports no_timeout, B must still be waiting
  // (and then a second notify_one wakes it). Half the rounds A is an OS
  // thread. Nothing may hang.
  const int rounds = 2000 / kScale;
  int lost = 0, doubled = 0, a_timeouts = 0, a_signals = 0, hung = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::condition_variable cv;
    for (int round = 0; round < rounds; ++round) {
      int entered = 0, b_wakeups = 0;  // under mu
      std::atomic<int> a_status{-1};   // 0: timeout, 1: no_timeout
      const auto a_timeout = std::chrono::microseconds(round % 50 * 10);
      goro::wait_group wg;
      wg.add(2);
      auto a = [&] {
        std::unique_lock lk(mu);
        ++entered;
        const std::cv_status st = cv.wait_for(lk, a_timeout);
        a_status = st == std::cv_status::timeout ? 0 : 1;
        lk.unlock();
        wg.done();
      };
      std::thread at;
      if (round % 2 == 1) {
        at = std::thread(a);
      } else {
        goro::go(a);
      }
      if (!eventually_locked(mu, [&] { return entered == 1; })) ++hung;
      goro::go([&] {
        std::unique_lock lk(mu);
        ++entered;
        cv.wait(lk);
        ++b_wakeups;
        lk.unlock();
        wg.done();
      });
      if (!eventually_locked(mu, [&] { return entered == 2; })) ++hung;
      cv.notify_one();
      if (!eventually([&] { return a_status.load() != -1; })) ++hung;
      if (a_status.load() == 0) {
        ++a_timeouts;
        if (!eventually_locked(mu, [&] { return b_wakeups == 1; })) {
          ++lost;
          cv.notify_all();
        }
      } else {
        ++a_signals;
        {
          std::lock_guard lk(mu);
          if (b_wakeups != 0) ++doubled;
        }
        cv.notify_one();
        if (!eventually_locked(mu, [&] { return b_wakeups == 1; })) {
          ++lost;
          cv.notify_all();
        }
      }
      wg.wait();
      if (at.joinable()) at.join();
      if (hung + lost > 0) break;  // report, don't pile up
    }
  });
  BOOST_TEST(hung == 0);
  BOOST_TEST(lost == 0);
  BOOST_TEST(doubled == 0);
  BOOST_TEST_MESSAGE("notify vs timeout: A timed out " << a_timeouts << ", A notified "
                                                       << a_signals);
  BOOST_TEST(a_timeouts + a_signals == rounds);
}

// ---- misuse ------------------------------------------------------------------

namespace {

void check_unowned_lock_throws() {
  goro::mutex mu;
  goro::condition_variable cv;
  std::unique_lock<goro::mutex> lk(mu, std::defer_lock);
  BOOST_CHECK_THROW(cv.wait(lk), std::logic_error);
  BOOST_CHECK_THROW(cv.wait(lk, [] { return false; }), std::logic_error);
  BOOST_CHECK_THROW(cv.wait_for(lk, 10ms), std::logic_error);
  BOOST_CHECK_THROW(cv.wait_for(lk, 0ms), std::logic_error);
  BOOST_CHECK_THROW(cv.wait_until(lk, steady::now() + 10ms), std::logic_error);
  std::unique_lock<goro::mutex> none;  // no mutex at all
  BOOST_CHECK_THROW(cv.wait(none), std::logic_error);
  // Nothing was left behind: the mutex is free, the cv has no stale waiter.
  BOOST_TEST(mu.try_lock());
  mu.unlock();
  lk.lock();
  BOOST_TEST((cv.wait_for(lk, 1ms) == std::cv_status::timeout));
  BOOST_TEST(lk.owns_lock());
  cv.notify_all();
}

}  // namespace

BOOST_AUTO_TEST_CASE(wait_with_unowned_lock_throws) {
  check_unowned_lock_throws();
  goro::run({.maxprocs = 2}, [] { check_unowned_lock_throws(); });
}

// ---- fibers and OS threads -----------------------------------------------------

BOOST_DATA_TEST_CASE(os_thread_waits_fiber_notifies, bdata::make({1, 2, 4}), procs) {
  bool thread_saw_ready = false, fiber_saw_ready = false;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::condition_variable cv;
    bool ready = false, ready2 = false;
    int entered = 0;
    goro::wait_group wg;

    // An OS thread waits; a fiber notifies.
    wg.add(1);
    std::thread t([&] {
      std::unique_lock lk(mu);
      ++entered;
      cv.wait(lk, [&] { return ready; });
      thread_saw_ready = ready;
      lk.unlock();
      wg.done();
    });
    eventually_locked(mu, [&] { return entered == 1; });
    goro::go([&] {
      {
        std::lock_guard lk(mu);
        ready = true;
      }
      cv.notify_one();
    });
    wg.wait();
    t.join();

    // A fiber waits; an OS thread notifies.
    wg.add(1);
    goro::go([&] {
      std::unique_lock lk(mu);
      ++entered;
      cv.wait(lk, [&] { return ready2; });
      fiber_saw_ready = ready2;
      lk.unlock();
      wg.done();
    });
    eventually_locked(mu, [&] { return entered == 2; });
    std::thread n([&] {
      std::this_thread::sleep_for(5ms);
      {
        std::lock_guard lk(mu);
        ready2 = true;
      }
      cv.notify_all();
    });
    wg.wait();
    n.join();
  });
  BOOST_TEST(thread_saw_ready);
  BOOST_TEST(fiber_saw_ready);
}

BOOST_DATA_TEST_CASE(fibers_and_threads_ping_pong, bdata::make({1, 2, 4}), procs) {
  // A fiber and an OS thread take turns through one cv, many times.
  const int turns = 2000 / kScale;
  int last = -1;
  bool order_ok = true;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    goro::condition_variable cv;
    int turn = 0;  // even: the fiber's move, odd: the thread's
    goro::wait_group wg;
    wg.add(2);
    auto player = [&](int parity) {
      for (;;) {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return turn % 2 == parity || turn >= turns; });
        if (turn >= turns) break;
        if (turn % 2 != parity) order_ok = false;
        ++turn;
        lk.unlock();
        cv.notify_one();
      }
      wg.done();
    };
    std::thread t(player, 1);
    goro::go(player, 0);
    wg.wait();
    t.join();
    last = turn;
  });
  BOOST_TEST(order_ok);
  BOOST_TEST(last == turns);
}

// ---- lifetime ------------------------------------------------------------------

BOOST_DATA_TEST_CASE(destroy_right_after_notify_all, bdata::make(kProcs), procs) {
  // The cv is deleted right after notify_all, while the waiters it woke are
  // still leaving wait() (timed waiters disarm their deadlines too). Every
  // fourth round one waiter is an OS thread, and every third round the
  // notify-and-delete happens on an OS thread. ASan reports any access after
  // the delete.
  const int rounds = 600 / kScale;
  const int fibers = 6;
  int released = 0;
  goro::run({.maxprocs = procs}, [&] {
    goro::mutex mu;
    std::atomic<int> out{0};
    for (int round = 0; round < rounds; ++round) {
      auto* cv = new goro::condition_variable;
      int entered = 0;
      bool go_flag = false;
      const bool thread_waiter = round % 4 == 0;
      const int waiters = fibers + (thread_waiter ? 1 : 0);
      goro::wait_group wg;
      wg.add(waiters);
      auto waiter = [&, cv](int i) {
        std::unique_lock lk(mu);
        ++entered;
        if (i % 2 == 0) {
          cv->wait(lk, [&] { return go_flag; });
        } else {
          cv->wait_for(lk, 20s, [&] { return go_flag; });
        }
        if (go_flag) out.fetch_add(1);
        lk.unlock();
        wg.done();
      };
      std::thread tw;
      if (thread_waiter) tw = std::thread(waiter, round / 4);
      for (int i = 0; i < fibers; ++i) goro::go(waiter, i);
      eventually_locked(mu, [&] { return entered == waiters; });
      auto notify_and_delete = [&, cv] {
        if (round % 2 == 0) {
          std::lock_guard lk(mu);
          go_flag = true;
          cv->notify_all();  // under the mutex
        } else {
          {
            std::lock_guard lk(mu);
            go_flag = true;
          }
          cv->notify_all();
        }
        delete cv;
      };
      if (round % 3 == 0) {
        // Park meanwhile (not join at once): with one worker, the woken fibers
        // must run for the destructor to return.
        goro::wait_group nd;
        nd.add(1);
        std::thread t([&] {
          notify_and_delete();
          nd.done();
        });
        nd.wait();
        t.join();
      } else {
        notify_and_delete();
      }
      wg.wait();
      if (tw.joinable()) tw.join();
    }
    released = out.load();
  });
  int expected = 0;
  for (int round = 0; round < rounds; ++round) expected += fibers + (round % 4 == 0 ? 1 : 0);
  BOOST_TEST(released == expected);
}
