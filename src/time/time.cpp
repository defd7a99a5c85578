// src/time/time.cpp — sleep, timer, ticker, after_func on the runtime's
// timer heaps (time/timer.hpp).
//
// A timer handle's state (timer_impl) is reference counted: one reference per
// handle, one while it sits in a heap, one while a fire is being handled.
// Its own spinlock orders stop()/reset() against a fire: the heap runner
// takes the node out with the node's `seq` (and records it as `inflight`),
// then calls fire() with no heap lock held; fire() delivers only if `seq` is
// still current. stop() bumps `seq` under the same lock, so a fire it races
// with is dropped, and it drains a value that was sent but not yet received:
// after stop() returns nothing stale can arrive (Go 1.23 semantics).
// Lock order: timer_impl::mu, then a heap's lock or the channel's lock.
#include <mutex>
#include <stdexcept>
#include <thread>

#include "goro/time.hpp"
#include "sched/sched.hpp"
#include "time/timer.hpp"
#include "wait/parker.hpp"

namespace goro::detail {

struct timer_impl : timer_node {
  std::atomic<int> refs{1};
  spinlock mu;
  chan<clock::time_point> ch;       // timers and tickers
  absl::AnyInvocable<void()> func;  // after_func
};

namespace {

constexpr std::uint64_t kNoFire = ~std::uint64_t{0};

void ref_impl(timer_node* n, int delta) {
  auto* t = static_cast<timer_impl*>(n);
  if (t->refs.fetch_add(delta, std::memory_order_acq_rel) + delta == 0) delete t;
}

nanos to_nanos(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

clock::time_point to_time_point(nanos t) {
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds(t)));
}

// True (and clears it) if a fire of `seq` was taken out of the heap and not
// handled yet. Under t->mu.
bool take_inflight(timer_impl* t, std::uint64_t seq) {
  return t->inflight.compare_exchange_strong(seq, kNoFire, std::memory_order_relaxed);
}

void fire_chan(timer_node* n, std::uint64_t seq, nanos now) {
  auto* t = static_cast<timer_impl*>(n);
  std::lock_guard lk(t->mu);
  if (!take_inflight(t, seq)) return;  // stopped or reset since: stale
  // Non-blocking: a ticker whose last tick is still unread drops this one.
  clock::time_point tp = to_time_point(now);
  t->ch.base()->send(&tp, false);
}

void fire_func(timer_node* n, std::uint64_t seq, nanos) {
  auto* t = static_cast<timer_impl*>(n);
  {
    std::lock_guard lk(t->mu);
    if (!take_inflight(t, seq)) return;
  }
  ref_impl(t, +1);
  spawn(task([t] {
          struct release {
            timer_impl* t;
            ~release() { ref_impl(t, -1); }
          } r{t};
          t->func();
        }),
        std::source_location::current());  // an after_func timer's fiber
}

void fire_call(timer_node* n, std::uint64_t seq, nanos) {
  auto* t = static_cast<timer_impl*>(n);
  {
    std::lock_guard lk(t->mu);
    if (!take_inflight(t, seq)) return;
  }
  t->func();  // on the scheduler: must not block
}

// stop(): under t->mu. True if it prevented a fire.
bool stop_locked(timer_impl* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu) {
  const std::uint64_t cur = t->seq.load(std::memory_order_relaxed);
  bool prevented = timer_del(t);
  prevented |= take_inflight(t, cur);
  t->seq.store(cur + 1, std::memory_order_relaxed);
  if (t->ch) {
    // Drop a value sent but not received yet.
    std::optional<clock::time_point> stale;
    prevented |= t->ch.base()->recv(&stale, false) == 1;
  }
  return prevented;
}

void arm_locked(timer_impl* t, nanos d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu) {
  timer_add(t, deadline_after(mono_now(), d));
}

// A new timer armed for `when`, with `fire` and, for a channel timer or a
// ticker (`period`), its channel of capacity 1, or the function to run.
// Armed after everything is in place: it may fire at once.
timer_impl* new_timer(nanos when, timer_fire fire, nanos period, absl::AnyInvocable<void()> fn) {
  auto* t = new timer_impl;
  t->ref = &ref_impl;
  t->fire = fire;
  t->period = period;
  if (fire == &fire_chan) t->ch = make_chan<clock::time_point>(1);
  t->func = std::move(fn);
  try {
    std::lock_guard lk(t->mu);
    timer_add(t, when);
  } catch (...) {
    delete t;
    throw;
  }
  return t;
}

nanos from_now(clock::duration d) { return deadline_after(mono_now(), to_nanos(d)); }

// Parks the calling fiber until `when` (steady_clock nanoseconds).
void sleep_fiber(nanos when) {
  timer_node n;
  n.wake = current_fiber();
  struct arm {
    timer_node* n;
    nanos when;
  } a{&n, when};
  // Armed only once the fiber is parked, so the fire can never come first.
  auto cb = [](void* arg) {
    auto* a = static_cast<struct arm*>(arg);
    timer_add(a->n, a->when);
    return true;
  };
  try {
    park(cb, &a, "sleep");
  } catch (...) {
    timer_del(&n);  // unwound at exit while still armed
    throw;
  }
}

}  // namespace

