// src/chan/chan.cpp — channel operations (see goro/detail/chan_base.hpp for
// the data structures).
//
// Unbuffered channels, and buffered channels of a T whose move may throw,
// are Go's runtime/chan.go: one lock guards the ring and two FIFO queues of
// parked waiters.
//
// Buffered channels of a nothrow-movable T keep their elements in a
// lock-free ring, and the lock guards only the wait queues:
//   * fast path: while no waiter is parked (waiters_ == 0), send and receive
//     are a CAS on the ring, never touching the lock, so a producer and a
//     consumer on two threads share only the slots they exchange;
//   * slow path: otherwise, or when the ring is full (send) / empty (recv),
//     the operation takes the lock and behaves as Go's: a receiver parked on
//     an empty ring gets a value handed over directly, a receiver that
//     frees a slot moves the first parked sender's value into it, so parked
//     waiters are served in FIFO order;
//   * no lost wake-up (Dekker): a waiter links itself (waiters_ += 1),
//     fences, and rechecks the ring before parking; a fast operation claims
//     its position with a seq_cst CAS (tail_ or head_) and, after filling or
//     emptying the slot, reads waiters_ (seq_cst) — so either the waiter's
//     recheck sees the claim, or the fast operation sees the waiter and
//     serves it under the lock (after_fast_op). A recheck that sees a
//     claimed slot not yet filled waits the few instructions until it is
//     (recheck_pop/recheck_push) instead of parking. The fast operation
//     needs no fence of its own: on x86 its CAS is the one locked
//     instruction per message;
//   * a fast operation in flight when a waiter parks can still take a slot
//     meant for that waiter; the waiter is then woken with `retry` and tries
//     again (it never misses a value: someone got it, in order).
//
// Every blocking path follows the wait protocol of src/wait/parker.hpp:
// under the channel lock, try; else link a chan_waiter and park with the lock
// released by the scheduler after the switch. The waker unlinks the waiter
// and sets `success` (or `retry`) under the lock, and unparks it after
// unlocking. A waiter unwound at shutdown unlinks itself if still linked.
#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#include "goro/detail/chan_base.hpp"
#include "wait/parker.hpp"

namespace goro::detail {
namespace {

[[noreturn]] void throw_closed_send() { throw channel_closed("goro: send on closed channel"); }

// Parks with `w` linked into `q` and the channel lock `mu` held; the lock is
// released after the switch. On shutdown unwinding, unlinks `w` again before
// the exception propagates.
void park_linked(spinlock& mu, waitq& q, chan_waiter& w, const char* reason,
                 const void* obj) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  auto unlock = [&mu]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu.unlock(); };
  try {
    w.pk->park(unlock, reason, obj);
  } catch (...) {
    std::lock_guard lk(mu);
    if (w.linked) q.remove(&w);
    throw;
  }
}

}  // namespace

