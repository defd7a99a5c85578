// src/sync/condition_variable.cpp — goro::condition_variable.
//
// A FIFO list of waiter records (on the waiters' stacks) under a spinlock.
// wait(): under the spinlock, link the record and release the user's mutex
// (so a notify that follows that release finds the record: no lost wake-up),
// then park, dropping the spinlock once off the stack (src/wait/parker.hpp).
// notify: unlink under the spinlock, unpark after it. A timed wait adds a
// deadline waker (src/wait/wake_sources.hpp) that unlinks the record itself.
// refs_ counts waiters between linking and their last access to *this, so
// that the destructor can wait them out (a notified waiter may still be
// disarming its deadline, which takes the spinlock).
#include <stdexcept>
#include <thread>

#include "goro/condition_variable.hpp"
#include "wait/wake_sources.hpp"

namespace goro {
namespace detail {

struct cv_waiter {
  parker pk;
  cv_waiter* prev = nullptr;
  cv_waiter* next = nullptr;
  bool linked = false;  // guarded by the condition variable's spinlock
};

}  // namespace detail

using detail::cv_waiter;

condition_variable::~condition_variable() {
  // Notified waiters may still be leaving (microseconds): let them run.
  while (refs_.load(std::memory_order_acquire) != 0) {
    if (detail::current_fiber() != nullptr) {
      detail::yield_fiber();
    } else {
      std::this_thread::yield();
    }
  }
}

void condition_variable::notify_one() noexcept {
  if (refs_.load(std::memory_order_acquire) == 0) return;
  mu_.lock();
  cv_waiter* w = q_.pop_front();
  mu_.unlock();
  if (w != nullptr) w->pk.unpark();
}

void condition_variable::notify_all() noexcept {
  if (refs_.load(std::memory_order_acquire) == 0) return;
  mu_.lock();
  cv_waiter* w = q_.take_all();
  mu_.unlock();
  while (w != nullptr) {
    cv_waiter* next = w->next;  // before unpark: the record may vanish
    w->pk.unpark();
    w = next;
  }
}

std::cv_status condition_variable::wait_impl(std::unique_lock<mutex>& lk, std::int64_t deadline) {
  using namespace detail;
  if (!lk.owns_lock()) {
    throw std::logic_error("goro::condition_variable::wait: the lock does not hold its mutex");
  }
  if (deadline != kNever && deadline <= mono_now()) return std::cv_status::timeout;
  mutex* m = lk.mutex();
  cv_waiter w;
  mu_.lock();
  q_.push_back(&w);
  // Counted before the user's mutex is released: a notifier that saw the
  // condition change under that mutex sees refs_ > 0 (its fast path).
  refs_.fetch_add(1, std::memory_order_relaxed);
  try {
    m->unlock_impl(/*may_yield=*/false);
  } catch (...) {
    q_.remove(&w);
    refs_.fetch_sub(1, std::memory_order_relaxed);
    mu_.unlock();
    throw;
  }
  lk.release();  // unlocked; owned again below
  auto unlock = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.unlock(); };
  auto remove = [this, &w] {
    std::lock_guard g(mu_);
    if (!w.linked) return false;
    q_.remove(&w);
    return true;
  };
  woke_by by = woke_by::signal;
  try {
    if (deadline == kNever) {
      w.pk.park(unlock, "cond wait", this);
    } else {
      by = park_until(w.pk, unlock, "cond wait", deadline, nullptr, remove, this);
    }
  } catch (...) {
    // Unwound at runtime exit: leave without the mutex (see the header).
    remove();
    refs_.fetch_sub(1, std::memory_order_release);
    throw;
  }
  refs_.fetch_sub(1, std::memory_order_release);  // our last access to *this
  m->lock();
  lk = std::unique_lock<mutex>(*m, std::adopt_lock);
  return by == woke_by::deadline ? std::cv_status::timeout : std::cv_status::no_timeout;
}

}  // namespace goro
