// Conformance tests for goro::select (Go's select semantics).
#define BOOST_TEST_MODULE select
#include <atomic>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;

BOOST_AUTO_TEST_CASE(default_when_nothing_ready) {
  auto c = goro::make_chan<int>();
  goro::chan<int> nil;
  bool ran_default = false;
  std::size_t i = goro::select(goro::on_recv(c), goro::on_send(c, 1), goro::on_recv(nil),
                               goro::on_default([&] { ran_default = true; }));
  BOOST_TEST(i == 3u);
  BOOST_TEST(ran_default);
  BOOST_TEST(goro::select(goro::on_default()) == 0u);
}

BOOST_AUTO_TEST_CASE(ready_cases_and_handlers) {
  auto c = goro::make_chan<int>(1);
  int sent = 0;
  BOOST_TEST(goro::select(goro::on_send(c, 5, [&] { ++sent; }), goro::on_default()) == 0u);
  BOOST_TEST(sent == 1);
  std::optional<int> got;
  BOOST_TEST(goro::select(goro::on_recv(c, [&](std::optional<int> v) { got = v; }),
                          goro::on_default()) == 0u);
  BOOST_TEST((got == std::optional<int>(5)));
  c.close();
  got = 7;
  BOOST_TEST(goro::select(goro::on_recv(c, [&](std::optional<int> v) { got = v; })) == 0u);
  BOOST_TEST(!got.has_value());  // closed: ready with nullopt
  BOOST_CHECK_THROW(goro::select(goro::on_send(c, 1), goro::on_default()), goro::channel_closed);
  auto v = goro::make_chan<void>(1);
  bool ok = false;
  BOOST_TEST(goro::select(goro::on_send(v), goro::on_default()) == 0u);
  BOOST_TEST(goro::select(goro::on_recv(v, [&](bool b) { ok = b; })) == 0u);
  BOOST_TEST(ok);
}

BOOST_AUTO_TEST_CASE(default_never_taken_when_a_case_is_ready) {
  auto c = goro::make_chan<int>(1);
  for (int i = 0; i < 10000; ++i) {
    BOOST_TEST_REQUIRE(c.try_send(i));
    BOOST_TEST_REQUIRE(goro::select(goro::on_recv(c), goro::on_default()) == 0u);
  }
}

BOOST_AUTO_TEST_CASE(fairness_uniform_choice) {
  // Two always-ready cases: over 10,000 trials each wins 5000 ± 500.
  auto a = goro::make_chan<int>(1), b = goro::make_chan<int>(1);
  int wins[2] = {0, 0};
  for (int i = 0; i < 10000; ++i) {
    a.try_send(1);
    b.try_send(1);
    std::size_t k = goro::select(goro::on_recv(a), goro::on_recv(b));
    ++wins[k == 0 ? 0 : 1];
    // Drain the other so both are ready again next time.
    (void)goro::select(goro::on_recv(k == 0 ? b : a), goro::on_default());
  }
  BOOST_TEST(wins[0] >= 4500);
  BOOST_TEST(wins[0] <= 5500);
}

BOOST_AUTO_TEST_CASE(same_channel_twice_and_runtime_sized) {
  auto c = goro::make_chan<int>(2);
  c.try_send(1);
  std::vector<goro::select_case> cases;
  cases.emplace_back(goro::on_recv(c));
  cases.emplace_back(goro::on_recv(c));
  cases.emplace_back(goro::on_default());
  BOOST_TEST(goro::select(cases) < 2u);
  BOOST_TEST(goro::select(cases) == 2u);  // drained: default
  std::vector<goro::select_case> two_defaults;
  two_defaults.emplace_back(goro::on_default());
  two_defaults.emplace_back(goro::on_default());
  BOOST_CHECK_THROW(goro::select(two_defaults), std::invalid_argument);
}

BOOST_DATA_TEST_CASE(never_pairs_with_itself, bdata::make(kProcs), procs) {
  // A select with a send and a receive on the same unbuffered channel must
  // not complete on its own: only the other fiber can pair with it.
  goro::run({.maxprocs = procs}, [] {
    auto c = goro::make_chan<int>();
    auto done = goro::make_chan<void>();
    std::atomic<bool> paired_with_other{false};
    goro::go([=, &paired_with_other] {
      auto v = c.recv();
      paired_with_other = v.has_value() && *v == 42;
      done.close();
    });
    std::size_t k = goro::select(goro::on_send(c, 42), goro::on_recv(c));
    BOOST_TEST(k == 0u);
    done.recv();
    BOOST_TEST(paired_with_other.load());
  });
}

