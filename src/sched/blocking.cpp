// src/sched/blocking.cpp — goro::blocking's thread pool (API in goro/blocking.hpp).
//
// One process-wide pool of plain OS threads, created on first use and never
// destroyed: its threads are detached, and an idle one may still be waiting on
// the pool's condition variable while static destructors run at exit. A job
// record (blocking_job) lives on the calling fiber's stack.
//
// Submitting, on the calling fiber (blocking_submit):
//   1. announce(): count the job in `announced_` and, if every idle thread is
//      already spoken for (idle_ < queued_ + announced_) and the limit allows,
//      start a thread. Starting a thread can fail (std::system_error), so it
//      happens here, where the exception reaches the caller, and not in the
//      park callback, which must not throw.
//   2. park(unlock = push): the callback queues the record and wakes an idle
//      thread. The pool sees the record only once the fiber is parked, so the
//      pool's unpark can never come before the park (src/wait/parker.hpp).
// Running, on a pool thread: take the oldest record, run its job, then
// finish(): under a shared lock of g_gate, set `done`, and
//   * if a runtime is running (g_sched non-null), unpark the fiber (ready()).
//     While the gate is held shared, run() cannot clear g_sched, and it
//     unwinds fibers only after clearing it (runtime.cpp, steps 4-5), so the
//     fiber is still parked and its scheduler alive. It is the fiber's own
//     scheduler: the run() it belongs to cannot end before this job does, so
//     no other run() can have started.
//   * else run() is unwinding: the fiber is (or will be) resumed by the
//     unwinder, never by a ready(), so wake it through `done` instead.
//   Setting `done` and the futex wake (which only hashes the address) are the
//   last accesses to the record; after unpark() it is not touched either.
// Forced unwinding: like other primitives, a fiber whose park() throws at exit
// unlinks its record if it is still queued (the job never runs). But a job
// already running cannot be unlinked, and it may still write the fiber's
// stack (the result slot, f's captures). The fiber cannot park again while
// being unwound, so it waits for `done` on a futex (blocking the unwinding
// thread, i.e. run()'s caller) and then rethrows.
//
// Counting, under mu_: nthreads_ threads exist or are starting; idle_ of them
// run no job (a starting thread counts as idle); the demand is the queued jobs
// plus the announced ones. A thread exits after kIdleExit without a job if the
// idle threads outnumber the announced jobs, and at once if nthreads_ > max_
// (the limit was lowered), passing on the wake-up it may have taken.
// fork(): the child has none of the pool's threads, so a child handler gives
// it a fresh pool (the old one stays reachable, for leak checkers).
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "goro/blocking.hpp"
#include "sched/futex.hpp"
#include "sched/sched.hpp"
#include "wait/parker.hpp"

namespace goro::detail {
namespace {

constexpr int kDefaultMaxThreads = 64;
constexpr auto kIdleExit = std::chrono::seconds(10);

struct blocking_job {
  explicit blocking_job(absl::AnyInvocable<void() &&> f) : fn(std::move(f)) {}
  absl::AnyInvocable<void() &&> fn;
  parker pk;                           // the calling fiber
  blocking_job* next = nullptr;        // the pool's FIFO (guarded by its mu_)
  std::atomic<std::uint32_t> done{0};  // 1 once fn has run; futex word for an unwound caller
};

// Called by a pool thread once the job has run; the last access to `j`.
void finish(blocking_job* j) {
  std::shared_lock gate(g_gate);
  const bool live = g_sched.load(std::memory_order_acquire) != nullptr;
  j->done.store(1, std::memory_order_release);
  if (live) {
    j->pk.unpark();
  } else {
    futex_wake(&j->done);
  }
}

class blocking_pool {
 public:
  blocking_pool(int max, blocking_pool* prev) : prev_(prev), max_(max) {}

  int max() const { return max_.load(std::memory_order_relaxed); }

  // Step 1 of a submission (see the top of the file).
  void announce() {
    {
      std::lock_guard lk(mu_);
      ++announced_;
      if (idle_ >= queued_ + announced_ || nthreads_ >= max()) return;
      ++nthreads_;
      ++idle_;
    }
    try {
      start_thread();
    } catch (...) {  // std::system_error, or std::bad_alloc
      std::lock_guard lk(mu_);
      --nthreads_;
      --idle_;
      if (nthreads_ > 0) return;  // the job waits for a thread that exists
      --announced_;
      throw;
    }
  }

  // Step 2: the park callback. Runs on the next context; must not throw.
  void push(blocking_job* j) {
    {
      std::lock_guard lk(mu_);
      --announced_;
      if (tail_ != nullptr) {
        tail_->next = j;
      } else {
        head_ = j;
      }
      tail_ = j;
      ++queued_;
    }
    cv_.notify_one();
  }

