// src/sched/futex.hpp — the thin futex wrapper under every OS-thread sleep.
//
// futex_wait sleeps while *word == expected (re-checked atomically by the
// kernel, so a wake between the caller's check and the sleep is not lost);
// it may return spuriously, so callers loop on their own condition.
// futex_wake may touch a word whose owner has already returned and gone: the
// kernel only hashes the address, so at worst a later sleeper on reused memory
// sees a spurious wake-up, which every caller tolerates.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace goro::detail {

inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

// Returns false on timeout. `rel` is a relative timeout.
inline bool futex_wait_for(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                           std::chrono::nanoseconds rel) {
  if (rel.count() <= 0) return false;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(rel.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(rel.count() % 1000000000);
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE,
                     expected, &ts, nullptr, 0);
  return !(r == -1 && errno == ETIMEDOUT);
}

inline void futex_wake(std::atomic<std::uint32_t>* word, int n = 1) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr,
            nullptr, 0);
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) { futex_wake(word, INT_MAX); }

}  // namespace goro::detail
