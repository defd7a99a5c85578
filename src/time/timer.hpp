// src/time/timer.hpp — the runtime's timers: per-P heaps polled by the
// scheduler (Go's design: runtime/time.go).
//
// Every P owns a 4-ary min-heap of timer_node pointers ordered by `when`,
// guarded by the heap's spinlock, with the earliest deadline mirrored in the
// atomic `first` so the scheduler can check "anything due?" with one load.
// A timer goes into the heap of the P that arms it (P 0 for a plain OS
// thread) and stays there until it fires or is deleted.
//
// Who runs them: a worker runs the due timers of every P each time it enters
// its scheduling loop (g0), which also covers "stealing" the timers of a P
// whose worker is busy; park()/yield() on a P with a due timer switch through
// g0 instead of straight to the next fiber, so a busy P fires its own timers
// at its next switch. Callbacks run on g0 with no lock held.
//
// Sleeping: one idle worker at a time is the timed sleeper; it sleeps on its
// futex until the earliest deadline of all heaps (so an idle runtime uses no
// CPU and wakes exactly when needed); the others sleep until woken. A timer
// armed earlier than the timed sleeper's deadline wakes it (Dekker pairing:
// the arming side publishes `first`, fences, reads `timed_deadline`; the
// sleeper publishes `timed_deadline`, fences, re-reads every `first`).
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <vector>

#include "goro/detail/spinlock.hpp"

namespace goro::detail {

struct processor;
struct sched;
struct worker;

using nanos = std::int64_t;  // steady_clock nanoseconds since its epoch
inline constexpr nanos kNoTimer = INT64_MAX;

inline nanos mono_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `now + d` without overflow (a huge duration means "never").
inline nanos deadline_after(nanos now, nanos d) {
  if (d <= 0) return now;
  return d > kNoTimer - 1 - now ? kNoTimer - 1 : now + d;
}

struct timer_node;
// Runs with no lock held, on a worker's g0 (or on the thread that deletes the
// runtime's timers at exit, never). `seq` is the node's seq when it was taken
// out of the heap; `now` the time the batch was taken.
using timer_fire = void (*)(timer_node* n, std::uint64_t seq, nanos now);
// Reference counting for nodes owned by handles (null: the node's owner keeps
// it alive until it is deleted or has fired, e.g. a sleeping fiber's frame).
using timer_ref = void (*)(timer_node* n, int delta);

struct fiber;

struct timer_node {
  nanos when = 0;
  nanos period = 0;  // > 0: re-armed after each fire (a ticker)
  timer_fire fire = nullptr;
  // Instead of `fire`: the parked fiber to ready (a sleep). The runner readies
  // a batch of these at once. The node may be gone as soon as it is readied.
  fiber* wake = nullptr;
  timer_ref ref = nullptr;
  // Bumped by the owner to invalidate fires already taken out of the heap.
  std::atomic<std::uint64_t> seq{0};
  // The seq of a fire taken out of the heap and not yet handled by `fire`
  // (set under the heap lock; the owner's fire callback clears it).
  std::atomic<std::uint64_t> inflight{~std::uint64_t{0}};
  // Heap holding it, or null (for a sleep: the heap it went into; see timer_slot).
  std::atomic<processor*> owner{nullptr};
  std::int32_t idx = -1;  // position in owner's heap (unless `wake` is set)
};

// A heap slot keeps the deadline beside the pointer: sifting compares
// deadlines without touching the nodes (which live all over memory, e.g. on
// 100k sleeping fibers' stacks).
//   A sleeping fiber's slot holds the fiber itself (low bit set), not its
// node: firing it readies the fiber without touching the node, which sits
// in the sleeper's frame on a cold stack (with 100k sleepers that miss, taken
// under the heap lock, was most of the cost of firing them; the other worker
// spun on the lock meanwhile). Such a node is never deleted while the runtime
// runs, only when unwinding at exit (timer_del scans for the fiber then), so
// its heap position is not kept and its `owner` is not cleared when it fires.
struct timer_slot {
  nanos when;
  std::uintptr_t bits;  // a timer_node*, or a sleeping fiber* | 1

  static timer_slot of_node(nanos when, timer_node* n) {
    return {when, reinterpret_cast<std::uintptr_t>(n)};
  }
  static timer_slot of_sleeper(nanos when, fiber* f) {
    return {when, reinterpret_cast<std::uintptr_t>(f) | 1};
  }
  bool is_sleeper() const { return (bits & 1) != 0; }
  timer_node* node() const { return reinterpret_cast<timer_node*>(bits); }  // !is_sleeper()
  fiber* sleeper() const { return reinterpret_cast<fiber*>(bits & ~std::uintptr_t{1}); }
};

struct timer_heap {
  spinlock mu;
  std::vector<timer_slot> h ABSL_GUARDED_BY(mu);
  std::atomic<nanos> first{kNoTimer};  // h[0]->when, or kNoTimer
};

// Arms `n` (not in any heap) to fire at `when`. On a worker: into its P's
// heap; on a plain OS thread: into P 0's heap. Throws runtime_error when no
// runtime is running.
void timer_add(timer_node* n, nanos when);
// Takes `n` out of its heap. True if it was there (so it will not fire).
bool timer_del(timer_node* n);

// Scheduler hooks (sched.cpp, fiber.cpp, runtime.cpp).
inline bool timers_due(const timer_heap& t) {
  nanos f = t.first.load(std::memory_order_relaxed);
  return f != kNoTimer && f <= mono_now();
}
// Fires every due timer of every P. True if it fired any.
bool run_all_timers(sched* s);
// The earliest deadline over all Ps (kNoTimer: none).
nanos next_timer(sched* s);
// Wakes the timed sleeper (or an idle worker) if `when` is earlier than what
// it sleeps until. Called after a new earliest timer on some P.
void timer_wake(sched* s, nanos when);
// At exit, with the workers gone: drops every armed timer.
void clear_timers(sched* s);

}  // namespace goro::detail
