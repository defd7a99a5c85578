// Unit tests for goro::context: cancellation trees, deadlines, values, and
// the context-aware blocking forms.
#define BOOST_TEST_MODULE context
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
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
using sclock = goro::clock;

namespace {

bool is_closed(const goro::chan<void>& c) {
  return goro::select(goro::on_recv(c), goro::on_default()) == 0;
}

const goro::context_key<int> kInt;
const goro::context_key<int> kOtherInt;
const goro::context_key<std::string> kName;

}  // namespace

BOOST_AUTO_TEST_CASE(background_is_never_done) {
  goro::context bg = goro::context::background();
  BOOST_TEST(!bg.done());
  BOOST_TEST(bg.err().ok());
  BOOST_TEST(bg.cause().ok());
  BOOST_TEST(!bg.deadline().has_value());
  BOOST_TEST(bg.value(kInt) == nullptr);
  goro::context def;
  BOOST_TEST(!def.done());
}

BOOST_AUTO_TEST_CASE(cancel_closes_done_and_sets_err_once) {
  auto [ctx, cancel] = goro::with_cancel(goro::context::background());
  BOOST_TEST(ctx.err().ok());
  BOOST_TEST(!is_closed(ctx.done()));
  cancel();
  BOOST_TEST(is_closed(ctx.done()));
  BOOST_TEST(absl::IsCancelled(ctx.err()));
  BOOST_TEST(ctx.err().message() == "context canceled");
  cancel();  // idempotent
  BOOST_TEST(absl::IsCancelled(ctx.err()));
}

BOOST_AUTO_TEST_CASE(cancel_cause_is_reported) {
  auto [ctx, cancel] = goro::with_cancel_cause(goro::context::background());
  auto [child, cc] = goro::with_cancel(ctx);
  cancel(absl::UnavailableError("backend down"));
  BOOST_TEST(absl::IsCancelled(ctx.err()));
  BOOST_TEST(absl::IsUnavailable(ctx.cause()));
  BOOST_TEST(absl::IsUnavailable(child.cause()));  // inherited, as Go's Cause
  BOOST_TEST(absl::IsCancelled(child.err()));
  cancel(absl::InternalError("later"));  // no effect
  BOOST_TEST(absl::IsUnavailable(ctx.cause()));
  auto [c2, cancel2] = goro::with_cancel_cause(goro::context::background());
  cancel2(absl::OkStatus());
  BOOST_TEST(absl::IsCancelled(c2.cause()));
  cc();
}

BOOST_AUTO_TEST_CASE(parent_cancel_reaches_descendants_child_cancel_does_not_reach_parent) {
  auto [root, cancel_root] = goro::with_cancel(goro::context::background());
  auto [a, cancel_a] = goro::with_cancel(root);
  auto [b, cancel_b] = goro::with_cancel(a);
  auto [c, cancel_c] = goro::with_cancel(goro::with_value(b, kInt, 7));
  BOOST_TEST(goro::detail::context_children(root) == 1u);
  cancel_b();
  BOOST_TEST(!b.err().ok());
  BOOST_TEST(!c.err().ok());
  BOOST_TEST(a.err().ok());  // the parent lives on
  BOOST_TEST(root.err().ok());
  BOOST_TEST(goro::detail::context_children(a) == 0u);  // detached
  cancel_root();
  BOOST_TEST(absl::IsCancelled(a.err()));
  BOOST_TEST(goro::detail::context_children(root) == 0u);
  // A child made from an ended parent is ended at once.
  auto [late, cancel_late] = goro::with_cancel(root);
  BOOST_TEST(absl::IsCancelled(late.err()));
  BOOST_TEST(is_closed(late.done()));
  cancel_a();
  cancel_c();
  cancel_late();
}

BOOST_AUTO_TEST_CASE(child_set_returns_to_empty) {
  auto [root, cancel_root] = goro::with_cancel(goro::context::background());
  std::vector<goro::cancel_func> cancels;
  for (int i = 0; i < 1000; ++i) cancels.push_back(goro::with_cancel(root).second);
  BOOST_TEST(goro::detail::context_children(root) == 1000u);
  for (auto& c : cancels) c();
  BOOST_TEST(goro::detail::context_children(root) == 0u);
  BOOST_TEST(root.err().ok());
  cancel_root();
}

