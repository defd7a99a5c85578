// src/wait/parker.hpp — the one primitive every blocking call waits through.
//
// A parker is created on the waiting side's stack. It remembers whether the
// waiter is a fiber or a plain OS thread:
//   * fiber: park() hands `unlock` to the scheduler, which runs it once the
//     fiber is off its stack and marked parked (after_switch); unpark() is
//     ready(fiber). The worker thread goes on running other fibers.
//   * OS thread: park() runs `unlock`, then sleeps on a futex word until
//     unpark() sets it. Only this thread blocks.
// Protocol (the same for every primitive): under the primitive's lock, check
// the condition; if it must wait, link a record holding the parker where
// wakers find it; park(unlock-that-lock). A waker, under the same lock,
// unlinks the record, then — after dropping the lock — calls unpark() exactly
// once. Because the waiter only becomes visible in `unlock`, unpark can never
// precede the park, and no wake-up is lost.
// unpark() reads nothing from the record after waking (the waiter may return
// and free it at once); for a thread the futex_wake afterwards only hashes the
// address (see futex.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "sched/futex.hpp"
#include "sched/sched.hpp"
#include "time/timer.hpp"

namespace goro::detail {

// Single use: one park() (or park_thread_until()) matched by one unpark().
class parker {
 public:
  parker() : f_(current_fiber()) {}
  parker(const parker&) = delete;
  parker& operator=(const parker&) = delete;

  bool on_fiber() const { return f_ != nullptr; }
  fiber* waiting_fiber() const { return f_; }  // null for an OS thread

  // Blocks until unpark(). `unlock()` (void) is called exactly once, when the
  // caller can safely be woken. On a fiber, throws the runtime's unwind
  // exception at shutdown: callers must then unlink their record (RAII).
  // `reason` and `obj` (the object waited on, if any) are for dumps.
  template <class Unlock>
  void park(Unlock& unlock, const char* reason, const void* obj = nullptr) {
    if (f_ != nullptr) {
      detail::park(
          [](void* u) {
            (*static_cast<Unlock*>(u))();
            return true;
          },
          &unlock, reason, obj);
      return;
    }
    unlock();
    wait_thread();
  }

  // An OS thread's park with a deadline (steady_clock nanoseconds): runs
  // `unlock`, then sleeps until unpark() (true) or the deadline (false). After
  // false the caller must still make sure nobody unparks it later: take its
  // record out under the primitive's lock, or, if a waker already did, call
  // wait_unparked().
  template <class Unlock>
  bool park_thread_until(Unlock& unlock, std::int64_t deadline) {
    unlock();  // not in g_threads_parked: the deadline wakes it, and then it may wake a fiber
    for (;;) {
      if (word_.load(std::memory_order_acquire) != kWaiting) return true;
      const std::int64_t left = deadline - mono_now();
      if (left <= 0) return false;
      futex_wait_for(&word_, kWaiting, std::chrono::nanoseconds(left));
    }
  }
  // An OS thread whose record a waker has taken: waits for that unpark().
  void wait_unparked() { wait_thread(); }

  void unpark() {
    if (f_ != nullptr) {
      ready(f_);
      return;
    }
    // The waker takes it out of g_threads_parked: from now on it is a thread
    // about to run, however long the OS takes to schedule it.
    if (word_.exchange(kUnparked, std::memory_order_acq_rel) == kAsleep) {
      g_threads_parked.fetch_sub(1, std::memory_order_relaxed);
    }
    futex_wake(&word_);
  }

 private:
  static constexpr std::uint32_t kWaiting = 0;   // not unparked yet
  static constexpr std::uint32_t kUnparked = 1;  // unpark() has run
  static constexpr std::uint32_t kAsleep = 2;    // an untimed waiter, counted in g_threads_parked

  // An OS thread's untimed wait. It counts itself in g_threads_parked (for
  // the deadlock detector: only a fiber or a timer can end this wait, so the
  // thread cannot wake anyone by itself) unless unpark() came first; unpark
  // uncounts it.
  void wait_thread() {
    g_threads_parked.fetch_add(1, std::memory_order_relaxed);
    std::uint32_t w = kWaiting;
    if (!word_.compare_exchange_strong(w, kAsleep, std::memory_order_acq_rel)) {
      g_threads_parked.fetch_sub(1, std::memory_order_relaxed);  // already unparked
      return;
    }
    while (word_.load(std::memory_order_acquire) != kUnparked) futex_wait(&word_, kAsleep);
  }

  fiber* const f_;                             // null: an OS thread waits
  std::atomic<std::uint32_t> word_{kWaiting};  // thread waiters: see the constants
};

}  // namespace goro::detail
