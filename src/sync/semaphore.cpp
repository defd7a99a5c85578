// src/sync/semaphore.cpp — goro::semaphore (x/sync/semaphore's algorithm).
//
// A spinlock guards the count of permits held and a FIFO list of waiters
// (records on their stacks). release() grants permits to the waiters at the
// front while they fit, unlinks them, and wakes them after unlocking: a woken
// waiter already holds its permits. A waiter whose context ends unlinks
// itself (src/wait/wake_sources.hpp) and, if it was first, lets the ones
// behind it that now fit go.
#include <stdexcept>

#include "absl/strings/str_format.h"
#include "goro/context.hpp"
#include "goro/semaphore.hpp"
#include "wait/wake_sources.hpp"

namespace goro {
namespace detail {

struct sem_waiter {
  std::int64_t n = 0;
  parker pk;
  sem_waiter* prev = nullptr;
  sem_waiter* next = nullptr;
  bool linked = false;  // guarded by the semaphore's spinlock
};

}  // namespace detail

using detail::sem_waiter;

semaphore::semaphore(std::int64_t size) : size_(size) {
  if (size < 0) {
    throw std::invalid_argument(absl::StrFormat("goro::semaphore: negative size %d", size));
  }
}

sem_waiter* semaphore::grant_locked() {
  sem_waiter* woken = nullptr;
  sem_waiter** tail = &woken;
  // Strictly FIFO: a waiter that does not fit blocks those behind it, so a
  // large request is not starved by a stream of small ones.
  while (!q_.empty() && size_ - cur_ >= q_.head->n) {
    sem_waiter* w = q_.pop_front();
    cur_ += w->n;
    *tail = w;
    tail = &w->next;
  }
  return woken;
}

void semaphore::wake_all(sem_waiter* w) {
  while (w != nullptr) {
    sem_waiter* next = w->next;  // before unpark: the record may vanish
    w->pk.unpark();
    w = next;
  }
}

absl::Status semaphore::acquire_impl(const context* ctx, std::int64_t n) {
  if (n < 0 || n > size_) {
    std::string msg = absl::StrFormat(
        "goro::semaphore::acquire: %d permits requested of a semaphore of %d", n, size_);
    if (ctx == nullptr) throw std::invalid_argument(msg);
    return absl::InvalidArgumentError(msg);
  }
  if (ctx != nullptr) {
    // An ended context fails even if permits are free (as x/sync).
    if (absl::Status st = ctx->err(); !st.ok()) return st;
  }
  mu_.lock();
  if (q_.empty() && size_ - cur_ >= n) {
    cur_ += n;
    mu_.unlock();
    return absl::OkStatus();
  }
  sem_waiter w;
  w.n = n;
  q_.push_back(&w);
  auto unlock = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.unlock(); };
  auto remove = [this, &w] {
    sem_waiter* woken = nullptr;
    {
      std::lock_guard g(mu_);
      if (!w.linked) return false;  // granted meanwhile
      const bool first = q_.head == &w;
      q_.remove(&w);
      // Those behind us may fit now that we no longer block them.
      if (first) woken = grant_locked();
    }
    wake_all(woken);
    return true;
  };
  detail::woke_by by = detail::woke_by::signal;
  try {
    if (ctx == nullptr) {
      w.pk.park(unlock, "semaphore", this);
    } else {
      by = detail::park_until(w.pk, unlock, "semaphore", detail::kNoTimer, ctx, remove, this);
    }
  } catch (...) {
    // Unwound at runtime exit: give back what we may have been granted.
    if (!remove()) release(n);
    throw;
  }
  if (by == detail::woke_by::context) return ctx->err();
  if (ctx != nullptr) {
    // Granted, but the context ended meanwhile: x/sync reports the end and
    // gives the permits back, so a caller that checks the status never
    // proceeds after cancellation.
    if (absl::Status st = ctx->err(); !st.ok()) {
      release(n);
      return st;
    }
  }
  return absl::OkStatus();
}

void semaphore::acquire(std::int64_t n) { (void)acquire_impl(nullptr, n); }

absl::Status semaphore::acquire(const context& ctx, std::int64_t n) {
  return acquire_impl(&ctx, n);
}

bool semaphore::try_acquire(std::int64_t n) {
  if (n < 0) {
    throw std::invalid_argument(
        absl::StrFormat("goro::semaphore::try_acquire: negative count %d", n));
  }
  std::lock_guard g(mu_);
  if (!q_.empty() || size_ - cur_ < n) return false;
  cur_ += n;
  return true;
}

void semaphore::release(std::int64_t n) {
  if (n < 0) {
    throw std::invalid_argument(absl::StrFormat("goro::semaphore::release: negative count %d", n));
  }
  sem_waiter* woken = nullptr;
  {
    std::lock_guard g(mu_);
    if (n > cur_) {
      throw std::logic_error(absl::StrFormat(
          "goro::semaphore::release: released %d permits but only %d are held", n, cur_));
    }
    cur_ -= n;
    woken = grant_locked();
  }
  wake_all(woken);
}

}  // namespace goro