BOOST_AUTO_TEST_CASE(values_shadow_and_chain) {
  goro::context c0 = goro::with_value(goro::context::background(), kInt, 1);
  goro::context c1 = goro::with_value(c0, kName, std::string("alice"));
  auto [c2, cancel] = goro::with_cancel(c1);
  goro::context c3 = goro::with_value(c2, kInt, 3);
  BOOST_TEST(*c0.value(kInt) == 1);
  BOOST_TEST(*c3.value(kInt) == 3);  // shadowed
  BOOST_TEST(*c2.value(kInt) == 1);
  BOOST_TEST(*c3.value(kName) == "alice");
  BOOST_TEST(c3.value(kOtherInt) == nullptr);  // same type, different key
  BOOST_TEST(c0.value(kName) == nullptr);
  const int* p = c3.value(kInt);
  cancel();
  BOOST_TEST(*p == 3);  // values outlive cancellation
  BOOST_TEST(!c3.err().ok());
}

BOOST_DATA_TEST_CASE(timeout_sets_deadline_exceeded, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    auto t0 = sclock::now();
    auto [ctx, cancel] = goro::with_timeout(goro::context::background(), 20ms);
    BOOST_REQUIRE(ctx.deadline().has_value());
    BOOST_TEST((*ctx.deadline() >= t0 + 20ms));
    BOOST_TEST(ctx.done().recv() == false);  // closed
    BOOST_TEST(ms_since(t0) >= 20);
    BOOST_TEST(ms_since(t0) < 500);
    BOOST_TEST(absl::IsDeadlineExceeded(ctx.err()));
    BOOST_TEST(ctx.err().message() == "context deadline exceeded");
    cancel();  // after the deadline: no change
    BOOST_TEST(absl::IsDeadlineExceeded(ctx.err()));
  });
}

BOOST_AUTO_TEST_CASE(deadlines_inherit_the_earliest) {
  goro::run([] {
    auto [outer, c1] = goro::with_timeout(goro::context::background(), 10ms);
    auto [inner, c2] = goro::with_timeout(outer, 1h);
    BOOST_TEST((*inner.deadline() == *outer.deadline()));
    auto v = goro::with_value(inner, kInt, 5);
    BOOST_TEST((*v.deadline() == *outer.deadline()));
    v.done().recv();
    BOOST_TEST(absl::IsDeadlineExceeded(inner.err()));
    auto [past, c3] = goro::with_deadline(goro::context::background(), sclock::now() - 1s);
    BOOST_TEST(absl::IsDeadlineExceeded(past.err()));
    // Cancelling first wins over the deadline.
    auto [early, c4] = goro::with_timeout(goro::context::background(), 1h);
    c4();
    BOOST_TEST(absl::IsCancelled(early.err()));
    c1();
    c2();
    c3();
  });
}

// A tree of 100 cancellable contexts whose cancel functions are called in a
// random order from many fibers and threads at once: every context ends,
// each once, and every waiter on every done() wakes, within 1 s.
BOOST_DATA_TEST_CASE(tree_cancelled_concurrently_in_random_order, bdata::make(kProcs), n) {
  goro::run(procs(n), [] {
    constexpr int kNodes = 100;
    std::mt19937 rng(12345);
    std::vector<goro::context> ctxs;
    std::vector<goro::cancel_func> cancels;
    auto [root, cancel_root] = goro::with_cancel(goro::context::background());
    ctxs.push_back(root);
    cancels.push_back(cancel_root);
    for (int i = 1; i < kNodes; ++i) {
      std::uniform_int_distribution<int> pick(0, i - 1);
      auto [c, f] = goro::with_cancel(ctxs[static_cast<std::size_t>(pick(rng))]);
      ctxs.push_back(c);
      cancels.push_back(f);
    }
    std::atomic<int> woke{0};
    goro::wait_group waiters;
    waiters.add(kNodes);
    for (auto& c : ctxs) {
      goro::go([&waiters, &woke, c] {
        goro::select(goro::on_recv(c.done()));
        if (!c.err().ok()) woke.fetch_add(1);
        waiters.done();
      });
    }
    std::vector<int> order(kNodes);
    for (int i = 0; i < kNodes; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), rng);
    auto t0 = sclock::now();
    goro::wait_group cancellers;
    cancellers.add(kNodes);
    std::thread th([&] {
      for (int i = 0; i < kNodes; i += 3)
        cancels[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]();
    });
    for (int i = 0; i < kNodes; ++i) {
      goro::go([&, i] {
        cancels[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]();
        cancellers.done();
      });
    }
    cancellers.wait();
    waiters.wait();
    th.join();
    BOOST_TEST(ms_since(t0) < 1000);
    BOOST_TEST(woke.load() == kNodes);
    for (auto& c : ctxs) BOOST_TEST(absl::IsCancelled(c.err()));
    for (auto& c : ctxs) BOOST_TEST(goro::detail::context_children(c) == 0u);
  });
}

