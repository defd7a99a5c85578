// src/wait/wait_table.cpp — see wait_table.hpp.
#include "wait/wait_table.hpp"

#include <cstdint>

#include "goro/detail/spinlock.hpp"

namespace goro::detail {
namespace {

// Go uses 251 buckets; a power of two lets us mask. Collisions only cost a
// longer list walk under a short lock.
constexpr std::size_t kBuckets = 256;

struct alignas(64) bucket {
  spinlock mu;
  table_waiter* head ABSL_GUARDED_BY(mu) = nullptr;
  table_waiter* tail ABSL_GUARDED_BY(mu) = nullptr;
};

bucket g_buckets[kBuckets];

bucket& bucket_for(const void* key) {
  auto k = reinterpret_cast<std::uintptr_t>(key);
  k ^= k >> 17;
  k *= 0x9E3779B97F4A7C15ULL;
  return g_buckets[(k >> 32) % kBuckets];
}

void unlink(bucket& b, table_waiter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b.mu) {
  if (w->prev != nullptr) {
    w->prev->next = w->next;
  } else {
    b.head = w->next;
  }
  if (w->next != nullptr) {
    w->next->prev = w->prev;
  } else {
    b.tail = w->prev;
  }
  w->prev = w->next = nullptr;
  w->linked = false;
}

}  // namespace

void wait_on_impl(const void* key, absl::FunctionRef<bool()> should_wait, const char* reason) {
  bucket& b = bucket_for(key);
  table_waiter w;
  w.key = key;
  b.mu.lock();
  if (!should_wait()) {
    b.mu.unlock();
    return;
  }
  w.prev = b.tail;
  if (b.tail != nullptr) {
    b.tail->next = &w;
  } else {
    b.head = &w;
  }
  b.tail = &w;
  w.linked = true;
  auto unlock = [&b]() ABSL_NO_THREAD_SAFETY_ANALYSIS { b.mu.unlock(); };
  try {
    w.pk.park(unlock, reason);
  } catch (...) {
    // Unwound at shutdown while queued: leave no dangling record behind.
    b.mu.lock();
    if (w.linked) unlink(b, &w);
    b.mu.unlock();
    throw;
  }
}

std::size_t wake(const void* key, std::size_t n) {
  bucket& b = bucket_for(key);
  table_waiter* woken = nullptr;  // singly linked through `next`, FIFO order
  table_waiter** tail = &woken;
  std::size_t count = 0;
  b.mu.lock();
  for (table_waiter* w = b.head; w != nullptr && count < n;) {
    table_waiter* nx = w->next;
    if (w->key == key) {
      unlink(b, w);
      *tail = w;
      tail = &w->next;
      ++count;
    }
    w = nx;
  }
  b.mu.unlock();
  while (woken != nullptr) {
    table_waiter* nx = woken->next;  // read before unpark: the record may vanish
    woken->pk.unpark();
    woken = nx;
  }
  return count;
}

}  // namespace goro::detail
