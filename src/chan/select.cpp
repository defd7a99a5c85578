// src/chan/select.cpp — select over several channel operations (Go's
// runtime/select.go selectgo, on goro's wait protocol).
//
//   1. Shuffle the cases into a random poll order (uniform choice among the
//      ready ones) and sort the distinct channels by address: the lock order,
//      so that two selects locking overlapping channels never deadlock.
//   2. Lock every channel; poll the cases in poll order; the first that can
//      proceed commits (a send to a closed channel throws). Unlock; wake the
//      partner, if any.
//   3. Nothing ready: return the default if there is one. Otherwise link one
//      waiter per case, all sharing one parker and one select_state, and park
//      with every lock released after the switch.
//   4. A waker commits a case by winning the CAS on select_state::winner
//      (waitq::dequeue), so exactly one case commits; wakers that lose skip
//      the waiter. Once woken, lock every channel again, unlink the waiters
//      still linked, unlock: no stale waiter is left behind (Go issue 2075).
// A select never pairs with itself: in step 2 none of its own waiters is
// linked yet, and in step 4 only other parties pop its waiters.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "goro/detail/chan_base.hpp"
#include "wait/parker.hpp"

namespace goro::detail {
namespace {

// Cases most selects have fit inline; more go to the heap.
constexpr std::size_t kInlineCases = 8;

std::uint64_t random_u64() {
  // Per-thread xorshift; read and written before any switch in select_impl.
  [[gnu::tls_model("initial-exec")]] static thread_local std::uint64_t state =
      0x9E3779B97F4A7C15ULL ^ reinterpret_cast<std::uintptr_t>(&state);
  std::uint64_t x = state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

}  // namespace

std::size_t select_impl(select_op* ops, std::size_t n, bool has_default) {
  if (has_default) {
    // One non-nil case and a default (Go compiles this to a non-blocking
    // send or receive): the channel's own non-blocking path, lock-free when
    // it would block.
    std::size_t only = n;
    std::size_t live = 0;
    for (std::size_t i = 0; i < n && live < 2; ++i) {
      if (ops[i].c != nullptr) {
        only = i;
        ++live;
      }
    }
    if (live == 1) {
      select_op& op = ops[only];
      if (op.is_send) return op.c->send(op.elem, false) ? only : n;
      const int r = op.c->recv(op.elem, false);
      if (r < 0) return n;
      op.ok = r == 1;
      return only;
    }
  }
  absl::InlinedVector<std::size_t, kInlineCases> order;  // poll order
  absl::InlinedVector<chan_base*, kInlineCases> locks;   // distinct, sorted
  for (std::size_t i = 0; i < n; ++i) {
    if (ops[i].c == nullptr) continue;  // nil: never ready
    order.push_back(i);
    locks.push_back(ops[i].c);
  }
  for (std::size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[random_u64() % i]);
  }
  std::sort(locks.begin(), locks.end());
  locks.erase(std::unique(locks.begin(), locks.end()), locks.end());
  if (order.empty()) {
    if (has_default) return n;
    block_forever("select (no cases)");
  }
  auto lock_all = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (chan_base* c : locks) c->mu_.lock();
  };
  // Releases in reverse order. When this runs as the park callback (on the
  // next context), the select may be woken as soon as one lock is released,
  // but it cannot get past lock_all() in step 4 until locks[0] is free, and
  // locks[0] is released last: so `locks` (on the select's stack) is read
  // only before that final unlock, never after (Go's selunlock rule).
  auto unlock_all = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    chan_base* const* p = locks.data();
    for (std::size_t k = locks.size(); k > 1;) p[--k]->mu_.unlock();
    p[0]->mu_.unlock();  // the last touch of anything on the select's stack
  };

  for (;;) {
    // Step 2: poll.
    lock_all();
    for (std::size_t i : order) {
      select_op& op = ops[i];
      chan_waiter* wake = nullptr;
      bool done = false;
      try {
        done = op.is_send ? op.c->try_send_locked(op.elem, &wake)
                          : op.c->try_recv_locked(op.elem, &op.ok, &wake);
      } catch (...) {
        unlock_all();
        throw;
      }
      if (done) {
        unlock_all();
        if (wake != nullptr) wake->pk->unpark();
        return i;
      }
    }
    if (has_default) {
      unlock_all();
      return n;
    }

    // Step 3: enqueue on every channel and park.
    parker pk;
    select_state st;
    absl::InlinedVector<chan_waiter, kInlineCases> ws(n);
    bool any_lockfree = false;
    for (std::size_t i : order) {
      chan_waiter& w = ws[i];
      w.pk = &pk;
      w.sel = &st;
      w.case_index = static_cast<int>(i);
      w.elem = ops[i].elem;
      (ops[i].is_send ? ops[i].c->sendq_ : ops[i].c->recvq_).push(&w);
      any_lockfree |= ops[i].c->lockfree_;
    }
    auto unlink_locked = [&] {
      for (std::size_t i : order) {
        if (ws[i].linked) (ops[i].is_send ? ops[i].c->sendq_ : ops[i].c->recvq_).remove(&ws[i]);
      }
    };
    auto unlink_rest = [&] {
      lock_all();
      unlink_locked();
      unlock_all();
    };
    if (any_lockfree) {
      // The recheck of the Dekker pairing with a lock-free send or receive
      // (chan.cpp): only the ring itself, since our own waiters are linked
      // (a select never pairs with itself). Every channel is locked by us,
      // so no waker can have taken our waiters yet.
      full_fence();
      for (std::size_t i : order) {
        chan_base* c = ops[i].c;
        if (!c->lockfree_) continue;
        const bool done =
            ops[i].is_send ? c->recheck_push(ops[i].elem) : c->recheck_pop(ops[i].elem);
        if (!done) continue;
        unlink_locked();
        chan_waiter* wake = ops[i].is_send ? c->serve_receiver_locked() : c->serve_sender_locked();
        ops[i].ok = true;
        unlock_all();
        if (wake != nullptr) wake->pk->unpark();
        return i;
      }
    }
    try {
      pk.park(unlock_all, "select");
    } catch (...) {
      unlink_rest();  // unwound at shutdown
      throw;
    }

    // Step 4: one case won; drop the other waiters. The winner's waiter was
    // unlinked by the waker, so its channel need not be locked again unless
    // another case uses it too (a close of a done channel wakes 100k selects:
    // each skipping that hot lock matters). Go's selunlock rule still holds:
    // if the skipped channel is locks[0], the waker held it, so the parking
    // side's unlock_all had finished; otherwise locks[0] is locked here.
    const auto won = static_cast<std::size_t>(st.winner.load(std::memory_order_acquire));
    chan_base* const won_c = ops[won].c;
    bool shared = false;
    for (std::size_t i : order) shared |= i != won && ops[i].c == won_c;
    if (shared) {
      unlink_rest();
    } else {
      for (chan_base* c : locks) {
        if (c != won_c) c->mu_.lock();
      }
      for (std::size_t i : order) {
        if (i != won && ws[i].linked) {
          (ops[i].is_send ? ops[i].c->sendq_ : ops[i].c->recvq_).remove(&ws[i]);
        }
      }
      for (std::size_t k = locks.size(); k > 0;) {
        if (locks[--k] != won_c) locks[k]->mu_.unlock();
      }
    }
    // Woken to retry (a lock-free ring raced us, or a close to drain): poll
    // again from the start; nothing has been committed.
    if (ws[won].retry) continue;
    if (ops[won].is_send) {
      if (!ws[won].success) throw channel_closed("goro: send on closed channel");
    } else {
      ops[won].ok = ws[won].success;
    }
    return won;
  }
}

}  // namespace goro::detail
