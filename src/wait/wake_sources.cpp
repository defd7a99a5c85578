// src/wait/wake_sources.cpp — see wake_sources.hpp.
#include "wait/wake_sources.hpp"

#include <thread>

#include "context/hook.hpp"
#include "goro/context.hpp"
#include "goro/detail/spinlock.hpp"

namespace goro::detail {
namespace {

struct sources;

struct hook_box : ctx_hook {
  sources* owner = nullptr;
};

struct sources : timer_node {
  parker* pk = nullptr;
  absl::FunctionRef<bool()>* remove = nullptr;
  std::atomic<woke_by> by{woke_by::signal};
  std::atomic<bool> timer_ran{false};    // the fire's last access
  std::atomic<bool> unlock_done{false};  // do_unlock's last access (ended case)
  hook_box hook;

  // The deadline's or the context's side: wake the waiter if we took it.
  void end(woke_by why) {
    if ((*remove)()) {
      by.store(why, std::memory_order_relaxed);  // published by unpark's release
      pk->unpark();
    }
  }
};

void fire_deadline(timer_node* n, std::uint64_t, nanos) {
  auto* s = static_cast<sources*>(n);
  s->end(woke_by::deadline);
  s->timer_ran.store(true, std::memory_order_release);
}

void on_cancel(ctx_hook* h) { static_cast<hook_box*>(h)->owner->end(woke_by::context); }

void wait_flag(const std::atomic<bool>& f) {
  for (int spins = 0; !f.load(std::memory_order_acquire); ++spins) {
    if (spins < 1000) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

woke_by park_until(parker& pk, absl::FunctionRef<void()> unlock, const char* reason, nanos deadline,
                   const context* ctx, absl::FunctionRef<bool()> remove, const void* obj) {
  sources s;
  s.pk = &pk;
  s.remove = &remove;
  s.fire = &fire_deadline;
  s.hook.fn = &on_cancel;
  s.hook.owner = &s;
  bool hooked = false;
  bool ended = false;
  if (ctx != nullptr) {
    switch (hook_register(*ctx, &s.hook)) {
      case hook_result::registered:
        hooked = true;
        break;
      case hook_result::ended:
        ended = true;
        break;
      case hook_result::never:
        break;
    }
  }
  const bool timed = deadline != kNoTimer && pk.on_fiber() && !ended;
  if (timed) timer_add(&s, deadline);  // may fire at once: it needs our lock first

  auto disarm = [&] {
    if (timed && !timer_del(&s)) wait_flag(s.timer_ran);
    if (hooked) hook_unregister(&s.hook);
  };
  // An already-ended context acts as a hook that fires the moment the waiter
  // is parked (a waker may still take the record first; then it wins). This
  // runs on the next context after the switch: once unlock() returns, a
  // waker may resume the waiter, so without `ended` it touches nothing more;
  // with it, the waiter waits for unlock_done before its frame can go.
  auto do_unlock = [&] {
    if (!ended) {
      unlock();  // the waiter may now be woken and return: touch nothing more
      return;
    }
    sources* sp = &s;
    unlock();
    sp->end(woke_by::context);
    sp->unlock_done.store(true, std::memory_order_release);
  };
  if (pk.on_fiber()) {
    try {
      pk.park(do_unlock, reason, obj);
    } catch (...) {
      if (ended) wait_flag(s.unlock_done);
      disarm();
      throw;
    }
  } else if (deadline == kNoTimer) {
    pk.park(do_unlock, reason, obj);
  } else if (!pk.park_thread_until(do_unlock, deadline)) {
    // Timed out: ours to leave only if no waker has taken the record.
    if (remove()) {
      disarm();
      return woke_by::deadline;
    }
    pk.wait_unparked();
  }
  if (ended) wait_flag(s.unlock_done);
  disarm();
  return s.by.load(std::memory_order_relaxed);
}

}  // namespace goro::detail
