// src/sync/mutex.cpp — goro::mutex and goro::shared_mutex (Go's sync.Mutex
// and sync.RWMutex; see goro/mutex.hpp for the model).
//
// mutex state_: bit 0 locked, bit 1 woken (an unlocker has woken a waiter,
// or a spinner is about to take the lock: don't wake another), bit 2
// starving, the rest the number of waiters (counted before they sleep on
// sema_, uncounted by whoever wakes them).
//
// Lifetime. unlock()'s slow path follows Go: release first, then decide whom
// to wake (which wakes far less under contention) — so it touches the mutex
// after releasing it, and a fiber that locks, unlocks and destroys it (the
// last reference dropped under the lock) could free it under our feet. Go's
// GC keeps it alive; goro makes ~mutex wait. An unlocker announces the mutex
// in its thread's unlock slot (a cache line of its own, written only by that
// thread) before the release and clears it after its last access; ~mutex,
// only for a mutex that was ever contended (contended_, set by lock_slow and
// never cleared), waits until no slot names it. Why ~mutex sees contended_:
// lock_slow sets it before its CASes on state_ (release), which are what
// can send an unlock() down the slow path; that unlock() reads their value
// (acquire) before its releasing RMW, from which the destroyer acquired. An earlier version counted
// unlockers in the mutex itself: two more read-modify-writes of the one
// contended cache line per unlock, which doubled the time of a contended
// lock/unlock pair on two CPUs (150 vs 77 ns measured).
#include <stdexcept>
#include <thread>

#include "goro/mutex.hpp"
#include "sched/sched.hpp"
#include "sync/mutex_internal.hpp"
#include "wait/wait_table.hpp"

namespace goro {
namespace detail {

std::atomic<void (*)()> g_unlock_window_hook{nullptr};

namespace {

constexpr nanos kStarvationThreshold = 1'000'000;  // 1 ms, as Go

const int g_ncpu = static_cast<int>(std::thread::hardware_concurrency());

// Go's sync_runtime_canSpin, less one rule: spin a few rounds, only on a
// multicore machine and only while some other processor is running (so the
// holder can release soon) — but also when this processor has other fibers
// to run, which Go forbids. Measured (bench/sync.cpp mutex_contended: 64
// fibers, 2 CPUs), Go's rule made a fiber park on about one lock in twenty,
// since both run queues always hold the other fibers, and every park came
// with a wake-up and a switch: 75-120 ns per lock/unlock pair. With it gone,
// the loser of a race spins and takes the lock at the next release: 20-27
// ns, where Go takes 24-57. The cost is bounded: at most 4 rounds of 30
// pauses (a few microseconds) before the fiber parks and the others run.
bool can_spin(int iter) {
  if (iter >= 4 || g_ncpu <= 1) return false;
  worker* w = current_worker();
  if (w == nullptr) return true;  // a plain thread: spinning costs nobody else
  sched* s = w->s;
  return s->nprocs > s->npidle.load(std::memory_order_relaxed) +
                         s->nmspinning.load(std::memory_order_relaxed) + 1;
}

void spin() {
  for (int i = 0; i < 30; ++i) cpu_relax();
}

thread_local char t_thread_token;

// A thread's unlock slot: the mutex its unlock() may still touch, or null.
// Slots are never freed (a thread that exits gives its slot back for reuse),
// so ~mutex walks the list without a lock.
struct alignas(64) unlock_slot {
  std::atomic<const mutex*> mu{nullptr};
  std::atomic<bool> in_use{true};
  unlock_slot* next = nullptr;  // immutable once published
};
std::atomic<unlock_slot*> g_unlock_slots{nullptr};

unlock_slot* claim_unlock_slot() {
  for (unlock_slot* s = g_unlock_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    bool in_use = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(in_use, true, std::memory_order_acquire)) {
      return s;
    }
  }
  auto* s = new unlock_slot;
  s->next = g_unlock_slots.load(std::memory_order_relaxed);
  while (!g_unlock_slots.compare_exchange_weak(s->next, s, std::memory_order_release,
                                               std::memory_order_relaxed)) {
  }
  return s;
}

struct unlock_slot_ref {
  unlock_slot* slot = nullptr;
  ~unlock_slot_ref() {
    if (slot != nullptr) slot->in_use.store(false, std::memory_order_release);
    slot = nullptr;
  }
};
thread_local unlock_slot_ref t_unlock_slot;

unlock_slot& my_unlock_slot() {
  unlock_slot_ref& r = t_unlock_slot;
  if (r.slot == nullptr) [[unlikely]]
    r.slot = claim_unlock_slot();
  return *r.slot;
}

}  // namespace

std::uintptr_t owner_token() noexcept {
  if (fiber* f = current_fiber()) return reinterpret_cast<std::uintptr_t>(f);
  return reinterpret_cast<std::uintptr_t>(&t_thread_token);
}

}  // namespace detail