  // A caller unwound at exit: takes its job out if no thread has started it.
  bool cancel(blocking_job* j) {
    std::lock_guard lk(mu_);
    blocking_job* prev = nullptr;
    for (blocking_job* q = head_; q != nullptr; prev = q, q = q->next) {
      if (q != j) continue;
      (prev != nullptr ? prev->next : head_) = j->next;
      if (tail_ == j) tail_ = prev;
      --queued_;
      return true;
    }
    return false;
  }

  void set_max(int n) {
    int start = 0;
    {
      std::lock_guard lk(mu_);
      max_.store(n, std::memory_order_relaxed);
      start = std::max(0, std::min(queued_ + announced_ - idle_, n - nthreads_));
      nthreads_ += start;
      idle_ += start;
    }
    cv_.notify_all();  // surplus idle threads exit
    for (int i = 0; i < start; ++i) {
      try {
        start_thread();
      } catch (...) {
        std::lock_guard lk(mu_);
        nthreads_ -= start - i;
        idle_ -= start - i;
        throw;
      }
    }
  }

 private:
  void start_thread() {
    std::thread([this] { thread_main(); }).detach();
  }

  void thread_main() {
    thread_count_scope counted(g_runtime_threads);
    pthread_setname_np(pthread_self(), "goro-blocking");
    std::unique_lock lk(mu_);
    auto idle_since = std::chrono::steady_clock::now();
    for (;;) {
      if (nthreads_ > max()) break;
      if (head_ != nullptr) {
        blocking_job* j = head_;
        head_ = j->next;
        if (head_ == nullptr) tail_ = nullptr;
        --queued_;
        --idle_;
        lk.unlock();
        try {
          std::move(j->fn)();
        } catch (...) {
          fatal("goro: internal error: a blocking job threw");
        }
        finish(j);
        lk.lock();
        ++idle_;
        idle_since = std::chrono::steady_clock::now();
        continue;
      }
      if (cv_.wait_until(lk, idle_since + kIdleExit) == std::cv_status::timeout &&
          head_ == nullptr) {
        if (idle_ > announced_) break;
        idle_since = std::chrono::steady_clock::now();  // an announced job needs us
      }
    }
    --nthreads_;
    --idle_;
    const bool pass_on = head_ != nullptr;
    lk.unlock();
    if (pass_on) cv_.notify_one();
  }

  blocking_pool* const prev_;  // the parent's pool, in a forked child
  std::mutex mu_;
  std::condition_variable cv_;  // idle threads wait here for a job
  std::atomic<int> max_;        // written under mu_
  blocking_job* head_ ABSL_GUARDED_BY(mu_) = nullptr;
  blocking_job* tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  int queued_ ABSL_GUARDED_BY(mu_) = 0;
  int announced_ ABSL_GUARDED_BY(mu_) = 0;
  int nthreads_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
};

// Written once at first use, and again only in a forked child (which then
// runs a single thread).
blocking_pool* g_pool = nullptr;

blocking_pool& pool() {
  [[maybe_unused]] static const bool init = [] {
    g_pool = new blocking_pool(kDefaultMaxThreads, nullptr);
    pthread_atfork(nullptr, nullptr, [] { g_pool = new blocking_pool(g_pool->max(), g_pool); });
    return true;
  }();
  return *g_pool;
}

}  // namespace

bool blocking_offloads() noexcept {
  fiber* f = current_fiber();
  return f != nullptr && !f->unwinding;
}

void blocking_submit(absl::AnyInvocable<void() &&> job) {
  if (!blocking_offloads()) {
    std::move(job)();
    return;
  }
  blocking_pool& p = pool();
  blocking_job j(std::move(job));
  p.announce();
  auto unlock = [&p, &j] { p.push(&j); };
  try {
    j.pk.park(unlock, "blocking", &j);
  } catch (const forced_unwind&) {
    // Unwound at exit. A job no thread has started is dropped; a running one
    // may still use this stack, so wait for it.
    if (p.cancel(&j)) throw;
    while (j.done.load(std::memory_order_acquire) == 0) futex_wait(&j.done, 0);
    throw;
  }
}

}  // namespace goro::detail

namespace goro {

void set_max_blocking_threads(int n) {
  if (n < 1) throw std::invalid_argument("goro::set_max_blocking_threads: n must be at least 1");
  detail::pool().set_max(n);
}

int max_blocking_threads() { return detail::pool().max(); }

}  // namespace goro
