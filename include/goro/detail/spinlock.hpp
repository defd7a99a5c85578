// goro/detail/spinlock.hpp — a tiny lock for very short critical sections inside
// the runtime (wait-queue buckets, channel state).
//
// Why not std::mutex: the wait protocol releases a lock in after_switch(), on
// the *next* context (another fiber or g0) of the same thread. std::mutex
// tolerates that at the OS level, but TSan (which sees each fiber as a thread)
// reports an unlock by a non-owner. A lock made of one atomic has no owner.
// Contention is brief by construction (no blocking, no allocation inside), so
// test-and-test-and-set with a pause, then yielding the thread, is enough.
#pragma once

#include <sched.h>

#include <atomic>

#include "absl/base/thread_annotations.h"

namespace goro::detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// With GORO_LOCK_CHECKS (the library's debug builds, meson option
// lock_checks), each thread counts the spinlocks it holds; the scheduler
// aborts when a fiber parks or yields with any still held (the park
// protocol's own lock is released by then). Only the library's own
// translation units lock these, so the count is consistent.
#if defined(GORO_LOCK_CHECKS)
inline thread_local int t_spinlocks_held = 0;
#define GORO_LOCK_COUNT(d) (::goro::detail::t_spinlocks_held += (d))
#else
#define GORO_LOCK_COUNT(d) ((void)0)
#endif

// A few microseconds of pausing (longer than any critical section that is
// not preempted) before giving the CPU away: for the spinlock, and for
// anything else that waits out another thread's few instructions.
inline constexpr int kSpinPausesBeforeYield = 1000;

// One step of such a wait: pause, or yield the CPU once `spins` passes the
// bound (the thread being waited for may have been preempted).
inline void spin_wait(int& spins) {
  if (spins < kSpinPausesBeforeYield) {
    cpu_relax();
    ++spins;
  } else {
    ::sched_yield();
  }
}

class ABSL_LOCKABLE spinlock {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    GORO_LOCK_COUNT(1);
    for (int spins = 0;; ++spins) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) spin_wait(spins);
    }
  }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    const bool ok = !locked_.load(std::memory_order_relaxed) &&
                    !locked_.exchange(true, std::memory_order_acquire);
    if (ok) GORO_LOCK_COUNT(1);
    return ok;
  }
  void unlock() ABSL_UNLOCK_FUNCTION() {
    GORO_LOCK_COUNT(-1);
    locked_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace goro::detail
