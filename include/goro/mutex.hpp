// goro/mutex.hpp — Go's sync.Mutex and sync.RWMutex, fiber-aware.
//
//   goro::mutex mu;              sync.Mutex
//   std::lock_guard lk(mu);      mu.Lock(); defer mu.Unlock()
//   goro::shared_mutex rw;       sync.RWMutex
//   std::shared_lock rl(rw);     rw.RLock(); defer rw.RUnlock()
//
// Both meet the standard Lockable / SharedLockable requirements, so
// std::lock_guard, std::unique_lock, std::scoped_lock and std::shared_lock
// work. A fiber that has to wait parks (its worker runs other fibers); a
// plain OS thread blocks. They work between OS threads with no runtime.
//
// goro::mutex is Go's design: one atomic word (locked, woken, starving bits
// and a waiter count) and a wake-up semaphore in the runtime's address-keyed
// wait table.
//   * lock(): one compare-and-swap when free. Otherwise it spins briefly —
//     only while another processor is running and this one has nothing else
//     to run, as Go's sync_runtime_canSpin — then parks.
//   * Normal mode: unlock() wakes one waiter, which competes with newcomers
//     (who have the CPU and usually win: good throughput). A woken waiter that
//     lost queues again at the front.
//   * Starvation mode: a waiter that has waited over 1 ms switches the mutex
//     to hand-off: unlock() gives ownership straight to the oldest waiter and
//     newcomers queue behind it. It ends when the waiter that got the lock is
//     the last one or waited under 1 ms. No waiter starves.
//   * try_lock() never waits and fails while the mutex is held or in
//     starvation mode (Go's TryLock).
//
// goro::shared_mutex is Go's RWMutex: readers count themselves in one atomic;
// a writer takes the writer mutex, announces itself by making that count
// negative (new readers then queue behind it), and waits for the readers
// already inside. Writers are never starved by a stream of readers; readers
// are not starved by writers either (a writer's unlock admits every reader
// that queued behind it).
//
// Misuse. unlock() of an unlocked mutex (and unlock_shared() without a
// reader, unlock() of a shared_mutex not write-locked) throws
// std::logic_error, as Go's "fatal error: sync: unlock of unlocked mutex".
// Where C++ differs from Go: a mutex is owned by the fiber (or thread) that
// locked it, as std::mutex; in builds without NDEBUG (or with
// GORO_MUTEX_OWNER_CHECKS=1) unlock() by another fiber or thread throws
// std::logic_error. Go allows that hand-over; port it with a channel or a
// semaphore. From a destructor (std::lock_guard) a throw terminates with the
// message.
//
// Lifetime: a mutex may be destroyed as soon as the last unlock() returns,
// and a shared_mutex as soon as the last unlock_shared() returns, even if the
// writer's unlock() that let those readers in is still returning (the last
// reader may drop the last reference to the object that holds the lock).
// At runtime exit, a fiber unwound while waiting for a mutex leaves without
// it; a destructor run by that unwinding must not wait for a mutex still
// held by another parked fiber (blocking while being unwound is fatal).
#pragma once

#include <atomic>
#include <cstdint>

#ifndef GORO_MUTEX_OWNER_CHECKS
#ifdef NDEBUG
#define GORO_MUTEX_OWNER_CHECKS 0
#else
#define GORO_MUTEX_OWNER_CHECKS 1
#endif
#endif

namespace goro {

namespace detail {
// Identifies the calling fiber (or plain OS thread); never 0.
std::uintptr_t owner_token() noexcept;
}  // namespace detail

class mutex {
 public:
  constexpr mutex() noexcept = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  // Waits (briefly) for an unlock() still finishing its slow path, so the
  // mutex may be freed as soon as the last unlock() has released it. Only a
  // mutex that was ever contended can have one (contended_).
  ~mutex() {
    if (contended_.load(std::memory_order_acquire)) wait_unlockers();
  }