void waitq::push(chan_waiter* w) noexcept {
  w->slot = base_ + v_.size();
  v_.push_back(w);
  w->linked = true;
  ++live_;
  // A plain store, not an RMW: changed only under the channel lock, and a
  // locked RMW next to a contended lock word costs a cache-line round trip
  // (2.5x slower unbuffered 4x4 traffic). The Dekker recheck has its own
  // fence (see send/recv/select).
  count->store(count->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void waitq::unlinked() {
  --live_;
  count->store(count->load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  while (!v_.empty() && v_.back() == nullptr) v_.pop_back();
  if (live_ == 0) {
    // Empty: start over (a big array left by a broadcast is given back).
    base_ += v_.size();
    if (v_.capacity() > 1024) {
      std::vector<chan_waiter*>().swap(v_);
    } else {
      v_.clear();
    }
    head_ = 0;
  } else if (v_.size() - head_ > 2 * live_ + 64) {
    compact();
  }
}

// Moves the live waiters to the front, in order, renumbering them: O(size),
// run when more than half the array is nulls, so O(1) per removal.
void waitq::compact() {
  std::size_t n = 0;
  for (std::size_t i = head_; i < v_.size(); ++i) {
    if (chan_waiter* w = v_[i]) {
      w->slot = base_ + n;
      v_[n++] = w;
    }
  }
  v_.resize(n);
  head_ = 0;
}

void waitq::remove(chan_waiter* w) {
  const std::size_t i = w->slot - base_;
  v_[i] = nullptr;
  w->linked = false;
  // Removals in queue order (selects woken elsewhere, timeouts) advance the
  // head instead of leaving nulls for compact() to skip.
  if (i == head_) {
    while (head_ < v_.size() && v_[head_] == nullptr) ++head_;
    drop_prefix();
  }
  unlinked();
}

// Dropping the consumed prefix costs a move of the rest: only once it is
// more than half the array (so O(1) per pop or removal).
void waitq::drop_prefix() {
  if (head_ > 64 && head_ * 2 > v_.size()) {
    v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
    base_ += head_;
    head_ = 0;
  }
}

chan_waiter* waitq::pop() {
  drop_prefix();
  while (head_ < v_.size()) {
    chan_waiter* w = v_[head_];
    v_[head_++] = nullptr;
    if (w == nullptr) continue;
    // The records a few places ahead are far apart in memory: start
    // fetching them (the walk of a close is otherwise a miss per waiter).
    if (head_ + 7 < v_.size()) {
      if (chan_waiter* ahead = v_[head_ + 7]) __builtin_prefetch(ahead, 1, 1);
    }
    w->linked = false;
    unlinked();
    return w;
  }
  return nullptr;
}

chan_waiter* waitq::dequeue() {
  while (chan_waiter* w = pop()) {
    if (w->sel == nullptr) return w;
    int expected = -1;
    if (w->sel->winner.compare_exchange_strong(expected, w->case_index,
                                               std::memory_order_acq_rel)) {
      return w;
    }
  }
  return nullptr;
}

chan_base::chan_base(std::size_t cap, const elem_ops* ops, unsigned char* buf)
    : cap_(cap),
      ops_(ops),
      buf_(buf),
      lockfree_(uses_ring(cap, ops)),
      cell_stride_(cell_stride(ops)),
      value_offset_(value_offset(ops)),
      ring_mod_(cap) {
  recvq_.count = &waiters_;
  sendq_.count = &waiters_;
}

void chan_base::init_storage() {
  for (std::size_t i = 0; lockfree_ && i < cap_; ++i) {
    ::new (static_cast<void*>(&cell_seq(i))) std::atomic<std::uint64_t>(2 * i);
  }
}

chan_base::~chan_base() = default;  // the sequence numbers are trivially destructible

// ---- the ring ---------------------------------------------------------------

namespace {

// After losing the race for a position: pause a little, twice as long each
// time (up to 64 pauses), before trying again. Two threads that retry at
// once take the counter's and the cell's cache lines from each other at
// every operation; backing off lets the winner go on with its next few
// operations on lines still in its cache. A bare ring on two pinned threads:
// 36-38 -> 19-24 ns an operation. Only a lost CAS pays it.
constexpr int kMaxBackoffRound = 6;
inline void contention_backoff(int& round) {
  for (int i = 0, n = 1 << round; i < n; ++i) cpu_relax();
  if (round < kMaxBackoffRound) ++round;
}

}  // namespace

chan_base::push_result chan_base::ring_push(void* src) {
  std::uint64_t pos = tail_.load(std::memory_order_relaxed);
  for (int round = 0;;) {
    if ((pos & kClosedBit) != 0) return push_result::closed;
    const std::size_t i = ring_mod_.mod(pos);
    std::atomic<std::uint64_t>& seq = cell_seq(i);
    const std::uint64_t s = seq.load(std::memory_order_acquire);
    const auto diff = static_cast<std::int64_t>(s - 2 * pos);
    if (diff == 0) {
      // seq_cst: the claim is the fast side of the Dekker with waiters_.
      if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        ops_->construct(cell_slot(i), src);
        seq.store(2 * pos + 1, std::memory_order_release);
        return push_result::pushed;
      }
      contention_backoff(round);
      pos = tail_.load(std::memory_order_relaxed);  // moved on meanwhile
    } else if (diff < 0) {
      return push_result::full;  // the slot of the previous lap is unconsumed
    } else {
      pos = tail_.load(std::memory_order_relaxed);
    }
  }
}

bool chan_base::ring_pop(void* dst) {
  std::uint64_t pos = head_.load(std::memory_order_relaxed);
  for (int round = 0;;) {
    const std::size_t i = ring_mod_.mod(pos);
    std::atomic<std::uint64_t>& seq = cell_seq(i);
    const std::uint64_t s = seq.load(std::memory_order_acquire);
    const auto diff = static_cast<std::int64_t>(s - (2 * pos + 1));
    if (diff == 0) {
      if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        void* e = cell_slot(i);
        if (dst != nullptr) ops_->deliver(dst, e);
        ops_->destroy(e);
        seq.store(2 * (pos + cap_), std::memory_order_release);
        return true;
      }
      contention_backoff(round);
      pos = head_.load(std::memory_order_relaxed);
    } else if (diff < 0) {
      return false;  // empty (or its next slot is claimed but not yet filled)
    } else {
      pos = head_.load(std::memory_order_relaxed);
    }
  }
}

bool chan_base::recheck_pop(void* dst) {
  // The claimer may have been preempted between its claim and its fill, so
  // the wait yields the CPU after a while (spin_wait).
  for (int spins = 0;;) {
    if (ring_pop(dst)) return true;
    // Empty by the counters: every push claimed before our fence was taken
    // by someone, and any later one reads waiters_ after its claim and sees
    // us. Otherwise a claimed slot is being filled (or another receiver
    // got there first, and the next round sees that).
    if (ring_empty()) return false;
    spin_wait(spins);
  }
}

bool chan_base::recheck_push(void* src) {
  for (int spins = 0;;) {
    switch (ring_push(src)) {
      case push_result::pushed:
        return true;
      case push_result::closed:
        return false;  // not while mu_ is held; for completeness
      case push_result::full:
        break;
    }
    if (ring_full()) return false;
    spin_wait(spins);
  }
}

chan_waiter* chan_base::serve_receiver_locked() {
  if (recvq_.empty()) return nullptr;
  chan_waiter* r = recvq_.dequeue();
  if (r == nullptr) return nullptr;
  if (ring_pop(r->elem)) {
    r->success = true;
  } else {
    r->retry = true;  // a fast receiver took it first
  }
  return r;
}

chan_waiter* chan_base::serve_sender_locked() {
  if (sendq_.empty()) return nullptr;
  chan_waiter* s = sendq_.dequeue();
  if (s == nullptr) return nullptr;
  // closed_ is false here: close() empties sendq_ under the lock.
  if (ring_push(s->elem) == push_result::pushed) {
    s->success = true;
  } else {
    s->retry = true;  // a fast sender took the slot first
  }
  return s;
}

void chan_base::after_fast_op(bool pushed) {
  // No fence: the claim's seq_cst CAS precedes this seq_cst load (header).
  if (waiters_.load(std::memory_order_seq_cst) == 0) return;
  // Serve the other side's parked waiters while the ring has something for
  // them. ring_empty()/ring_full() can only err towards "there may be
  // something" (see there), and when an attempt then fails, that waiter is
  // woken to retry by itself: nobody stays parked while it could proceed.
  // A "nothing" answer was true at some instant, and any later operation
  // runs this same check.
  std::vector<chan_waiter*> wake;
  mu_.lock();
  for (;;) {
    if (pushed ? ring_empty() : ring_full()) break;
    chan_waiter* w = pushed ? serve_receiver_locked() : serve_sender_locked();
    if (w == nullptr) break;
    wake.push_back(w);
    if (w->retry) break;
  }
  mu_.unlock();
  for (chan_waiter* w : wake) w->pk->unpark();
}

void chan_base::unlock_and_wake(chan_waiter* wake) {
  mu_.unlock();
  if (wake != nullptr) wake->pk->unpark();  // after the unlock: never under the lock
}

// ---- the locked halves (also select's poll) ---------------------------------

bool chan_base::try_send_locked(void* src, chan_waiter** wake) {
  if (closed_) throw_closed_send();
  if (lockfree_) {
    if (!recvq_.empty() && ring_empty()) {
      if (chan_waiter* r = recvq_.dequeue()) {
        ops_->deliver(r->elem, src);  // straight to a parked receiver
        r->success = true;
        *wake = r;
        return true;
      }
    }
    if (ring_push(src) != push_result::pushed) return false;
    *wake = serve_receiver_locked();
    return true;
  }
  if (chan_waiter* r = recvq_.dequeue()) {
    // A receiver is parked (so the buffer is empty): hand the value over.
    ops_->deliver(r->elem, src);
    r->success = true;
    *wake = r;
    return true;
  }
  if (count_ < cap_) {
    ops_->construct(slot(sendx_), src);
    sendx_ = sendx_ + 1 == cap_ ? 0 : sendx_ + 1;
    ++count_;
    return true;
  }
  return false;
}

bool chan_base::try_recv_locked(void* dst, bool* ok, chan_waiter** wake) {
  if (lockfree_) {
    for (;;) {
      if (ring_pop(dst)) {
        *wake = serve_sender_locked();
        *ok = true;
        return true;
      }
      if (chan_waiter* s = sendq_.dequeue()) {
        // Fast receivers emptied the ring while a sender was parked.
        ops_->deliver(dst, s->elem);
        s->success = true;
        *wake = s;
        *ok = true;
        return true;
      }
      if (!closed_) return false;
      if (ring_empty()) {
        *ok = false;
        return true;
      }
      cpu_relax();  // a send claimed its slot before the close: wait for it
    }
  }
  if (chan_waiter* s = sendq_.dequeue()) {
    if (cap_ == 0) {
      ops_->deliver(dst, s->elem);  // straight from the parked sender
    } else {
      // The buffer is full: take its head, and put the sender's value at the
      // tail (which is the same slot once the head moves on).
      ops_->deliver(dst, slot(recvx_));
      ops_->destroy(slot(recvx_));
      ops_->construct(slot(recvx_), s->elem);
      recvx_ = recvx_ + 1 == cap_ ? 0 : recvx_ + 1;
      sendx_ = recvx_;
    }
    s->success = true;
    *wake = s;
    *ok = true;
    return true;
  }
  if (count_ > 0) {
    ops_->deliver(dst, slot(recvx_));
    ops_->destroy(slot(recvx_));
    recvx_ = recvx_ + 1 == cap_ ? 0 : recvx_ + 1;
    --count_;
    *ok = true;
    return true;
  }
  if (closed_) {
    *ok = false;
    return true;
  }
  return false;
}

// ---- send / recv ------------------------------------------------------------

bool chan_base::send(void* src, bool block) {
  if (lockfree_ && waiters_.load(std::memory_order_acquire) == 0) {
    switch (ring_push(src)) {
      case push_result::pushed:
        after_fast_op(/*pushed=*/true);
        return true;
      case push_result::closed:
        throw_closed_send();
      case push_result::full:
        // Would block (Go's lock-free check): full with nobody parked to take
        // a value, observed before "not closed", which cannot be undone.
        if (!block && waiters_.load(std::memory_order_acquire) == 0 &&
            !closed_flag_.load(std::memory_order_acquire)) {
          return false;
        }
        break;
    }
  } else if (!block && cap_ == 0 && waiters_.load(std::memory_order_acquire) == 0 &&
             !closed_flag_.load(std::memory_order_acquire)) {
    return false;  // unbuffered, no receiver parked: would block
  }
  for (;;) {
    chan_waiter* wake = nullptr;
    mu_.lock();
    bool done = false;
    try {
      done = try_send_locked(src, &wake);
    } catch (...) {
      mu_.unlock();
      throw;
    }
    if (done || !block) {
      unlock_and_wake(wake);
      return done;
    }
    parker pk;
    chan_waiter w;
    w.pk = &pk;
    w.elem = src;
    sendq_.push(&w);
    if (lockfree_) {
      // The recheck of the Dekker pairing with after_fast_op.
      full_fence();
      if (recheck_push(src)) {
        sendq_.remove(&w);
        wake = serve_receiver_locked();
        unlock_and_wake(wake);
        return true;
      }
    }
    park_linked(mu_, sendq_, w, "chan send", this);
    if (w.retry) continue;
    if (!w.success) throw_closed_send();
    return true;
  }
}

int chan_base::recv(void* dst, bool block) {
  if (lockfree_ && waiters_.load(std::memory_order_acquire) == 0 && ring_pop(dst)) {
    after_fast_op(/*pushed=*/false);
    return 1;
  }
  // Would block (Go's lock-free check): nothing buffered and no sender
  // parked, observed before "not closed" (a closed channel stays closed, so
  // there was a moment when it was open and empty).
  if (!block && recv_would_block()) return -1;
  for (;;) {
    chan_waiter* wake = nullptr;
    bool ok = false;
    mu_.lock();
    if (try_recv_locked(dst, &ok, &wake)) {
      unlock_and_wake(wake);
      return ok ? 1 : 0;
    }
    if (!block) {
      mu_.unlock();
      return -1;
    }
    parker pk;
    chan_waiter w;
    w.pk = &pk;
    w.elem = dst;
    recvq_.push(&w);
    if (lockfree_) {
      full_fence();
      if (recheck_pop(dst)) {
        recvq_.remove(&w);
        wake = serve_sender_locked();
        unlock_and_wake(wake);
        return 1;
      }
    }
    park_linked(mu_, recvq_, w, "chan receive", this);
    if (w.retry) continue;
    return w.success ? 1 : 0;
  }
}

void chan_base::close() {
  mu_.lock();
  if (closed_) {
    mu_.unlock();
    throw channel_closed("goro: close of closed channel");
  }
  closed_ = true;
  closed_flag_.store(true, std::memory_order_release);
  if (lockfree_) tail_.fetch_or(kClosedBit);
  // Wake every waiter, never under the lock: senders will throw; receivers
  // get "closed" (on a lock-free ring they retry instead, to drain what
  // sends claimed before the close). A waiter's record may vanish once it
  // is woken. OS-thread waiters, rare, are linked through `next` and woken
  // at the end.
  //   Senders are all taken in the first pass: left linked, one could be
  // served by a receiver while the lock is dropped and succeed after the
  // close. Receivers are taken in batches, the lock dropped to ready each
  // batch: once closed_ is set nothing but close() wakes a parked receiver,
  // so the outcome is the same as taking all at once (Go's closechan), but
  // the first woken fibers run on other processors while the rest are still
  // being collected (100k selects on a done channel: collecting takes
  // ~35 ms, one stack page per waiter).
  constexpr std::size_t kBatch = 256;
  chan_waiter* threads = nullptr;
  auto take = [&](chan_waiter* w, bool receiver) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    w->success = false;
    w->retry = lockfree_ && receiver;
    if (fiber* f = w->pk->waiting_fiber()) {
      // ready_many's write to f->state will want the record, which is
      // elsewhere in memory: start fetching it while the walk goes on.
      __builtin_prefetch(f, 1, 1);
      return f;
    }
    w->next = threads;
    threads = w;
    return static_cast<fiber*>(nullptr);
  };
  std::vector<fiber*> senders;
  while (chan_waiter* w = sendq_.dequeue()) {
    if (fiber* f = take(w, false)) senders.push_back(f);
  }
  // A close that wakes more than one batch readies them all into the global
  // queue: in its own P's queue they would wait for it to finish (or for
  // sysmon to hand the queue on) while idle processors could run them.
  fiber* batch[kBatch];
  bool global = senders.size() > kBatch;
  for (bool first = true;; first = false) {
    std::size_t n = 0;
    while (n < kBatch) {
      chan_waiter* w = recvq_.dequeue();
      if (w == nullptr) break;
      if (fiber* f = take(w, true)) batch[n++] = f;
    }
    if (n == kBatch && !recvq_.empty()) global = true;
    mu_.unlock();
    if (first) {
      for (std::size_t i = 0; i < senders.size(); i += kBatch) {
        ready_many(senders.data() + i, std::min(kBatch, senders.size() - i), global);
      }
    }
    if (n == 0) break;
    ready_many(batch, n, global);
    mu_.lock();
  }
  while (threads != nullptr) {
    chan_waiter* next = threads->next;
    threads->pk->unpark();
    threads = next;
  }
}

std::size_t chan_base::size() const {
  if (lockfree_) {
    const std::uint64_t h = head_.load(std::memory_order_acquire);
    const std::uint64_t t = tail_.load(std::memory_order_acquire) & ~kClosedBit;
    return t > h ? std::min<std::size_t>(t - h, cap_) : 0;
  }
  std::lock_guard lk(mu_);
  return count_;
}

void chan_base::drain() {
  if (lockfree_) {
    while (ring_pop(nullptr)) {
    }
    return;
  }
  for (; count_ > 0; --count_) {
    ops_->destroy(slot(recvx_));
    recvx_ = recvx_ + 1 == cap_ ? 0 : recvx_ + 1;
  }
}

void block_forever(const char* reason) {
  parker pk;
  auto nothing = [] {};
  pk.park(nothing, reason);  // nobody ever unparks it
  throw std::logic_error("goro: a nil channel operation returned");
}

}  // namespace goro::detail