void timer_addref(timer_impl* t) noexcept { ref_impl(t, +1); }

timer make_call_timer(nanos when, absl::AnyInvocable<void()> fn) {
  return timer(new_timer(when, &fire_call, 0, std::move(fn)));
}

void timer_release(timer_impl* t) noexcept { ref_impl(t, -1); }

}  // namespace goro::detail

namespace goro {

void sleep_until(clock::time_point tp) {
  using namespace detail;
  if (current_fiber() == nullptr) {
    std::this_thread::sleep_until(tp);
    return;
  }
  const nanos when = to_nanos(tp.time_since_epoch());
  if (when <= mono_now()) return;
  sleep_fiber(when);
}

void sleep_for(clock::duration d) {
  using namespace detail;
  if (d <= clock::duration::zero()) return;
  if (current_fiber() == nullptr) {
    std::this_thread::sleep_for(d);
    return;
  }
  sleep_fiber(deadline_after(mono_now(), to_nanos(d)));
}

timer::timer(clock::duration d)
    : impl_(detail::new_timer(detail::from_now(d), &detail::fire_chan, 0, {})) {}

chan<clock::time_point> timer::c() const {
  return impl_ != nullptr ? impl_->ch : chan<clock::time_point>{};
}

bool timer::stop() const {
  if (impl_ == nullptr) return false;
  std::lock_guard lk(impl_->mu);
  return detail::stop_locked(impl_);
}

bool timer::reset(clock::duration d) const {
  if (impl_ == nullptr) return false;
  std::lock_guard lk(impl_->mu);
  const bool prevented = detail::stop_locked(impl_);
  detail::arm_locked(impl_, detail::to_nanos(d));
  return prevented;
}

timer after_func(clock::duration d, absl::AnyInvocable<void()> f) {
  if (!f) throw std::invalid_argument("goro::after_func: empty function");
  return timer(detail::new_timer(detail::from_now(d), &detail::fire_func, 0, std::move(f)));
}

chan<clock::time_point> after(clock::duration d) { return timer(d).c(); }

ticker::ticker(clock::duration d) {
  if (d <= clock::duration::zero()) {
    throw std::invalid_argument("goro::ticker: non-positive interval");
  }
  t_ = timer(detail::new_timer(detail::from_now(d), &detail::fire_chan, detail::to_nanos(d), {}));
}

void ticker::reset(clock::duration d) const {
  if (d <= clock::duration::zero()) {
    throw std::invalid_argument("goro::ticker::reset: non-positive interval");
  }
  detail::timer_impl* t = t_.impl_;
  if (t == nullptr) return;
  std::lock_guard lk(t->mu);
  detail::stop_locked(t);
  t->period = detail::to_nanos(d);
  detail::arm_locked(t, t->period);
}

}  // namespace goro
