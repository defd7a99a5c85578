// src/context/hook.hpp — run a callback when a context ends (internal).
//
// Go's context.AfterFunc, reduced to what the runtime's primitives need: a
// waiter parked in a semaphore or a wait group registers a hook on its
// context; cancellation calls the hook, which takes the waiter out of the
// primitive's queue and wakes it. No helper fiber, thread or channel.
//
// A hook lives on the waiter's stack. The canceller calls `fn` once, with no
// context lock held, then sets `ran` as its last access to the hook.
// hook_unregister() either unlinks a hook that has not been taken yet (fn
// will never run) or waits until `ran` (fn has returned), so the waiter may
// return and free the hook right after it.
#pragma once

#include <atomic>
#include <memory>

namespace goro {
class context;
}

namespace goro::detail {

struct cancel_state;

struct ctx_hook {
  void (*fn)(ctx_hook*) = nullptr;
  ctx_hook* prev = nullptr;  // links and `linked`: guarded by st->mu
  ctx_hook* next = nullptr;
  bool linked = false;
  std::atomic<bool> ran{false};
  std::shared_ptr<cancel_state> st;  // while registered
};

enum class hook_result {
  never,       // the context can never end (no cancellable ancestor): not registered
  registered,  // fn runs once when it ends, unless unregistered first
  ended,       // it has already ended: not registered
};

hook_result hook_register(const context& ctx, ctx_hook* h);
// After a `registered`: unlinks `h`, or waits until its fn has returned.
void hook_unregister(ctx_hook* h);

}  // namespace goro::detail