BOOST_AUTO_TEST_CASE(parent_and_child_cancelled_at_once_do_not_deadlock) {
  goro::run(procs(4), [] {
    for (int round = 0; round < 2000; ++round) {
      auto [p, cp] = goro::with_cancel(goro::context::background());
      auto [c, cc] = goro::with_cancel(p);
      auto [g, cg] = goro::with_cancel(c);
      goro::wait_group wg;
      wg.add(3);
      goro::go([&, cp = cp] {
        cp();
        wg.done();
      });
      goro::go([&, cc = cc] {
        cc();
        wg.done();
      });
      goro::go([&, cg = cg] {
        cg();
        wg.done();
      });
      wg.wait();
      BOOST_REQUIRE(!g.err().ok());
      BOOST_REQUIRE(goro::detail::context_children(p) == 0u);
    }
  });
}

// 30 random layers of value / cancel / timeout; checks values, deadlines and
// that cancelling a random layer ends exactly the layers below it.
BOOST_AUTO_TEST_CASE(random_layers) {
  goro::run([] {
    std::mt19937 rng(777);
    for (int trial = 0; trial < 50; ++trial) {
      struct layer {
        goro::context ctx;
        goro::cancel_func cancel;  // empty for value layers
        int expect_value;          // what value(kInt) must give (-1: none)
      };
      std::vector<layer> ls;
      goro::context cur = goro::context::background();
      int val = -1;
      for (int i = 0; i < 30; ++i) {
        switch (rng() % 3) {
          case 0:
            val = i;
            cur = goro::with_value(cur, kInt, i);
            ls.push_back({cur, {}, val});
            break;
          case 1: {
            auto [c, f] = goro::with_cancel(cur);
            cur = c;
            ls.push_back({cur, f, val});
            break;
          }
          default: {
            auto [c, f] = goro::with_timeout(cur, 1h + std::chrono::minutes(rng() % 60));
            cur = c;
            ls.push_back({cur, f, val});
            break;
          }
        }
      }
      for (auto& l : ls) {
        const int* v = l.ctx.value(kInt);
        BOOST_REQUIRE((l.expect_value < 0 ? v == nullptr : (v != nullptr && *v == l.expect_value)));
      }
      // Deadlines only ever get earlier down the chain.
      std::optional<sclock::time_point> d;
      for (auto& l : ls) {
        auto ld = l.ctx.deadline();
        if (d) BOOST_REQUIRE((ld.has_value() && *ld <= *d));
        if (ld) d = ld;
      }
      // Cancel a random cancellable layer.
      std::vector<std::size_t> cancellable;
      for (std::size_t i = 0; i < ls.size(); ++i) {
        if (ls[i].cancel) cancellable.push_back(i);
      }
      if (cancellable.empty()) continue;
      std::size_t k = cancellable[rng() % cancellable.size()];
      ls[k].cancel();
      for (std::size_t i = 0; i < ls.size(); ++i) {
        // A value layer above the first cancellable one has no done channel.
        BOOST_REQUIRE(ls[i].ctx.err().ok() == (i < k));
        if (i >= k) BOOST_REQUIRE(is_closed(ls[i].ctx.done()));
      }
      for (auto& l : ls) {
        if (l.cancel) l.cancel();
      }
    }
  });
}

