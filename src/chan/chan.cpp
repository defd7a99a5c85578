// src/chan/chan.cpp — channel operations (see goro/detail/chan_base.hpp for
// the algorithm and invariants).
//
// Every blocking path follows the wait protocol of src/wait/parker.hpp:
// under the channel lock, try; else link a chan_waiter and park with the lock
// released by the scheduler after the switch. The waker unlinks the waiter
// and sets `success` under the lock, and unparks it after unlocking. A waiter
// unwound at shutdown unlinks itself if still linked.
#include <algorithm>
#include <mutex>
#include <vector>

#include "goro/detail/chan_base.hpp"
#include "wait/parker.hpp"

namespace goro::detail {
namespace {

// The blocking half of send and recv: with the channel lock `mu` held, links
// a waiter for `elem` into `q` and parks, the lock released after the switch.
// Returns the waiter's `success` as set by whoever woke it. On shutdown
// unwinding, unlinks the waiter again before the exception propagates.
bool park_waiter(spinlock& mu, waitq& q, void* elem,
                 const char* reason) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  parker pk;
  chan_waiter w;
  w.pk = &pk;
  w.elem = elem;
  q.push(&w);
  auto unlock = [&mu]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu.unlock(); };
  try {
    pk.park(unlock, reason);
  } catch (...) {
    std::lock_guard lk(mu);
    if (w.linked) q.remove(&w);
    throw;
  }
  return w.success;
}

[[noreturn]] void throw_closed_send() { throw channel_closed("goro: send on closed channel"); }

}  // namespace

void waitq::push(chan_waiter* w) {
  w->next = nullptr;
  w->prev = tail;
  if (tail != nullptr) {
    tail->next = w;
  } else {
    head = w;
  }
  tail = w;
  w->linked = true;
}

void waitq::remove(chan_waiter* w) {
  if (w->prev != nullptr) {
    w->prev->next = w->next;
  } else {
    head = w->next;
  }
  if (w->next != nullptr) {
    w->next->prev = w->prev;
  } else {
    tail = w->prev;
  }
  w->prev = w->next = nullptr;
  w->linked = false;
}

chan_waiter* waitq::pop() {
  chan_waiter* w = head;
  if (w != nullptr) remove(w);
  return w;
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

bool chan_base::try_send_locked(void* src, chan_waiter** wake) {
  if (closed_) throw_closed_send();
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

bool chan_base::send(void* src, bool block) {
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
    mu_.unlock();
    if (wake != nullptr) wake->pk->unpark();
    return done;
  }
  if (!park_waiter(mu_, sendq_, src, "chan send")) throw_closed_send();
  return true;
}

int chan_base::recv(void* dst, bool block) {
  chan_waiter* wake = nullptr;
  bool ok = false;
  mu_.lock();
  if (try_recv_locked(dst, &ok, &wake)) {
    mu_.unlock();
    if (wake != nullptr) wake->pk->unpark();
    return ok ? 1 : 0;
  }
  if (!block) {
    mu_.unlock();
    return -1;
  }
  return park_waiter(mu_, recvq_, dst, "chan receive") ? 1 : 0;
}

void chan_base::close() {
  mu_.lock();
  if (closed_) {
    mu_.unlock();
    throw channel_closed("goro: close of closed channel");
  }
  closed_ = true;
  // Collect every waiter (receivers get "closed", senders will throw), then
  // wake them after unlocking. A waiter's record may vanish once it is woken.
  // Fibers are gathered into a vector in this one pass (the records live on
  // the waiters' stacks, one page each: walking them twice would double the
  // cost of closing a done channel with 100k waiters); OS-thread waiters,
  // rare, are linked through `next`.
  std::vector<fiber*> fibers;
  chan_waiter* threads = nullptr;
  for (waitq* q : {&recvq_, &sendq_}) {
    while (chan_waiter* w = q->dequeue()) {
      w->success = false;
      if (fiber* f = w->pk->waiting_fiber()) {
        fibers.push_back(f);
      } else {
        w->next = threads;
        threads = w;
      }
    }
  }
  mu_.unlock();
  // Readied in batches: one queue operation and one wake-up check per batch.
  constexpr std::size_t kBatch = 256;
  for (std::size_t i = 0; i < fibers.size(); i += kBatch) {
    ready_many(fibers.data() + i, std::min(kBatch, fibers.size() - i));
  }
  while (threads != nullptr) {
    chan_waiter* next = threads->next;
    threads->pk->unpark();
    threads = next;
  }
}

std::size_t chan_base::size() const {
  std::lock_guard lk(mu_);
  return count_;
}

void chan_base::drain() {
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
