// src/chan/chan.cpp — channel operations (see goro/detail/chan_base.hpp for
// the algorithm and invariants).
//
// Every blocking path follows the wait protocol of src/wait/parker.hpp:
// under the channel lock, try; else link a chan_waiter and park with the lock
// released by the scheduler after the switch. The waker unlinks the waiter
// and sets `success` under the lock, and unparks it after unlocking. A waiter
// unwound at shutdown unlinks itself if still linked.
#include <mutex>

#include "goro/detail/chan_base.hpp"
#include "wait/parker.hpp"

namespace goro::detail {
namespace {

// Parks on `w` (already linked into a queue of `c`, whose lock `mu` is held);
// on shutdown unwinding, unlinks it again before the exception propagates.
void park_waiter(spinlock& mu, waitq& q, chan_waiter& w,
                 const char* reason) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  auto unlock = [&mu]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu.unlock(); };
  try {
    w.pk->park(unlock, reason);
  } catch (...) {
    std::lock_guard lk(mu);
    if (w.linked) q.remove(&w);
    throw;
  }
}

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

bool chan_base::send(void* src, bool block) {
  mu_.lock();
  if (closed_) {
    mu_.unlock();
    throw channel_closed("goro: send on closed channel");
  }
  if (chan_waiter* r = recvq_.pop()) {
    // A receiver is parked (so the buffer is empty): hand the value over.
    ops_->deliver(r->elem, src);
    r->success = true;
    parker* pk = r->pk;
    mu_.unlock();
    pk->unpark();
    return true;
  }
  if (count_ < cap_) {
    ops_->construct(slot(sendx_), src);
    sendx_ = sendx_ + 1 == cap_ ? 0 : sendx_ + 1;
    ++count_;
    mu_.unlock();
    return true;
  }
  if (!block) {
    mu_.unlock();
    return false;
  }
  parker pk;
  chan_waiter me;
  me.pk = &pk;
  me.elem = src;
  sendq_.push(&me);
  park_waiter(mu_, sendq_, me, "chan send");
  if (!me.success) throw channel_closed("goro: send on closed channel");
  return true;
}

int chan_base::recv(void* dst, bool block) {
  mu_.lock();
  if (chan_waiter* s = sendq_.pop()) {
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
    parker* pk = s->pk;
    mu_.unlock();
    pk->unpark();
    return 1;
  }
  if (count_ > 0) {
    ops_->deliver(dst, slot(recvx_));
    ops_->destroy(slot(recvx_));
    recvx_ = recvx_ + 1 == cap_ ? 0 : recvx_ + 1;
    --count_;
    mu_.unlock();
    return 1;
  }
  if (closed_) {
    mu_.unlock();
    return 0;
  }
  if (!block) {
    mu_.unlock();
    return -1;
  }
  parker pk;
  chan_waiter me;
  me.pk = &pk;
  me.elem = dst;
  recvq_.push(&me);
  park_waiter(mu_, recvq_, me, "chan receive");
  return me.success ? 1 : 0;
}

void chan_base::close() {
  mu_.lock();
  if (closed_) {
    mu_.unlock();
    throw channel_closed("goro: close of closed channel");
  }
  closed_ = true;
  // Collect every waiter (receivers get "closed", senders will throw), then
  // wake them after unlocking. `next` links the collected list; a waiter's
  // record may vanish once it is unparked, so read `next` first.
  chan_waiter* woken = nullptr;
  while (chan_waiter* w = recvq_.pop()) {
    w->success = false;
    w->next = woken;
    woken = w;
  }
  while (chan_waiter* w = sendq_.pop()) {
    w->success = false;
    w->next = woken;
    woken = w;
  }
  mu_.unlock();
  while (woken != nullptr) {
    chan_waiter* next = woken->next;
    woken->pk->unpark();
    woken = next;
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
