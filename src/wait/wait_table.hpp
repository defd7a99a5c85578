// src/wait/wait_table.hpp — wait queues keyed by address (Go's semtable).
//
// A primitive that needs to block (wait_group, and later others) does not
// embed a queue: its waiters live in one of kBuckets global buckets chosen by
// the primitive's address. That is what makes "destroy the object as soon as
// wait() returns" safe: the waker's last touch of the object is the atomic
// that publishes the new state; the wake itself only touches the bucket
// (global, immortal) and the waiters' own records. Keys are compared by
// address; a waiter is woken only by wake(key) calls that find it queued.
//
// Lock order: a bucket lock is a leaf (nothing else is taken while held).
// Waiters of one key are woken in FIFO order.
#pragma once

#include <cstddef>

namespace goro::detail {

// Blocks the caller on `key` if `should_wait()` — evaluated under the bucket
// lock — returns true; the caller must make the condition visible to wakers
// inside should_wait (e.g. by counting itself as a waiter with a CAS), so a
// waker that then calls wake(key) is guaranteed to find it.
template <class F>
void wait_on(const void* key, F&& should_wait, const char* reason);

// Wakes up to `n` waiters queued on `key`, oldest first. Returns how many.
std::size_t wake(const void* key, std::size_t n);

}  // namespace goro::detail

#include "wait/wait_table_impl.hpp"
