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
//            no waiters, return. If it is zero with w waiters: CAS the waiter
//            bits to zero (a waiter that registered meanwhile is included),
//            then wake exactly that many waiters of &state_ from the table.
//            That CAS is done()'s last access to *this.
// A wait() that sees the counter at zero but waiters still set (a wake in
// flight) registers too and is woken by the same add(), so it never returns
// while that add() still touches the object.
#include <stdexcept>

#include "goro/wait_group.hpp"
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
  // Counter hit zero with waiters: claim them all in one CAS.
  while (!state_.compare_exchange_weak(s, s & ~kWaiterMask, std::memory_order_acq_rel)) {
    if (waiters_of(s) == 0) return;  // another add() claimed them
  }
  detail::wake(&state_, waiters_of(s));
}

void wait_group::wait() {
  if (state_.load(std::memory_order_acquire) == 0) return;
  detail::wait_on(
      &state_,
      [this] {
        std::uint64_t s = state_.load(std::memory_order_acquire);
        for (;;) {
          if (s == 0) return false;
          if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return true;
        }
      },
      "wait_group.wait");
}

}  // namespace goro