BOOST_DATA_TEST_CASE(double_commit_detection, bdata::make(kProcs), procs) {
  // Go's test/chan/doubleselect: 4 senders select-send each value to one of
  // 4 channels; 4 receivers; every value received exactly once.
  goro::run({.maxprocs = procs}, [] {
    constexpr int kIters = 20000;
    goro::chan<int> cs[4] = {goro::make_chan<int>(), goro::make_chan<int>(), goro::make_chan<int>(),
                             goro::make_chan<int>()};
    std::vector<std::atomic<int>> seen(kIters);
    goro::wait_group senders, receivers;
    senders.add(1);
    goro::go([&] {
      for (int i = 0; i < kIters; ++i) {
        goro::select(goro::on_send(cs[0], i), goro::on_send(cs[1], i), goro::on_send(cs[2], i),
                     goro::on_send(cs[3], i));
      }
      senders.done();
    });
    for (auto& c : cs) {
      receivers.add(1);
      goro::go([&, c] {
        for (auto& v : c) seen[static_cast<std::size_t>(v)].fetch_add(1);
        receivers.done();
      });
    }
    senders.wait();
    for (auto& c : cs) c.close();
    receivers.wait();
    int bad = 0;
    for (auto& n : seen) bad += n.load() != 1;
    BOOST_TEST(bad == 0);
  });
}

BOOST_DATA_TEST_CASE(losing_cases_leave_no_stale_waiters, bdata::make(kProcs), procs) {
  // Go issue 2075: a select blocked on a and b, woken by a, must not leave a
  // waiter on b that would swallow a later value.
  goro::run({.maxprocs = procs}, [] {
    auto a = goro::make_chan<int>(), b = goro::make_chan<int>();
    for (int round = 0; round < 1000; ++round) {
      auto got = goro::make_chan<int>(1);
      goro::go([=] {
        int v = -1;
        goro::select(goro::on_recv(a, [&](std::optional<int> x) { v = *x; }),
                     goro::on_recv(b, [&](std::optional<int> x) { v = *x; }));
        got.send(v);
      });
      a.send(round);
      BOOST_TEST_REQUIRE(*got.recv() == round);
      // b must have no receiver now.
      BOOST_TEST_REQUIRE(!b.try_send(1));
    }
  });
}

BOOST_DATA_TEST_CASE(select_stress_mixed_capacities, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    constexpr int kPer = 5000;
    auto c0 = goro::make_chan<int>(), c1 = goro::make_chan<int>(1), c2 = goro::make_chan<int>(16);
    std::atomic<long> sum{0};
    std::atomic<int> count{0};
    goro::wait_group senders, receivers;
    for (int s = 0; s < 4; ++s) {
      senders.add(1);
      goro::go([&, s] {
        for (int i = 0; i < kPer; ++i) {
          int v = s * kPer + i;
          goro::select(goro::on_send(c0, v), goro::on_send(c1, v), goro::on_send(c2, v));
        }
        senders.done();
      });
    }
    auto stop = goro::make_chan<void>();
    for (int r = 0; r < 4; ++r) {
      receivers.add(1);
      goro::go([&, stop] {
        bool open = true;
        while (open) {
          auto take = [&](std::optional<int> v) {
            if (v) {
              sum.fetch_add(*v);
              count.fetch_add(1);
            }
          };
          goro::select(goro::on_recv(c0, take), goro::on_recv(c1, take), goro::on_recv(c2, take),
                       goro::on_recv(stop, [&] { open = false; }));
        }
        receivers.done();
      });
    }
    senders.wait();
    while (count.load() < 4 * kPer) goro::yield();
    stop.close();
    receivers.wait();
    constexpr long n = 4L * kPer;
    BOOST_TEST(count.load() == n);
    BOOST_TEST(sum.load() == n * (n - 1) / 2);
  });
}

BOOST_AUTO_TEST_CASE(empty_select_blocks_until_unwound) {
  std::atomic<int> reached{0};
  goro::run({.maxprocs = 1}, [&] {
    goro::go([&] {
      reached = 1;
      goro::select();
      reached = 2;
    });
    goro::yield();
  });
  BOOST_TEST(reached.load() == 1);
}

BOOST_DATA_TEST_CASE(os_thread_select, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto a = goro::make_chan<int>(), b = goro::make_chan<int>();
    std::thread t([=] {
      int got = 0;
      for (int i = 0; i < 200; ++i) {
        goro::select(goro::on_recv(a, [&](std::optional<int>) { ++got; }),
                     goro::on_recv(b, [&](std::optional<int>) { ++got; }));
      }
      a.close();
      (void)got;
    });
    for (int i = 0; i < 100; ++i) {
      a.send(i);
      b.send(i);
    }
    BOOST_TEST(!a.recv().has_value());  // the thread closed it after 200
    t.join();
  });
}

