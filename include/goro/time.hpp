// goro/time.hpp — Go's time package, for fibers.
//
//   goro::clock                    std::chrono::steady_clock
//   goro::sleep_for(d)             time.Sleep(d)
//   goro::sleep_until(t)           sleep until a clock::time_point
//   goro::after(d)                 time.After(d): a channel that gets the time once
//   goro::timer t(d)               time.NewTimer(d): t.c(), t.stop(), t.reset(d)
//   goro::ticker t(d)              time.NewTicker(d): t.c(), t.stop(), t.reset(d)
//   goro::after_func(d, f)         time.AfterFunc(d, f): runs f in its own fiber
//
// Timers live in the runtime's per-P timer heaps (no thread or fiber per
// timer), so they need a running runtime: creating one outside goro::run
// throws goro::runtime_error. sleep_for on a plain OS thread sleeps that
// thread. A zero or negative duration fires (or returns) at once.
//
// Timer channels behave as Go 1.23's: once stop() or reset() has returned, no
// value from before it is ever received from c(). stop() returns true if it
// prevented the timer from firing — false only if the value was already
// received, the timer was already stopped (or has fired an after_func whose
// function has started). reset(d) re-arms and returns what stop() would have.
// A ticker drops ticks a slow receiver misses instead of queueing them.
//
// timer and ticker are handles (copies refer to the same timer). As in Go,
// destroying a handle does not stop the timer: a discarded after_func still
// runs, and an unstopped ticker keeps ticking until the runtime exits. Call
// stop().
#pragma once

#include <chrono>
#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "goro/chan.hpp"

namespace goro {

using clock = std::chrono::steady_clock;

namespace detail {
struct timer_impl;
void timer_addref(timer_impl* t) noexcept;
void timer_release(timer_impl* t) noexcept;
}  // namespace detail

class timer;
namespace detail {
// Internal: a timer that calls `fn` on the scheduler itself when it fires at
// `when_ns` (steady_clock nanoseconds); `fn` must be short and never block.
timer make_call_timer(std::int64_t when_ns, absl::AnyInvocable<void()> fn);
}  // namespace detail

void sleep_for(clock::duration d);
void sleep_until(clock::time_point t);

class timer {
 public:
  timer() = default;  // no timer: c() is nil, stop() and reset() do nothing
  // Arms a timer that sends the current time on c() once `d` has passed.
  explicit timer(clock::duration d);

  timer(const timer& o) noexcept : impl_(o.impl_) {
    if (impl_ != nullptr) detail::timer_addref(impl_);
  }
  timer(timer&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
  timer& operator=(timer o) noexcept {
    std::swap(impl_, o.impl_);
    return *this;
  }
  ~timer() {
    if (impl_ != nullptr) detail::timer_release(impl_);
  }

  // The channel the time is sent on (capacity 1); nil for an after_func timer.
  chan<clock::time_point> c() const;
  // Prevents the timer from firing; see the header comment for the result.
  bool stop() const;
  // Stops the timer, then arms it again to fire after `d`. Returns what stop()
  // would have.
  bool reset(clock::duration d) const;

 private:
  friend class ticker;
  friend timer detail::make_call_timer(std::int64_t, absl::AnyInvocable<void()>);
  friend timer after_func(clock::duration d, absl::AnyInvocable<void()> f);
  explicit timer(detail::timer_impl* impl) noexcept : impl_(impl) {}
  detail::timer_impl* impl_ = nullptr;
};

// Runs `f` in a new fiber once `d` has passed (each time, if reset after it
// fired). Exceptions from `f` are those of any fiber: a panic.
timer after_func(clock::duration d, absl::AnyInvocable<void()> f);

// A channel that receives the current time once `d` has passed.
chan<clock::time_point> after(clock::duration d);

class ticker {
 public:
  ticker() = default;
  // Ticks every `d` (> 0, else std::invalid_argument, as Go panics).
  explicit ticker(clock::duration d);

  chan<clock::time_point> c() const { return t_.c(); }
  // No more ticks after it returns (a tick not yet received is dropped).
  void stop() const { t_.stop(); }
  // Stops and restarts with period `d` (> 0, else std::invalid_argument).
  void reset(clock::duration d) const;

 private:
  timer t_;
};

}  // namespace goro
