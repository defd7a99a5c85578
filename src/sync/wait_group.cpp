// src/sync/wait_group.cpp — goro::wait_group (Go's sync.WaitGroup design).
//
// state_ packs counter (high 32, signed) and waiter count (low 32) in one
// atomic so that "counter reached zero" and "how many wait" are read together.
// Protocol:
//   wait():  if state == 0 return (nothing pending, no wake in flight).
//            Else, under the wait-table bucket lock for &state_, CAS waiters+1
//            (only while the counter is non-zero or a wake is in flight) and
//            queue; park.
//   add(d):  s = fetch_add(d << 32). If the new counter is > 0, or there are
//            no waiters, return. If it is zero with w waiters: under the
//            bucket lock, CAS the waiter bits to zero (a waiter that
//            registered meanwhile is included) and dequeue exactly that many
//            waiters of &state_; wake them after the lock. That CAS is
//            done()'s last access to *this.
// A wait() that sees the counter at zero but waiters still set (a wake in
// flight) registers too and is woken by the same add(), so it never returns
// while that add() still touches the object.
// Registration, the claim and a waiter leaving early (wait(ctx)) all happen
// under the wait-table bucket lock, so the waiter bits equal the waiters
// queued whenever that lock is free.
#include <stdexcept>

#include "goro/wait_group.hpp"

#include "goro/context.hpp"
#include "wait/wait_table.hpp"

namespace goro {
namespace {

constexpr std::uint64_t kWaiterMask = 0xffffffffULL;

std::int32_t counter_of(std::uint64_t s) { return static_cast<std::int32_t>(s >> 32); }
std::uint32_t waiters_of(std::uint64_t s) { return static_cast<std::uint32_t>(s & kWaiterMask); }

}  // namespace

void wait_group::add(std::int64_t delta) {
  std::uint64_t s =
      state_.fetch_add(static_cast<std::uint64_t>(delta) << 32, std::memory_order_acq_rel) +
      (static_cast<std::uint64_t>(delta) << 32);
  const std::int64_t v = counter_of(s);
  if (v < 0) {
    state_.fetch_sub(static_cast<std::uint64_t>(delta) << 32, std::memory_order_acq_rel);
    throw std::logic_error("goro::wait_group: negative counter");
  }
  if (v > 0 || waiters_of(s) == 0) return;
  // Counter hit zero with waiters: claim them all in one CAS, under the
  // bucket lock, and wake exactly those.
  detail::wake_claimed(&state_, [this, &s]() -> std::size_t {
    while (waiters_of(s) != 0) {
      if (state_.compare_exchange_weak(s, s & ~kWaiterMask, std::memory_order_acq_rel)) {
        return waiters_of(s);
      }
    }
    return 0;  // another add() claimed them
  });
}

bool wait_group::wait_impl(const context* ctx) {
  if (state_.load(std::memory_order_acquire) == 0) return true;
  return detail::wait_on(
      &state_,
      [this] {
        std::uint64_t s = state_.load(std::memory_order_acquire);
        for (;;) {
          if (s == 0) return false;
          if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return true;
        }
      },
      "wait_group.wait", ctx,
      // A waiter that leaves (its context ended) counts itself out, so the
      // waiter bits always equal the waiters queued: an add() reaching zero
      // claims and wakes exactly those, never a later round's.
      [this] { state_.fetch_sub(1, std::memory_order_acq_rel); });
}

void wait_group::wait() { wait_impl(nullptr); }

absl::Status wait_group::wait(const context& ctx) {
  // An already-ended context wins, as for channel operations.
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  if (wait_impl(&ctx)) return absl::OkStatus();
  return ctx.err();
}

}  // namespace goro
