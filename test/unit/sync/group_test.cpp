// Unit tests for goro::group (errgroup): results, the first error and its
// cancellation, exceptions, the concurrency limit, and the destructor.
#define BOOST_TEST_MODULE group
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
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
namespace group_test {

using goro_test::kSlow;

using goro_test::eventually;

void update_max(std::atomic<int>& m, int v) {
  int cur = m.load();
  while (v > cur && !m.compare_exchange_weak(cur, v)) {
  }
}

}  // namespace group_test

using namespace group_test;

// ---- results ----------------------------------------------------------------

BOOST_DATA_TEST_CASE(wait_returns_ok_when_all_succeed, bdata::make(kProcs), np) {
  constexpr int kTasks = 100;
  std::vector<std::atomic<int>> runs(kTasks);
  std::vector<int> seen;  // snapshot taken as soon as wait() returns
  absl::Status st = absl::UnknownError("not waited");
  bool cancelled_before_wait = true;
  goro::run(procs(np), [&] {
    goro::group g;
    for (int i = 0; i < kTasks; ++i) {
      if (i % 2 == 0) {
        g.go([&runs, i] {
          runs[i].fetch_add(1);
          if (i % 4 == 0) goro::sleep_for(1ms);
        });
      } else {
        g.go([&runs, i]() -> absl::Status {
          goro::yield();
          runs[i].fetch_add(1);
          return absl::OkStatus();
        });
      }
    }
    cancelled_before_wait = !g.ctx().err().ok();
    st = g.wait();
    for (auto& r : runs) seen.push_back(r.load());
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(!cancelled_before_wait);
  BOOST_TEST_REQUIRE(seen.size() == static_cast<std::size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) BOOST_TEST(seen[i] == 1, "task " << i);
}

BOOST_AUTO_TEST_CASE(empty_group_waits_at_once) {
  goro::group g;
  BOOST_TEST(g.ctx().err().ok());
  BOOST_TEST(g.wait().ok());  // no runtime needed: nothing to wait for
  BOOST_TEST(absl::IsCancelled(g.ctx().err()));
}

BOOST_AUTO_TEST_CASE(ctx_cancelled_after_wait_without_error) {
  absl::Status st, err_before, err_after, cause_after;
  goro::run(procs(2), [&] {
    goro::group g;
    g.go([] {});
    g.go([]() -> absl::Status { return absl::OkStatus(); });
    goro::sleep_for(5ms);  // let them finish: success cancels nothing
    err_before = g.ctx().err();
    st = g.wait();
    err_after = g.ctx().err();
    cause_after = g.ctx().cause();
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(err_before.ok());
  BOOST_TEST(absl::IsCancelled(err_after));
  BOOST_TEST(absl::IsCancelled(cause_after));
}

// ---- errors -----------------------------------------------------------------

BOOST_DATA_TEST_CASE(first_error_is_returned_and_cancels_ctx, bdata::make(kProcs), np) {
  // Ten fibers block on ctx().done(), ten sleep on ctx(), all for at most
  // 20 s; the one that fails is the only way they end early. Their own later
  // errors are dropped.
  absl::Status st, cause, err;
  std::atomic<int> saw_done{0}, saw_cause{0}, sleep_cut{0};
  double ms = -1;
  goro::run(procs(np), [&] {
    goro::group g;
    for (int i = 0; i < 10; ++i) {
      g.go([&]() -> absl::Status {
        // Receiving from done() ends with false (closed), unless 20 s pass.
        bool closed = false;
        goro::select(goro::on_recv(g.ctx().done(), [&](bool ok) { closed = !ok; }),
                     goro::on_recv(goro::after(20s)));
        if (closed) saw_done.fetch_add(1);
        const absl::Status c = g.ctx().cause();
        if (absl::IsNotFound(c) && c.message() == "first") saw_cause.fetch_add(1);
        return absl::InternalError("later");
      });
      g.go([&]() -> absl::Status {
        absl::Status s = goro::sleep_for(g.ctx(), 20s);
        if (absl::IsCancelled(s)) sleep_cut.fetch_add(1);
        return s;
      });
    }
    const auto t0 = goro::clock::now();
    g.go([]() -> absl::Status {
      goro::sleep_for(5ms);
      return absl::NotFoundError("first");
    });
    st = g.wait();
    ms = ms_since(t0);
    cause = g.ctx().cause();
    err = g.ctx().err();
  });
  BOOST_TEST(absl::IsNotFound(st));
  BOOST_TEST(st.message() == "first");
  BOOST_TEST(saw_done.load() == 10);
  BOOST_TEST(saw_cause.load() == 10);
  BOOST_TEST(sleep_cut.load() == 10);
  BOOST_TEST(ms < 5000);  // the 20 s waits were cut short
  BOOST_TEST(absl::IsCancelled(err));
  BOOST_TEST((cause == absl::NotFoundError("first")));
}

BOOST_AUTO_TEST_CASE(error_cancels_ctx_before_wait_is_called) {
  // ctx() is cancelled by the failure itself, not by wait().
  bool cancelled = false;
  absl::Status cause, st;
  goro::run(procs(2), [&] {
    goro::group g;
    g.go([]() -> absl::Status { return absl::PermissionDeniedError("no"); });
    cancelled = eventually([&] { return !g.ctx().err().ok(); }, 1000ms);
    cause = g.ctx().cause();
    st = g.wait();
  });
  BOOST_TEST(cancelled);
  BOOST_TEST(absl::IsPermissionDenied(cause));
  BOOST_TEST(absl::IsPermissionDenied(st));
}

BOOST_DATA_TEST_CASE(racing_errors_report_one_consistently, bdata::make(kProcs), np) {
  // Eight fibers fail at once with distinct messages: wait() returns one of
  // them, and it is the one ctx() was cancelled with.
  constexpr int kFailers = 8;
  const int rounds = 200 / kSlow;
  int mismatches = 0, not_aborted = 0;
  goro::run(procs(np), [&] {
    for (int r = 0; r < rounds; ++r) {
      goro::group g;
      std::atomic<int> ready{0};
      for (int i = 0; i < kFailers; ++i) {
        g.go([&, i]() -> absl::Status {
          ready.fetch_add(1);
          while (ready.load() < kFailers) goro::yield();
          return absl::AbortedError(std::to_string(i));
        });
      }
      const absl::Status st = g.wait();
      if (!absl::IsAborted(st)) ++not_aborted;
      if (!(g.ctx().cause() == st)) ++mismatches;
    }
  });
  BOOST_TEST(not_aborted == 0);
  BOOST_TEST(mismatches == 0);
}

BOOST_DATA_TEST_CASE(parent_cancellation_cancels_group, bdata::make(kProcs), np) {
  absl::Status st, err_before, err_after;
  std::atomic<int> saw{0};
  double ms = -1;
  goro::run(procs(np), [&] {
    auto [parent, cancel] = goro::with_cancel(goro::context::background());
    goro::group g(parent);
    g.go([&]() -> absl::Status { return goro::sleep_for(g.ctx(), 60s); });
    g.go([&] {
      g.ctx().done().recv();
      saw.fetch_add(1);
    });
    goro::sleep_for(5ms);
    err_before = g.ctx().err();
    const auto t0 = goro::clock::now();
    cancel();
    st = g.wait();  // the sleeper's Cancelled is the group's error
    ms = ms_since(t0);
    err_after = g.ctx().err();
  });
  BOOST_TEST(err_before.ok());
  BOOST_TEST(absl::IsCancelled(st));
  BOOST_TEST(absl::IsCancelled(err_after));
  BOOST_TEST(saw.load() == 1);
  BOOST_TEST(ms < 5000);
}

BOOST_AUTO_TEST_CASE(group_of_ended_parent_starts_cancelled) {
  auto [parent, cancel] = goro::with_cancel(goro::context::background());
  cancel();
  goro::group g(parent);
  BOOST_TEST(absl::IsCancelled(g.ctx().err()));
  BOOST_TEST(g.wait().ok());  // no fiber failed
}

// ---- exceptions -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(exception_is_rethrown_by_wait) {
  bool caught = false;
  std::string what;
  absl::Status cause;
  std::atomic<int> others{0};
  goro::run(procs(2), [&] {
    goro::group g;
    for (int i = 0; i < 5; ++i) {
      g.go([&] {
        g.ctx().done().recv();  // ended by the exception
        others.fetch_add(1);
      });
    }
    g.go([] {
      goro::sleep_for(2ms);
      throw std::runtime_error("boom");
    });
    try {
      (void)g.wait();
    } catch (const std::runtime_error& e) {
      caught = true;
      what = e.what();
    }
    cause = g.ctx().cause();
  });
  BOOST_TEST(caught);
  BOOST_TEST(what == "boom");
  BOOST_TEST(others.load() == 5);
  BOOST_TEST(!cause.ok());  // the exception cancelled ctx() with a failure
}

BOOST_AUTO_TEST_CASE(non_standard_exception_is_rethrown) {
  int caught = 0;
  goro::run(procs(2), [&] {
    goro::group g;
    g.go([]() -> absl::Status { throw 42; });
    try {
      (void)g.wait();
    } catch (int v) {
      caught = v;
    }
  });
  BOOST_TEST(caught == 42);
}

BOOST_AUTO_TEST_CASE(status_before_exception_wins) {
  absl::Status st;
  bool threw = true;
  goro::run(procs(2), [&] {
    goro::group g;
    g.go([]() -> absl::Status { return absl::AbortedError("first"); });
    g.go([&] {
      g.ctx().done().recv();  // only after the status failure
      throw std::runtime_error("late");
    });
    try {
      st = g.wait();
      threw = false;
    } catch (...) {
    }
  });
  BOOST_TEST(!threw);
  BOOST_TEST(absl::IsAborted(st));
  BOOST_TEST(st.message() == "first");
}

BOOST_AUTO_TEST_CASE(exception_before_status_wins) {
  std::string what;
  absl::Status st = absl::UnknownError("not returned");
  goro::run(procs(2), [&] {
    goro::group g;
    g.go([] { throw std::logic_error("early"); });
    g.go([&]() -> absl::Status {
      g.ctx().done().recv();
      return absl::DataLossError("late");
    });
    try {
      st = g.wait();
    } catch (const std::logic_error& e) {
      what = e.what();
    }
  });
  BOOST_TEST(what == "early");
  BOOST_TEST(absl::IsUnknown(st));  // unchanged: wait() threw
}

// ---- limit ------------------------------------------------------------------

BOOST_DATA_TEST_CASE(limit_bounds_concurrency, bdata::make(kProcs), np) {
  constexpr int kTasks = 200, kLimit = 3;
  std::atomic<int> running{0}, max_running{0}, ran{0};
  absl::Status st;
  goro::run(procs(np), [&] {
    goro::group g;
    g.set_limit(kLimit);
    auto task = [&](int i) {
      update_max(max_running, running.fetch_add(1) + 1);
      if (i % 2 == 0) {
        goro::yield();
        goro::yield();
      } else {
        goro::sleep_for(100us);
      }
      running.fetch_sub(1);
      ran.fetch_add(1);
    };
    for (int i = 0; i < kTasks; ++i) {
      if (i % 4 == 3) {
        while (!g.try_go([&task, i] { task(i); })) goro::yield();
      } else {
        g.go([&task, i] { task(i); });
      }
    }
    st = g.wait();
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(ran.load() == kTasks);
  BOOST_TEST(max_running.load() <= kLimit);
  BOOST_TEST(max_running.load() >= 1);
}

BOOST_DATA_TEST_CASE(go_blocks_while_full, bdata::make(kProcs), np) {
  bool returned_early = true, ran_early = true, returned = false, ran = false;
  absl::Status st;
  goro::run(procs(np), [&] {
    goro::group g;
    g.set_limit(1);
    goro::chan<void> gate = goro::make_chan<void>();
    g.go([gate] { gate.recv(); });
    std::atomic<bool> go_returned{false}, second_ran{false};
    goro::wait_group helper;
    helper.add(1);
    goro::go([&] {
      g.go([&] { second_ran.store(true); });
      go_returned.store(true);
      helper.done();
    });
    goro::sleep_for(30ms);
    returned_early = go_returned.load();
    ran_early = second_ran.load();
    gate.close();
    returned = eventually([&] { return go_returned.load(); }, 1000ms);
    helper.wait();
    st = g.wait();
    ran = second_ran.load();
  });
  BOOST_TEST(!returned_early);
  BOOST_TEST(!ran_early);
  BOOST_TEST(returned);
  BOOST_TEST(ran);
  BOOST_TEST(st.ok());
}

BOOST_AUTO_TEST_CASE(try_go_false_when_full) {
  bool first = false, second = false, third = true, after = false, unlimited = false;
  int extra_when_full = -1, extra_after = -1;
  goro::run(procs(2), [&] {
    goro::group g;
    g.set_limit(2);
    goro::chan<void> gate = goro::make_chan<void>();
    std::atomic<int> extra{0};
    first = g.try_go([gate] { gate.recv(); });
    second = g.try_go([gate] { gate.recv(); });
    third = g.try_go([&] { extra.fetch_add(1); });
    gate.close();
    (void)g.wait();
    extra_when_full = extra.load();  // the refused function never ran
    after = g.try_go([&] { extra.fetch_add(1); });
    (void)g.wait();
    extra_after = extra.load();

    goro::group u;  // no limit: always true
    unlimited = true;
    for (int i = 0; i < 20; ++i) unlimited = u.try_go([gate] { gate.recv(); }) && unlimited;
    (void)u.wait();
  });
  BOOST_TEST(first);
  BOOST_TEST(second);
  BOOST_TEST(!third);
  BOOST_TEST(extra_when_full == 0);
  BOOST_TEST(after);
  BOOST_TEST(extra_after == 1);
  BOOST_TEST(unlimited);
}

BOOST_AUTO_TEST_CASE(set_limit_while_active_throws) {
  bool threw_limited = false, threw_unlimited = false, threw_after = true, limit_applies = false;
  goro::run(procs(2), [&] {
    goro::group g;
    goro::chan<void> gate = goro::make_chan<void>();
    g.go([gate] { gate.recv(); });
    try {
      g.set_limit(2);
    } catch (const std::logic_error&) {
      threw_unlimited = true;
    }
    gate.close();
    (void)g.wait();

    goro::group h;
    h.set_limit(1);
    goro::chan<void> gate2 = goro::make_chan<void>();
    h.go([gate2] { gate2.recv(); });
    try {
      h.set_limit(-1);
    } catch (const std::logic_error&) {
      threw_limited = true;
    }
    // The old limit still holds.
    limit_applies = !h.try_go([] {});
    gate2.close();
    (void)h.wait();
    try {
      h.set_limit(5);  // nothing active any more
      threw_after = false;
    } catch (const std::logic_error&) {
    }
  });
  BOOST_TEST(threw_unlimited);
  BOOST_TEST(threw_limited);
  BOOST_TEST(limit_applies);
  BOOST_TEST(!threw_after);
}

BOOST_AUTO_TEST_CASE(limit_zero_never_starts) {
  std::atomic<int> ran{0};
  bool threw = false, tried = true, ok = false;
  int ran_after = -1;
  goro::run(procs(2), [&] {
    goro::group g;
    g.set_limit(0);
    try {
      g.go([&] { ran.fetch_add(1); });
    } catch (const std::logic_error&) {
      threw = true;
    }
    tried = g.try_go([&] { ran.fetch_add(1); });
    ok = g.wait().ok();
    g.set_limit(-1);
    g.go([&] { ran.fetch_add(1); });
    (void)g.wait();
    ran_after = ran.load();
  });
  BOOST_TEST(threw);
  BOOST_TEST(!tried);
  BOOST_TEST(ok);
  BOOST_TEST(ran_after == 1);  // only the one started after removing the limit
}

BOOST_AUTO_TEST_CASE(negative_limit_is_unlimited) {
  constexpr int kTasks = 50;
  int accepted = 0;
  bool all_started = false;
  goro::run(procs(2), [&] {
    goro::group g;
    g.set_limit(2);
    g.set_limit(-5);  // removes the limit
    goro::chan<void> gate = goro::make_chan<void>();
    std::atomic<int> started{0};
    for (int i = 0; i < kTasks; ++i) {
      // try_go, so that a limit still in force fails instead of hanging.
      if (g.try_go([&, gate] {
            started.fetch_add(1);
            gate.recv();
          })) {
        ++accepted;
      }
    }
    all_started = eventually([&] { return started.load() == accepted; });
    gate.close();
    (void)g.wait();
  });
  BOOST_TEST(accepted == kTasks);
  BOOST_TEST(all_started);
}

BOOST_DATA_TEST_CASE(set_limit_once_idle_never_races_a_finishing_fiber, bdata::make(kProcs), np) {
  // set_limit succeeds only when no fiber of the group is active; a fiber
  // still finishing (giving its slot back) must count as active, or the
  // limit it gives back to is replaced under it.
  const int rounds = 3000 / kSlow;
  int refused = 0;
  bool slot_free = false;
  absl::Status st;
  goro::run(procs(np), [&] {
    goro::group g;
    g.set_limit(1);
    for (int r = 0; r < rounds; ++r) {
      g.go([] {});
      for (;;) {
        bool ok = false;
        try {
          g.set_limit(1);
          ok = true;
        } catch (const std::logic_error&) {
          ++refused;
        }
        if (ok) break;
        // Not inside the handler: a fiber that yields there may resume on
        // another thread, whose C++ runtime does not know the exception.
        goro::yield();
      }
    }
    st = g.wait();
    slot_free = g.try_go([] {});
    (void)g.wait();
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(slot_free);
  BOOST_TEST_MESSAGE("set_limit refused " << refused << " times");
}

// ---- destructor and OS threads ----------------------------------------------

BOOST_DATA_TEST_CASE(destructor_waits_for_fibers, bdata::make(kProcs), np) {
  std::atomic<int> finished{0};
  int at_scope_exit = -1;
  absl::Status ctx_err;
  goro::run(procs(np), [&] {
    goro::context ctx;
    {
      goro::group g;
      ctx = g.ctx();
      for (int i = 0; i < 10; ++i) {
        g.go([&] {
          goro::sleep_for(20ms);
          finished.fetch_add(1);
        });
      }
      g.go([]() -> absl::Status { return absl::InternalError("never waited for"); });
      g.go([] {
        goro::sleep_for(10ms);
        throw std::runtime_error("dropped");  // no wait(): never rethrown
      });
    }
    at_scope_exit = finished.load();
    ctx_err = ctx.err();
  });
  BOOST_TEST(at_scope_exit == 10);
  BOOST_TEST(absl::IsCancelled(ctx_err));
}

BOOST_AUTO_TEST_CASE(destructor_cancels_ctx_without_error) {
  absl::Status ctx_err;
  goro::run(procs(2), [&] {
    goro::context ctx;
    {
      goro::group g;
      ctx = g.ctx();
      g.go([] { goro::sleep_for(5ms); });
    }
    ctx_err = ctx.err();
  });
  BOOST_TEST(absl::IsCancelled(ctx_err));
}

BOOST_DATA_TEST_CASE(destructor_stops_fibers_waiting_on_ctx, bdata::make(kProcs), np) {
  // Destroyed without wait() (e.g. while an exception unwinds): fibers that
  // block until ctx() ends must be released, not waited for forever.
  std::atomic<int> stopped{0};
  double ms = -1;
  goro::run(procs(np), [&] {
    auto t0 = std::chrono::steady_clock::now();
    {
      goro::group g;
      for (int i = 0; i < 8; ++i) {
        g.go([&]() -> absl::Status {
          absl::Status st = goro::sleep_for(g.ctx(), std::chrono::hours(1));
          if (absl::IsCancelled(st)) stopped.fetch_add(1);
          return st;
        });
      }
      goro::sleep_for(5ms);
    }
    ms = goro_test::ms_since(t0);
  });
  BOOST_TEST(stopped.load() == 8);
  BOOST_TEST(ms < 1000.0);
}

BOOST_AUTO_TEST_CASE(used_from_an_os_thread) {
  // A plain thread starts and waits for a group's fibers while the runtime
  // runs; with a limit, its go() blocks the thread.
  constexpr int kTasks = 40;
  std::atomic<int> ran{0}, running{0}, max_running{0};
  absl::Status st = absl::UnknownError("not waited");
  goro::run(procs(2), [&] {
    goro::wait_group joined;
    joined.add(1);
    std::thread t([&] {
      goro::group g;
      g.set_limit(2);
      for (int i = 0; i < kTasks; ++i) {
        g.go([&] {
          update_max(max_running, running.fetch_add(1) + 1);
          goro::sleep_for(100us);
          running.fetch_sub(1);
          ran.fetch_add(1);
        });
      }
      st = g.wait();
      joined.done();
    });
    joined.wait();  // parks this fiber; the group's fibers keep running
    t.join();
  });
  BOOST_TEST(st.ok());
  BOOST_TEST(ran.load() == kTasks);
  BOOST_TEST(max_running.load() <= 2);
}