BOOST_DATA_TEST_CASE(sleep_with_context, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    BOOST_TEST(goro::sleep_for(goro::context::background(), 5ms).ok());
    auto [ctx, cancel] = goro::with_cancel(goro::context::background());
    BOOST_TEST(goro::sleep_for(ctx, 5ms).ok());
    goro::after_func(10ms, [c = cancel] { c(); });
    auto t0 = sclock::now();
    absl::Status st = goro::sleep_for(ctx, 1h);
    BOOST_TEST(absl::IsCancelled(st));
    BOOST_TEST(ms_since(t0) < 500);
    BOOST_TEST(absl::IsCancelled(goro::sleep_for(ctx, 1ms)));  // already ended
    auto [tctx, tc] = goro::with_timeout(goro::context::background(), 10ms);
    BOOST_TEST(absl::IsDeadlineExceeded(goro::sleep_for(tctx, 1h)));
    tc();
  });
}

BOOST_DATA_TEST_CASE(channel_ops_with_context, bdata::make({1, 2, 4}), n) {
  goro::run(procs(n), [] {
    auto ch = goro::make_chan<int>();
    auto [ctx, cancel] = goro::with_cancel(goro::context::background());
    // Completes normally.
    goro::go([ch] { ch.send(1); });
    auto r = ch.recv(ctx);
    BOOST_REQUIRE(r.ok());
    BOOST_TEST(**r == 1);
    goro::go([ch] { (void)ch.recv(); });
    BOOST_TEST(ch.send(ctx, 2).ok());
    // Cancelled while blocked.
    goro::after_func(5ms, [c = cancel] { c(); });
    auto r2 = ch.recv(ctx);
    BOOST_TEST(absl::IsCancelled(r2.status()));
    BOOST_TEST(absl::IsCancelled(ch.send(ctx, 3)));
    // Timeout on send, nothing was sent.
    auto [tctx, tc] = goro::with_timeout(goro::context::background(), 5ms);
    BOOST_TEST(absl::IsDeadlineExceeded(ch.send(tctx, 4)));
    BOOST_TEST(goro::select(goro::on_recv(ch), goro::on_default()) == 1u);
    tc();
    // Closed channel: recv gives nullopt, send throws.
    auto bg = goro::context::background();
    auto buf = goro::make_chan<std::unique_ptr<int>>(1);
    BOOST_TEST(buf.send(bg, std::make_unique<int>(9)).ok());
    buf.close();
    auto got = buf.recv(bg);
    BOOST_TEST(**got != nullptr);
    BOOST_TEST(!buf.recv(bg)->has_value());
    BOOST_CHECK_THROW((void)buf.send(bg, nullptr), goro::channel_closed);
    // chan<void> and nil channels wait for the context only.
    auto sig = goro::make_chan<void>(1);
    BOOST_TEST(sig.send(bg).ok());
    auto b = sig.recv(bg);
    BOOST_TEST((b.ok() && *b));
    goro::chan<int> nil;
    auto [nctx, nc] = goro::with_timeout(goro::context::background(), 5ms);
    BOOST_TEST(absl::IsDeadlineExceeded(nil.recv(nctx).status()));
    nc();
  });
}

BOOST_AUTO_TEST_CASE(deadline_needs_a_runtime_but_cancel_does_not) {
  BOOST_CHECK_THROW(goro::with_timeout(goro::context::background(), 1s), goro::runtime_error);
  auto [ctx, cancel] = goro::with_cancel(goro::context::background());
  std::thread th([c = cancel] { c(); });
  th.join();
  BOOST_TEST(absl::IsCancelled(ctx.err()));
  BOOST_TEST(ctx.done().recv() == false);  // an OS thread receiving: closed
}

BOOST_AUTO_TEST_CASE(uncancelled_trees_are_freed) {
  // Nothing to assert directly: ASan's leak check fails the run if a tree
  // without cancel calls (or with a pending deadline) leaked.
  goro::run([] {
    auto [a, ca] = goro::with_cancel(goro::context::background());
    auto [b, cb] = goro::with_timeout(a, 1h);
    auto [c, cc] = goro::with_cancel(b);
    auto v = goro::with_value(c, kName, std::string("x"));
    BOOST_TEST(*v.value(kName) == "x");
  });
}