// The lock-free "would block" check of non-blocking operations must not
// miss a parked partner. Each loop below retries until the operation
// succeeds, so a check that wrongly said "would block" hangs the test.
BOOST_AUTO_TEST_CASE(nonblocking_ops_see_parked_partners) {
  goro::run({.maxprocs = 2}, [] {
    // Unbuffered, a sender parked: a non-blocking receive takes its value.
    auto c = goro::make_chan<int>();
    goro::go([c] { c.send(7); });
    std::optional<int> got;
    while (goro::select(goro::on_recv(c, [&](std::optional<int> v) { got = v; }),
                        goro::on_default()) == 1) {
      goro::yield();
    }
    BOOST_TEST((got.has_value() && *got == 7));
    for (std::size_t cap : {0, 1, 3}) {
      // A receiver parked on an empty channel: try_send hands the value over.
      auto u = goro::make_chan<int>(cap);
      goro::wait_group wg;
      wg.add(1);
      goro::go([&] {
        BOOST_TEST(*u.recv() == 5);
        wg.done();
      });
      while (!u.try_send(5)) goro::yield();
      wg.wait();
      if (cap == 0) continue;
      // Full, with a sender parked: try_send fails, receives keep FIFO order.
      auto f = goro::make_chan<int>(cap);
      for (std::size_t i = 0; i < cap; ++i) f.send(static_cast<int>(i));
      goro::wait_group sent;
      sent.add(1);
      goro::go([&] {
        f.send(100);
        sent.done();
      });
      BOOST_TEST(!f.try_send(200));
      for (std::size_t i = 0; i < cap; ++i) BOOST_TEST(*f.recv() == static_cast<int>(i));
      BOOST_TEST(*f.recv() == 100);
      sent.wait();
    }
  });
}

// Plain operations and selects mixed on the same buffered channels (whose
// plain operations take the lock-free fast path): every value is received
// exactly once, whichever side used which form.
BOOST_DATA_TEST_CASE(plain_and_select_mixed_exactly_once, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    constexpr int kSenders = 4, kPer = 4000;
    auto a = goro::make_chan<int>(1), b = goro::make_chan<int>(8);
    std::vector<std::atomic<int>> seen(kSenders * kPer);
    goro::wait_group senders, receivers;
    senders.add(kSenders);
    for (int s = 0; s < kSenders; ++s) {
      goro::go([&, s] {
        for (int i = 0; i < kPer; ++i) {
          const int v = s * kPer + i;
          if (s % 2 == 0) {
            (i % 2 == 0 ? a : b).send(v);
          } else {
            goro::select(goro::on_send(a, v), goro::on_send(b, v));
          }
        }
        senders.done();
      });
    }
    auto stop = goro::make_chan<void>();
    receivers.add(4);
    for (int r = 0; r < 4; ++r) {
      goro::go([&, r, stop] {
        auto take = [&](std::optional<int> v) {
          if (v) seen[static_cast<std::size_t>(*v)].fetch_add(1);
        };
        for (bool open = true; open;) {
          if (r % 2 == 0) {
            // Plain receives, non-blocking so the stop channel is seen.
            if (goro::select(goro::on_recv(a, take), goro::on_default()) == 0) continue;
            if (goro::select(goro::on_recv(b, take), goro::on_default()) == 0) continue;
            if (goro::select(goro::on_recv(stop), goro::on_default()) == 0) open = false;
            goro::yield();
          } else {
            goro::select(goro::on_recv(a, take), goro::on_recv(b, take),
                         goro::on_recv(stop, [&] { open = false; }));
          }
        }
        receivers.done();
      });
    }
    senders.wait();
    auto all_seen = [&] {
      for (auto& n : seen) {
        if (n.load() == 0) return false;
      }
      return true;
    };
    while (!all_seen()) goro::yield();
    stop.close();
    receivers.wait();
    int bad = 0;
    for (auto& n : seen) bad += n.load() != 1;
    BOOST_TEST(bad == 0);
    BOOST_TEST(a.size() == 0u);
    BOOST_TEST(b.size() == 0u);
  });
}