  void lock() {
    std::int32_t old = 0;
    if (!state_.compare_exchange_strong(old, kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      lock_slow(old);
    }
    if constexpr (GORO_MUTEX_OWNER_CHECKS)
      owner_.store(detail::owner_token(), std::memory_order_relaxed);
  }

  bool try_lock() noexcept {
    std::int32_t old = state_.load(std::memory_order_relaxed);
    if ((old & (kLocked | kStarving)) != 0) return false;
    if (!state_.compare_exchange_strong(old, old | kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      return false;
    }
    if constexpr (GORO_MUTEX_OWNER_CHECKS)
      owner_.store(detail::owner_token(), std::memory_order_relaxed);
    return true;
  }

  void unlock() { unlock_impl(true); }

 private:
  friend class condition_variable;
  friend class shared_mutex;

  // may_yield = false: never switches fibers (the condition variable unlocks
  // under its own spinlock).
  void unlock_impl(bool may_yield) {
    if constexpr (GORO_MUTEX_OWNER_CHECKS) check_owner();
    // Cleared in every build, so code built with and without the checks can
    // share a mutex (a stale owner would fail a later check).
    owner_.store(0, std::memory_order_relaxed);
    // Uncontended: one CAS releases the lock, our last access to *this.
    std::int32_t old = kLocked;
    // Acquire on failure: the slow path must see contended_ (see mutex.cpp).
    if (!state_.compare_exchange_strong(old, 0, std::memory_order_release,
                                        std::memory_order_acquire)) {
      unlock_slow(old, may_yield);
    }
  }

  static constexpr std::int32_t kLocked = 1;
  static constexpr std::int32_t kWoken = 2;
  static constexpr std::int32_t kStarving = 4;
  static constexpr int kWaiterShift = 3;

  void lock_slow(std::int32_t old);
  void unlock_slow(std::int32_t old, bool may_yield);
  void check_owner() const;
  void wait_unlockers() const noexcept;

  std::atomic<std::int32_t> state_{0};
  std::atomic<std::uint32_t> sema_{0};    // wake-up tokens (wait table key)
  std::atomic<std::uintptr_t> owner_{0};  // owner_token() of the holder, or 0
  // Set by the first lock() that found the mutex held, and never cleared:
  // only such a mutex can send an unlock() down the slow path, which touches
  // it after the release (see mutex.cpp), so only its destructor must check
  // for an unlock() still running. Not a bit of state_: the lock() and
  // unlock() fast paths would then fail on every once-contended mutex.
  std::atomic<bool> contended_{false};
};

class shared_mutex {
 public:
  constexpr shared_mutex() noexcept = default;
  shared_mutex(const shared_mutex&) = delete;
  shared_mutex& operator=(const shared_mutex&) = delete;

  // Exclusive (writer) side.
  void lock();
  bool try_lock() noexcept;
  void unlock();

  // Shared (reader) side.
  void lock_shared() {
    if (readers_.fetch_add(1, std::memory_order_acquire) < 0) lock_shared_slow();
  }
  bool try_lock_shared() noexcept {
    std::int32_t c = readers_.load(std::memory_order_relaxed);
    while (c >= 0) {
      if (readers_.compare_exchange_weak(c, c + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  void unlock_shared() {
    const std::int32_t r = readers_.fetch_sub(1, std::memory_order_release) - 1;
    if (r < 0) unlock_shared_slow(r);
  }

 private:
  static constexpr std::int32_t kMaxReaders = 1 << 30;

  void lock_shared_slow();
  void unlock_shared_slow(std::int32_t r);

  mutex w_;  // held by a writer from lock() to unlock()
  // Readers inside (or queued behind a writer), minus kMaxReaders while a
  // writer holds or waits for the lock.
  std::atomic<std::int32_t> readers_{0};
  std::atomic<std::int32_t> departing_{0};  // readers a waiting writer still waits for
  std::atomic<std::uint32_t> writer_sem_{0};
  std::atomic<std::uint32_t> reader_sem_{0};
};

}  // namespace goro
