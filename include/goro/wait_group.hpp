// goro/wait_group.hpp — Go's sync.WaitGroup.
//
//   goro::wait_group wg;
//   for (int i = 0; i < n; ++i) {
//     wg.add(1);
//     goro::go([&wg] { work(); wg.done(); });
//   }
//   wg.wait();
//
// add(n) adds n (may be negative) to the counter; done() is add(-1); wait()
// blocks until the counter is zero; wait(ctx) also returns when ctx ends. A waiting fiber parks
// (its worker runs other fibers); a waiting plain OS thread blocks. Works with or without a runtime
// running (between plain threads).
//
// Misuse: a counter going negative throws std::logic_error (Go panics). As in
// Go, calls to add with a positive delta that start when the counter is zero
// must happen before wait().
//
// Lifetime: the wait_group may be destroyed as soon as wait() returns, even if
// the done() that released it has not returned yet: done()'s last access to
// the object is the atomic that publishes zero (waiters are queued and woken
// through a global table keyed by address, as Go's semaphores are).
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"

namespace goro {

class context;

class wait_group {
 public:
  wait_group() = default;
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  void add(std::int64_t delta);
  void done() { add(-1); }
  void wait();
  // Waits unless `ctx` ends first: OK, or ctx.err() (an already-ended
  // context returns its error at once).
  absl::Status wait(const context& ctx);

 private:
  bool wait_impl(const context* ctx);  // false: ctx ended first

  // High 32 bits: the counter (signed); low 32 bits: waiters registered.
  std::atomic<std::uint64_t> state_{0};
};

}  // namespace goro