// A select_case holds its own channel handle even when made from a channel
// variable (the variadic select borrows the variable instead): the case
// outlives the variable here. Under ASan a borrowed handle is a
// use-after-scope; without it, the channel would be gone.
BOOST_AUTO_TEST_CASE(select_case_owns_its_channel) {
  std::vector<goro::select_case> cases;
  std::optional<int> got;
  {
    auto c = goro::make_chan<int>(1);
    BOOST_TEST_REQUIRE(c.try_send(5));
    cases.emplace_back(goro::on_recv(c, [&](std::optional<int> v) { got = v; }));
    auto s = goro::make_chan<int>(1);
    cases.emplace_back(goro::on_send(s, 7));
    BOOST_TEST_REQUIRE(s.try_send(1));  // full: the send case cannot commit
  }
  BOOST_TEST(goro::select(cases) == 0u);
  BOOST_TEST((got == std::optional<int>(5)));
}

// A case made from a temporary handle keeps its channel alive for the
// select, and a case made from a variable sees the channel the variable
// holds when the select starts (Go evaluates the channel operands then).
BOOST_AUTO_TEST_CASE(select_case_handles_temporaries_and_variables) {
  auto make_ready = [] {
    auto c = goro::make_chan<int>(1);
    c.try_send(9);
    return c;
  };
  int seen = 0;
  BOOST_TEST(goro::select(goro::on_recv(make_ready(), [&](std::optional<int> v) { seen = *v; }),
                          goro::on_default()) == 0u);
  BOOST_TEST(seen == 9);
  goro::chan<int> var;  // nil
  auto ready = make_ready();
  var = ready;
  BOOST_TEST(goro::select(goro::on_recv(var), goro::on_default()) == 0u);
  BOOST_TEST(ready.size() == 0u);
}

// One case and a default: the inline "would block" check in select() must
// agree with the channel's own rules for every kind of channel.
namespace {
struct throwing_move {  // a buffered channel of it uses the locked buffer
  int v = 0;
  explicit throwing_move(int x) : v(x) {}
  throwing_move(const throwing_move&) = default;
  throwing_move(throwing_move&& o) noexcept(false) : v(o.v) {}
  throwing_move& operator=(const throwing_move&) = default;
};
}  // namespace

BOOST_AUTO_TEST_CASE(one_case_with_default_fast_path) {
  goro::run({.maxprocs = 2}, [] {
    auto nb_recv = [](const goro::chan<int>& c, std::optional<int>* got) {
      return goro::select(goro::on_recv(c, [&](std::optional<int> v) { *got = v; }),
                          goro::on_default());
    };
    std::optional<int> got;
    // Lock-free ring (int), locked buffer (a type whose move may throw),
    // unbuffered: empty -> default; a value -> the case.
    auto ring = goro::make_chan<int>(2);
    BOOST_TEST(nb_recv(ring, &got) == 1u);
    ring.try_send(4);
    BOOST_TEST(nb_recv(ring, &got) == 0u);
    BOOST_TEST((got == std::optional<int>(4)));
    auto locked = goro::make_chan<throwing_move>(1);
    BOOST_TEST(goro::select(goro::on_recv(locked), goro::on_default()) == 1u);
    BOOST_TEST(goro::select(goro::on_send(locked, throwing_move(3)), goro::on_default()) == 0u);
    BOOST_TEST(goro::select(goro::on_send(locked, throwing_move(4)), goro::on_default()) == 1u);
    std::optional<throwing_move> tm;
    BOOST_TEST(goro::select(goro::on_recv(locked, [&](std::optional<throwing_move> v) { tm = v; }),
                            goro::on_default()) == 0u);
    BOOST_TEST((tm.has_value() && tm->v == 3));
    // Full ring: a send takes the default; with room it commits.
    ring.try_send(1);
    ring.try_send(2);
    BOOST_TEST(goro::select(goro::on_send(ring, 3), goro::on_default()) == 1u);
    (void)ring.recv();
    BOOST_TEST(goro::select(goro::on_default(), goro::on_send(ring, 3)) == 1u);
    // Closed and drained: the receive is ready (nullopt), never the default;
    // a send throws.
    auto closed = goro::make_chan<int>(1);
    closed.close();
    got = 7;
    BOOST_TEST(nb_recv(closed, &got) == 0u);
    BOOST_TEST(!got.has_value());
    BOOST_CHECK_THROW(goro::select(goro::on_send(closed, 1), goro::on_default()),
                      goro::channel_closed);
    auto unbuf = goro::make_chan<int>();
    unbuf.close();
    BOOST_TEST(nb_recv(unbuf, &got) == 0u);
    // Unbuffered with a parked receiver: the send commits; with none, default.
    auto rv = goro::make_chan<int>();
    BOOST_TEST(goro::select(goro::on_send(rv, 1), goro::on_default()) == 1u);
    goro::chan<int> done = goro::make_chan<int>(1);
    goro::go([rv, done] { done.send(*rv.recv()); });
    while (goro::select(goro::on_send(rv, 9), goro::on_default()) != 0u) goro::yield();
    BOOST_TEST(*done.recv() == 9);
    // Unbuffered with a parked sender: the receive commits.
    goro::go([rv] { rv.send(5); });
    got.reset();
    while (nb_recv(rv, &got) != 0u) goro::yield();
    BOOST_TEST((got == std::optional<int>(5)));
    // Nil: always the default.
    goro::chan<int> nil;
    BOOST_TEST(nb_recv(nil, &got) == 1u);
    BOOST_TEST(goro::select(goro::on_send(nil, 1), goro::on_default()) == 1u);
  });
}

