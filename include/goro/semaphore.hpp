// goro/semaphore.hpp — golang.org/x/sync/semaphore.Weighted.
//
//   goro::semaphore sem(8);                 semaphore.NewWeighted(8)
//   sem.acquire();  ...  sem.release();     Acquire(ctx, 1) / Release(1)
//   absl::Status st = sem.acquire(ctx, 2);  gives up when ctx ends
//   if (sem.try_acquire(3)) ...
//
// A weighted semaphore of `size` permits. Waiters are served strictly in
// arrival order: a request that does not fit blocks every later one, so a
// large request is never starved by a stream of small ones, and
// try_acquire() fails while anyone waits. A fiber that waits parks; an OS
// thread blocks.
//
// acquire(ctx, n) returns OK with n permits held, or ctx.err() holding none:
// a context that has already ended fails at once (even if permits are free);
// one that ends while waiting takes the waiter out of the queue (waking those
// behind it if they now fit); permits granted at the moment the context ended
// are given back. No permit leaks.
//
// Bad input: n < 0, or n > size (such a request could never be served: Go
// would block forever or until the context ends) throws std::invalid_argument
// from acquire(n) and returns InvalidArgument from acquire(ctx, n);
// releasing more than is held throws std::logic_error (Go panics).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/wait_list.hpp"

namespace goro {

class context;

namespace detail {
struct sem_waiter;
}

class semaphore {
 public:
  explicit semaphore(std::int64_t size);
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  void acquire(std::int64_t n = 1);
  absl::Status acquire(const context& ctx, std::int64_t n = 1);
  bool try_acquire(std::int64_t n = 1);
  void release(std::int64_t n = 1);

  std::int64_t size() const noexcept { return size_; }

 private:
  // OK, or the context's error; throws std::invalid_argument on bad n
  // (ctx == nullptr) or returns InvalidArgument (with a context).
  absl::Status acquire_impl(const context* ctx, std::int64_t n);
  // Grants permits to the waiters at the front that fit; returns them
  // unlinked (singly linked through `next`) to be woken after unlocking.
  detail::sem_waiter* grant_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void wake_all(detail::sem_waiter* w);

  const std::int64_t size_;
  detail::spinlock mu_;
  std::int64_t cur_ ABSL_GUARDED_BY(mu_) = 0;  // permits held
  detail::wait_list<detail::sem_waiter> q_ ABSL_GUARDED_BY(mu_);
};

}  // namespace goro
