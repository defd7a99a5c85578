// src/wait/wait_table.cpp — see wait_table.hpp.
#include "wait/wait_table.hpp"

#include <cstdint>

#include "goro/detail/spinlock.hpp"
#include "goro/detail/wait_list.hpp"
#include "wait/wake_sources.hpp"

namespace goro::detail {
namespace {

// Go uses 251 buckets; a power of two lets us mask. Collisions only cost a
// longer list walk under a short lock.
constexpr std::size_t kBuckets = 256;

struct alignas(64) bucket {
  spinlock mu;
  // Semaphore waiters queued here (any key): lets sema_release skip the lock
  // when nobody waits (Dekker with sema_acquire, both seq_cst).
  std::atomic<std::uint32_t> nwait{0};
  wait_list<table_waiter> q ABSL_GUARDED_BY(mu);
};

bucket g_buckets[kBuckets];

bucket& bucket_for(const void* key) {
  auto k = reinterpret_cast<std::uintptr_t>(key);
  k ^= k >> 17;
  k *= 0x9E3779B97F4A7C15ULL;
  return g_buckets[(k >> 32) % kBuckets];
}

table_waiter* first_of(bucket& b, const void* key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b.mu) {
  for (table_waiter* w = b.q.head; w != nullptr; w = w->next) {
    if (w->key == key) return w;
  }
  return nullptr;
}

bool try_take(std::atomic<std::uint32_t>* addr) {
  std::uint32_t v = addr->load(std::memory_order_seq_cst);
  while (v != 0) {
    if (addr->compare_exchange_weak(v, v - 1, std::memory_order_seq_cst)) return true;
  }
  return false;
}

}  // namespace

bool wait_on_impl(const void* key, absl::FunctionRef<bool()> should_wait, const char* reason,
                  const context* ctx, absl::FunctionRef<void()> on_leave) {
  bucket& b = bucket_for(key);
  table_waiter w;
  w.key = key;
  b.mu.lock();
  if (!should_wait()) {
    b.mu.unlock();
    return true;
  }
  b.q.push_back(&w);
  auto unlock = [&b]() ABSL_NO_THREAD_SAFETY_ANALYSIS { b.mu.unlock(); };
  auto remove = [&b, &w, &on_leave] {
    std::lock_guard lk(b.mu);
    if (!w.linked) return false;
    b.q.remove(&w);
    on_leave();
    return true;
  };
  try {
    if (ctx == nullptr) {
      w.pk.park(unlock, reason, key);
      return true;
    }
    return park_until(w.pk, unlock, reason, kNoTimer, ctx, remove, key) != woke_by::context;
  } catch (...) {
    // Unwound at shutdown while queued: leave no dangling record behind.
    remove();
    throw;
  }
}

namespace {

// Unlinks up to `n` waiters of `key` (lock held), chained through `next`.
table_waiter* take(bucket& b, const void* key, std::size_t n, std::size_t* count)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(b.mu) {
  table_waiter* woken = nullptr;  // FIFO order
  table_waiter** tail = &woken;
  *count = 0;
  for (table_waiter* w = b.q.head; w != nullptr && *count < n;) {
    table_waiter* nx = w->next;
    if (w->key == key) {
      b.q.remove(w);
      *tail = w;
      tail = &w->next;
      ++*count;
    }
    w = nx;
  }
  return woken;
}

void unpark_all(table_waiter* w) {
  while (w != nullptr) {
    table_waiter* nx = w->next;  // read before unpark: the record may vanish
    w->pk.unpark();
    w = nx;
  }
}

}  // namespace

std::size_t wake_claimed(const void* key, absl::FunctionRef<std::size_t()> claim) {
  bucket& b = bucket_for(key);
  std::size_t count = 0;
  b.mu.lock();
  table_waiter* woken = take(b, key, claim(), &count);
  b.mu.unlock();
  unpark_all(woken);
  return count;
}

void sema_acquire(std::atomic<std::uint32_t>* addr, bool lifo, const char* reason,
                  bool* unwound_queued, const void* obj) {
  if (try_take(addr)) return;
  bucket& b = bucket_for(addr);
  for (;;) {
    // A fresh record each round: a thread's parker is single-use.
    table_waiter w;
    w.key = addr;
    b.mu.lock();
    b.nwait.fetch_add(1, std::memory_order_seq_cst);
    if (try_take(addr)) {
      b.nwait.fetch_sub(1, std::memory_order_relaxed);
      b.mu.unlock();
      return;
    }
    if (lifo) {
      b.q.push_front(&w);
    } else {
      b.q.push_back(&w);
    }
    auto unlock = [&b]() ABSL_NO_THREAD_SAFETY_ANALYSIS { b.mu.unlock(); };
    try {
      w.pk.park(unlock, reason, obj != nullptr ? obj : addr);
    } catch (...) {
      b.mu.lock();
      const bool queued = w.linked;
      if (queued) {
        b.q.remove(&w);
        b.nwait.fetch_sub(1, std::memory_order_relaxed);
      }
      b.mu.unlock();
      if (unwound_queued != nullptr) *unwound_queued = queued;
      throw;
    }
    // The releaser dequeued us (and counted us out of nwait).
    if (w.ticket || try_take(addr)) return;
    lifo = true;  // woken but beaten to the token: keep our place at the front
  }
}

bool sema_release(std::atomic<std::uint32_t>* addr, bool handoff) {
  addr->fetch_add(1, std::memory_order_seq_cst);
  bucket& b = bucket_for(addr);
  if (b.nwait.load(std::memory_order_seq_cst) == 0) return false;
  b.mu.lock();
  if (b.nwait.load(std::memory_order_relaxed) == 0) {
    b.mu.unlock();
    return false;
  }
  table_waiter* w = first_of(b, addr);
  if (w == nullptr) {
    b.mu.unlock();
    return false;
  }
  b.q.remove(w);
  b.nwait.fetch_sub(1, std::memory_order_relaxed);
  const bool ticket = handoff && try_take(addr);
  w->ticket = ticket;
  const bool fiber_waiter = w->pk.on_fiber();
  b.mu.unlock();
  w->pk.unpark();
  return ticket && fiber_waiter;
}

}  // namespace goro::detail