// A channel's queue of waiters is an array with nulls where waiters left
// (chan.cpp, waitq). Selects woken by their other case leave it in random
// order, enough of them to compact it; sends then take waiters from its head
// until the consumed prefix is dropped; more leave; and every one still
// queued must get exactly one of as many sends (a send that finds no
// receiver times out: a waiter lost from the queue fails the test). Three
// rounds on one channel: the queue empties and starts over between them.
BOOST_DATA_TEST_CASE(waiters_leaving_in_random_order_keep_the_queue_exact, bdata::make(kProcs),
                     procs) {
  goro::run({.maxprocs = procs}, [] {
    // Under a sanitizer fewer (still enough to compact and drop a prefix).
    constexpr int kFibers = goro_test::kSanitized ? 800 : 2000;
    constexpr int kLeave = kFibers * 3 / 4;
    auto c = goro::make_chan<int>();
    std::uint64_t x = 88172645463325252ULL;
    for (int round = 0; round < 3; ++round) {
      std::vector<goro::chan<int>> own;
      for (int i = 0; i < kFibers; ++i) own.push_back(goro::make_chan<int>());
      std::vector<std::atomic<int>> got(kFibers - kLeave);  // receipts of each value
      std::atomic<int> left{0}, received{0}, started{0};
      std::vector<std::atomic<bool>> done(kFibers);
      goro::wait_group wg;
      wg.add(kFibers);
      for (int i = 0; i < kFibers; ++i) {
        goro::go([&, i] {
          started.fetch_add(1);
          goro::select(goro::on_recv(c,
                                     [&](std::optional<int> v) {
                                       got[static_cast<std::size_t>(*v)].fetch_add(1);
                                       done[static_cast<std::size_t>(i)] = true;
                                       received.fetch_add(1);
                                     }),
                       goro::on_recv(own[static_cast<std::size_t>(i)], [&](std::optional<int>) {
                         done[static_cast<std::size_t>(i)] = true;
                         left.fetch_add(1);
                       }));
          wg.done();
        });
      }
      BOOST_TEST_REQUIRE(goro_test::eventually([&] { return started.load() == kFibers; }));
      goro::sleep_for(std::chrono::milliseconds(20));  // let them park
      std::vector<int> order(kFibers);
      for (int i = 0; i < kFibers; ++i) order[static_cast<std::size_t>(i)] = i;
      for (int i = kFibers - 1; i > 0; --i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::swap(order[static_cast<std::size_t>(i)], order[x % static_cast<std::uint64_t>(i + 1)]);
      }
      for (int k = 0; k < kLeave; ++k)
        own[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])].close();
      BOOST_TEST_REQUIRE(goro_test::eventually([&] { return left.load() == kLeave; }));
      auto send = [&](int v) {
        auto [ctx, cancel] =
            goro::with_timeout(goro::context::background(), std::chrono::seconds(10));
        BOOST_TEST_REQUIRE(c.send(ctx, v).ok());
        cancel();
      };
      constexpr int kRest = kFibers - kLeave;  // 500 still queued
      int v = 0;
      for (; v < kRest * 3 / 5; ++v) send(v);
      BOOST_TEST_REQUIRE(goro_test::eventually([&] { return received.load() == v; }));
      int more = 0;  // of those still queued, some leave too
      for (int i = 0; i < kFibers && more < kRest / 5; ++i) {
        if (!done[static_cast<std::size_t>(i)].load()) {
          own[static_cast<std::size_t>(i)].close();
          ++more;
        }
      }
      BOOST_TEST_REQUIRE(goro_test::eventually([&] { return left.load() == kLeave + more; }));
      for (; v < kRest - more; ++v) send(v);
      wg.wait();
      BOOST_TEST(received.load() == kRest - more);
      for (int k = 0; k < v; ++k) BOOST_TEST_REQUIRE(got[static_cast<std::size_t>(k)].load() == 1);
      BOOST_TEST(!c.try_send(1));  // nobody is left waiting on it
    }
  });
}
