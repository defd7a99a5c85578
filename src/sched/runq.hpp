// src/sched/runq.hpp — a P's local run queue: bounded, lock-free, stealable.
//
// Algorithm: Go's runq (runtime/proc.go runqput/runqget/runqgrab), a
// single-producer multi-consumer ring of kSize slots:
//   * only the owning P pushes, and only it writes `tail_`;
//   * the owner and thieves consume by CAS on `head_`;
//   * a thief copies slots [head, head+n) and then CASes head forward; if the
//     owner (or another thief) consumed them meanwhile the CAS fails and the
//     copy is discarded. Slots are atomics (relaxed) because that discarded
//     copy may race with the owner overwriting the slot.
// Orderings: the owner's store to a slot happens-before its release store of
// `tail_`; consumers acquire `tail_` before reading slots. Consumers' CAS on
// `head_` is release so the owner's acquire load of `head_` before reusing a
// slot sees the consumer's read done (no overwrite of a slot being read).
// head/tail are free-running uint32 counters (wrap-around is harmless:
// t - h is the length modulo 2^32 and never exceeds kSize).
//
// Alternative rejected: a Chase–Lev deque. Its LIFO owner end is great for
// fork/join but unfair for Go semantics (a yielding fiber could starve the
// queue); `runnext` gives the LIFO benefit for the one fiber that matters.
#pragma once

#include <atomic>
#include <cstdint>

namespace goro::detail {

struct fiber;

class runq {
 public:
  static constexpr std::uint32_t kSize = 256;  // Go's size: fits a P's burst

  // Owner only. False if full (the caller then moves half to the global
  // queue with take_half()).
  bool push(fiber* f) {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h >= kSize) return false;
    slot(t).store(f, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Owner only: moves the older half of a full queue into out[0..n) and
  // returns n (0 if it lost a race with thieves: just retry push).
  std::uint32_t take_half(fiber** out) {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t n = (t - h) / 2;
    if (n != kSize / 2) return 0;  // not full any more: thieves took some
    for (std::uint32_t i = 0; i < n; ++i) out[i] = slot(h + i).load(std::memory_order_relaxed);
    if (!head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) return 0;
    return n;
  }

  // Owner (or, during shutdown, anyone with the queue quiescent).
  fiber* pop() {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      fiber* f = slot(h).load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return f;
      }
    }
  }

  // Thief: moves about half of `victim`'s fibers into this (empty, owned)
  // queue and returns one of them to run, or nullptr.
  fiber* steal_from(runq& victim) {
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    for (;;) {
      std::uint32_t h = victim.head_.load(std::memory_order_acquire);
      std::uint32_t vt = victim.tail_.load(std::memory_order_acquire);
      std::uint32_t n = vt - h;
      n -= n / 2;
      if (n == 0) return nullptr;
      if (n > kSize / 2) continue;  // inconsistent h/t read: retry
      for (std::uint32_t i = 0; i < n; ++i) {
        slot(t + i).store(victim.slot(h + i).load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
      }
      if (victim.head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) {
        fiber* f = slot(t + n - 1).load(std::memory_order_relaxed);
        if (n > 1) tail_.store(t + n - 1, std::memory_order_release);
        return f;
      }
    }
  }

  // Owner only: the fiber `ahead` places after the next one to be taken, or
  // null. A hint for prefetching (a thief may take it meanwhile).
  fiber* peek(std::uint32_t ahead) {
    std::uint32_t h = head_.load(std::memory_order_relaxed) + ahead;
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    return static_cast<std::int32_t>(t - h) > 0 ? slot(h).load(std::memory_order_relaxed) : nullptr;
  }

  bool empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }
  // Fibers consumed so far (mod 2^32), by the owner or thieves: a monitor
  // that sees it unchanged while the queue is not empty knows nobody takes.
  std::uint32_t taken() const { return head_.load(std::memory_order_relaxed); }
  std::uint32_t size() const {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire);
  }

 private:
  std::atomic<fiber*>& slot(std::uint32_t i) { return buf_[i % kSize]; }

  alignas(64) std::atomic<std::uint32_t> head_{0};  // consumers CAS; owner reads
  alignas(64) std::atomic<std::uint32_t> tail_{0};  // owner writes; thieves read
  std::atomic<fiber*> buf_[kSize] = {};
};

}  // namespace goro::detail