void mutex::lock_slow(std::int32_t old) {
  using namespace detail;
  nanos wait_start = 0;
  bool starving = false;
  bool awoke = false;
  int iter = 0;
  if (!contended_.load(std::memory_order_relaxed)) {
    contended_.store(true, std::memory_order_relaxed);  // published by the CASes below
  }
  for (;;) {
    // Spin while it is held in normal mode (in starvation mode ownership is
    // handed to the waiters, so spinning cannot get it).
    if ((old & (kLocked | kStarving)) == kLocked && can_spin(iter)) {
      // Set woken so that the unlocker does not wake a sleeper we would beat.
      if (!awoke && (old & kWoken) == 0 && (old >> kWaiterShift) != 0 &&
          state_.compare_exchange_weak(old, old | kWoken, std::memory_order_release,
                                       std::memory_order_relaxed)) {
        awoke = true;
      }
      spin();
      ++iter;
      old = state_.load(std::memory_order_relaxed);
      continue;
    }
    std::int32_t next = old;
    if ((old & kStarving) == 0) next |= kLocked;  // newcomers don't take a starving mutex
    if ((old & (kLocked | kStarving)) != 0) next += 1 << kWaiterShift;
    // Switch to starvation mode only if it is still held: an unlocked mutex
    // in starvation mode would expect a waiter that this unlock never woke.
    if (starving && (old & kLocked) != 0) next |= kStarving;
    if (awoke) {
      if ((next & kWoken) == 0) fatal("goro: internal error: inconsistent mutex state");
      next &= ~kWoken;
    }
    if (!state_.compare_exchange_weak(old, next, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      continue;  // `old` reloaded
    }
    if ((old & (kLocked | kStarving)) == 0) return;  // locked it with the CAS
    // Queue: at the back the first time, at the front after being woken.
    const bool lifo = wait_start != 0;
    if (wait_start == 0) wait_start = mono_now();
    bool queued = false;
    try {
      sema_acquire(&sema_, lifo, "mutex", &queued, this);
    } catch (...) {
      // Unwound at exit while still queued: count ourselves out. (Unwound
      // just after being woken, the unlocker already did.)
      if (queued) state_.fetch_sub(1 << kWaiterShift, std::memory_order_relaxed);
      throw;
    }
    starving = starving || mono_now() - wait_start > kStarvationThreshold;
    old = state_.load(std::memory_order_relaxed);
    if ((old & kStarving) != 0) {
      // Handed to us: the mutex is unlocked with the woken bit clear, and we
      // are still counted as a waiter.
      if ((old & (kLocked | kWoken)) != 0 || (old >> kWaiterShift) == 0) {
        fatal("goro: internal error: inconsistent mutex state");
      }
      std::int32_t delta = kLocked - (1 << kWaiterShift);
      // Leave starvation mode if we waited briefly or are the last waiter.
      if (!starving || (old >> kWaiterShift) == 1) delta -= kStarving;
      state_.fetch_add(delta, std::memory_order_acquire);
      return;
    }
    awoke = true;
    iter = 0;
  }
}

void mutex::unlock_slow(std::int32_t old, bool may_yield) {
  using namespace detail;
  if ((old & kLocked) == 0) throw std::logic_error("goro::mutex: unlock of unlocked mutex");
  // Announced while we still hold the lock (the release below publishes it),
  // so a fiber that locks, unlocks and destroys the mutex after our release
  // waits in ~mutex until we are done.
  unlock_slot& slot = my_unlock_slot();
  slot.mu.store(this, std::memory_order_relaxed);
  const std::int32_t now = state_.fetch_sub(kLocked, std::memory_order_release) - kLocked;
  if (auto hook = g_unlock_window_hook.load(std::memory_order_relaxed)) [[unlikely]]
    hook();
  bool yield_to_owner = false;
  if ((now & kStarving) != 0) {
    // Hand ownership to the first waiter; it sets the locked bit itself.
    // Newcomers see the starving bit and queue behind it.
    yield_to_owner = sema_release(&sema_, /*handoff=*/true) && may_yield;
  } else {
    old = now;
    for (;;) {
      // Nobody to wake, or someone else is already taking care of it: a
      // newcomer got the lock, a waiter is awake, or starvation began.
      if ((old >> kWaiterShift) == 0 || (old & (kLocked | kWoken | kStarving)) != 0) break;
      // Take one waiter off the count and wake it (it competes for the lock).
      const std::int32_t next = (old - (1 << kWaiterShift)) | kWoken;
      if (state_.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
        sema_release(&sema_, /*handoff=*/false);
        break;
      }
    }
  }
  slot.mu.store(nullptr, std::memory_order_release);  // our last access to *this is over
  // Let the new owner run now rather than when we next block (Go's goyield).
  if (yield_to_owner && current_fiber() != nullptr) yield_fiber();
}

void mutex::wait_unlockers() const noexcept {
  using namespace detail;
  for (unlock_slot* s = g_unlock_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    while (s->mu.load(std::memory_order_acquire) == this) {
      if (current_fiber() != nullptr) {
        yield_fiber();
      } else {
        std::this_thread::yield();
      }
    }
  }
}

void mutex::check_owner() const {
  const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
  if ((state_.load(std::memory_order_relaxed) & kLocked) == 0) {
    throw std::logic_error("goro::mutex: unlock of unlocked mutex");
  }
  if (o != 0 && o != detail::owner_token()) {
    throw std::logic_error("goro::mutex: unlock by a fiber or thread that does not hold it");
  }
}

// ---- shared_mutex ----------------------------------------------------------

void shared_mutex::lock_shared_slow() {
  // A writer holds or waits for the lock: queue behind it; its unlock()
  // releases one token per reader that counted itself meanwhile.
  detail::sema_acquire(&reader_sem_, false, "shared_mutex.lock_shared", nullptr, this);
}

void shared_mutex::unlock_shared_slow(std::int32_t r) {
  if (r + 1 == 0 || r + 1 == -kMaxReaders) {
    readers_.fetch_add(1, std::memory_order_relaxed);  // undo
    throw std::logic_error("goro::shared_mutex: unlock_shared without a shared lock");
  }
  // A writer is waiting: the last reader it waits for wakes it.
  if (departing_.fetch_sub(1, std::memory_order_acq_rel) - 1 == 0) {
    detail::sema_release(&writer_sem_, false);
  }
}

void shared_mutex::lock() {
  w_.lock();  // first, against other writers
  // The previous writer unlocks w_ before it gives readers_ back (see
  // unlock()): wait for that, briefly.
  while (readers_.load(std::memory_order_acquire) < 0) {
    if (detail::current_fiber() != nullptr) {
      detail::yield_fiber();
    } else {
      std::this_thread::yield();
    }
  }
  // Announce the writer: new readers now queue. `r` readers are inside.
  const std::int32_t r = readers_.fetch_sub(kMaxReaders, std::memory_order_acq_rel);
  if (r != 0 && departing_.fetch_add(r, std::memory_order_acq_rel) + r != 0) {
    try {
      detail::sema_acquire(&writer_sem_, false, "shared_mutex.lock", nullptr, this);
    } catch (...) {
      // Unwound at exit: undo the announcement (the readers' departures
      // then no longer expect a writer).
      readers_.fetch_add(kMaxReaders, std::memory_order_relaxed);
      w_.unlock();
      throw;
    }
  }
}

bool shared_mutex::try_lock() noexcept {
  if (!w_.try_lock()) return false;
  std::int32_t zero = 0;
  if (!readers_.compare_exchange_strong(zero, -kMaxReaders, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
    w_.unlock();
    return false;
  }
  return true;
}

void shared_mutex::unlock() {
  // Misuse is refused before anything changes.
  if (readers_.load(std::memory_order_relaxed) >= 0) {
    throw std::logic_error("goro::shared_mutex: unlock of a shared_mutex not locked exclusively");
  }
  if constexpr (GORO_MUTEX_OWNER_CHECKS) w_.check_owner();
  // w_ first, then readers_, then the queued readers' tokens: once readers_
  // is given back, readers arriving now get in at once and may finish and
  // free the shared_mutex (the last reader may drop the last reference to
  // the object holding it), so that add must be our last access to *this
  // unless readers are queued (they need our tokens first, which keeps it
  // alive; sema_release touches only the wait table after its add). A
  // writer that takes w_ in between waits for readers_ to be given back.
  w_.unlock_impl(/*may_yield=*/false);  // no hand-off switch before readers_ is back
  const std::int32_t r = readers_.fetch_add(kMaxReaders, std::memory_order_release) + kMaxReaders;
  for (std::int32_t i = 0; i < r; ++i) detail::sema_release(&reader_sem_, false);
}

}  // namespace goro
