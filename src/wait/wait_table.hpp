// src/wait/wait_table.hpp — wait queues keyed by address (Go's semtable).
//
// A primitive that needs to block (wait_group, mutex, shared_mutex) does not
// embed a queue: its waiters live in one of kBuckets global buckets chosen by
// the primitive's address. That is what makes "destroy the object as soon as
// wait() returns" safe: the waker's last touch of the object is the atomic
// that publishes the new state; the wake itself only touches the bucket
// (global, immortal) and the waiters' own records. Keys are compared by
// address; a waiter is woken only by a wake of its key that finds it queued.
//
// Lock order: a bucket lock is a leaf (nothing else is taken while held).
// Waiters of one key are woken in the order they queued (sema_acquire may
// queue at the front instead: see below).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"

namespace goro {
class context;
}

namespace goro::detail {

// Blocks the caller on `key` if `should_wait()` — evaluated under the bucket
// lock — returns true; the caller must make the condition visible to wakers
// inside should_wait (e.g. by counting itself as a waiter with a CAS), so a
// waker that then calls wake_claimed(key, ...) is guaranteed to find it. With a context,
// returns false if the context ended first (the waiter has left the queue).
// `on_leave` runs under the bucket lock if the waiter leaves the queue by
// itself (its context ended, or it is unwound at exit), so that a count of
// queued waiters kept in the primitive can stay exact.
template <class F>
bool wait_on(
    const void* key, F&& should_wait, const char* reason, const context* ctx = nullptr,
    absl::FunctionRef<void()> on_leave = [] {});

// Under the bucket lock, asks `claim()` how many waiters of `key` to take,
// and wakes that many, oldest first: a primitive that counts its waiters
// (wait_group) claims and dequeues them in one step. Returns how many.
std::size_t wake_claimed(const void* key, absl::FunctionRef<std::size_t()> claim);

// Go's runtime semaphore (semacquire/semrelease), the sleep/wake half of the
// mutexes: *addr counts wake-up tokens.
//   sema_acquire: takes a token, waiting for one if there is none; `lifo`
//     queues the caller at the front (a waiter that has already waited once,
//     as Go's mutex does for fairness).
//   sema_release: adds a token and wakes the first waiter. With `handoff`
//     the token is given to that waiter directly (it cannot be taken by a
//     newcomer); returns true if it was given to a fiber, which the caller
//     may then let run at once by yielding (Go's goyield).
// The release's last access to *addr is the token's add and, with handoff,
// the take on the waiter's behalf while the waiter is still queued.
// If a fiber is unwound at runtime exit while it waits, sema_acquire rethrows
// after setting *unwound_queued (if given) to whether it was still queued (a
// waiter already dequeued was counted out by its releaser).
// `obj` is what dumps name as waited on (default: addr).
void sema_acquire(std::atomic<std::uint32_t>* addr, bool lifo, const char* reason,
                  bool* unwound_queued = nullptr, const void* obj = nullptr);
bool sema_release(std::atomic<std::uint32_t>* addr, bool handoff);

}  // namespace goro::detail

#include "wait/wait_table_impl.hpp"
