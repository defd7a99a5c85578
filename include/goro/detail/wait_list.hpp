// goro/detail/wait_list.hpp — the intrusive FIFO of waiter records that every
// primitive's queue is made of (condition variable, semaphore, wait-table
// buckets). A record T has `T* prev`, `T* next` and `bool linked`; it lives
// on its waiter's stack, and all access is under the owner's lock.
#pragma once

namespace goro::detail {

template <class T>
struct wait_list {
  T* head = nullptr;
  T* tail = nullptr;

  bool empty() const { return head == nullptr; }

  void push_back(T* w) {
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

  void push_front(T* w) {
    w->prev = nullptr;
    w->next = head;
    if (head != nullptr) {
      head->prev = w;
    } else {
      tail = w;
    }
    head = w;
    w->linked = true;
  }

  void remove(T* w) {
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

  T* pop_front() {
    T* w = head;
    if (w != nullptr) remove(w);
    return w;
  }

  // Unlinks everything; returns the old head, still chained through `next`
  // (read each `next` before waking that waiter: its record may vanish).
  T* take_all() {
    T* w = head;
    for (T* x = w; x != nullptr; x = x->next) x->linked = false;
    head = tail = nullptr;
    return w;
  }
};

}  // namespace goro::detail
