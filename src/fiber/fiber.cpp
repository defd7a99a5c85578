// src/fiber/fiber.cpp — context switching, fiber entry/exit, park and yield.
//
// One switch, from context A (a fiber or a worker's g0) to context B:
//   1. A records in its worker's `sw` what must happen to A once it is off
//      its stack (requeue / park+unlock / release) and checks its stack;
//   2. jump_to(): sanitizer hand-off, then boost::context's jump_fcontext,
//      passing &sw;
//   3. B resumes (inside jump_to's caller, or in fiber_entry for a new fiber),
//      finishes the sanitizer hand-off and runs after_switch(), which stores
//      A's saved context into A and performs the recorded action.
// Only after step 3 can another worker see A as runnable, so nobody resumes a
// fiber whose registers are not saved yet.
//
// The worker is re-read with current_worker() after every jump: the code
// after a jump in a fiber may run on another OS thread than the code before.
#include <cinttypes>
#include <cstdio>
#include <exception>

#include "fiber/sanitizer.hpp"
#include "fiber/stack.hpp"
#include "goro/runtime.hpp"
#include "net/netpoll.hpp"
#include "sched/sched.hpp"

namespace goro::detail {

// The switch itself. On x86-64 (System V), goro uses its own copy of Boost's
// jump_fcontext: the same context layout (made by make_fcontext, read by
// ontop_fcontext for backtraces, by tools/goro-gdb.py for parked fibers) and the
// same saved state (callee-saved registers, MXCSR, x87 control word), with
// one difference: it resumes the other context with `ret`, not `jmp *%r8`.
// The switching side's `call` pushed a return address on the CPU's return
// stack buffer; Boost's `jmp` never pops it, so every return the resumed
// fiber then makes up its own call chain is predicted one frame off and
// mispredicts (measured: 5-6 mispredicted returns per switch, a third of a
// channel ping-pong round trip). With `ret`, the buffer stays aligned, and
// when both sides switch from the same call site (a fiber parking where the
// other one parked) every return is predicted. Where they did not (a fresh
// fiber's trampoline, an exiting fiber handing over to one parked elsewhere,
// g0), Boost's indirect jmp, whose own predictor learns the pattern, did
// better: skynet took 0.27 s with `ret` everywhere against 0.24 s, so
// jump_to picks per switch. Measured against Boost's jump alone: channel
// ping-pong 121-135 -> 95-103 ns per round trip, a yield on one processor
// 26 -> 16 ns, skynet 0.23-0.24 -> 0.22-0.23 s. Other platforms use Boost's.
#if defined(__x86_64__) && defined(__linux__)
extern "C" bctx::transfer_t goro_jump_fcontext(bctx::fcontext_t to, void* data);
asm(R"(
    .pushsection .text
    .globl goro_jump_fcontext
    .hidden goro_jump_fcontext
    .type goro_jump_fcontext, @function
    .p2align 4
goro_jump_fcontext:
    leaq    -0x38(%rsp), %rsp
    stmxcsr (%rsp)
    fnstcw  0x4(%rsp)
    movq    %r12, 0x8(%rsp)
    movq    %r13, 0x10(%rsp)
    movq    %r14, 0x18(%rsp)
    movq    %r15, 0x20(%rsp)
    movq    %rbx, 0x28(%rsp)
    movq    %rbp, 0x30(%rsp)
    movq    %rsp, %rax
    movq    %rdi, %rsp
    ldmxcsr (%rsp)
    fldcw   0x4(%rsp)
    movq    0x8(%rsp), %r12
    movq    0x10(%rsp), %r13
    movq    0x18(%rsp), %r14
    movq    0x20(%rsp), %r15
    movq    0x28(%rsp), %rbx
    movq    0x30(%rsp), %rbp
    leaq    0x38(%rsp), %rsp
    movq    %rsi, %rdx
    movq    %rax, %rdi
    ret
    .size goro_jump_fcontext, .-goro_jump_fcontext
    .popsection
)");
inline bctx::transfer_t switch_context(bctx::fcontext_t to, void* data) {
  return goro_jump_fcontext(to, data);
}
#else
inline bctx::transfer_t switch_context(bctx::fcontext_t to, void* data) {
  return bctx::jump_fcontext(to, data);
}
#endif

void destroy_locals(fiber* f);                 // fiber_local.cpp
void print_panic(fiber* f, const char* what);  // runtime.cpp

namespace {

void check_stack(fiber* f, bool read_canary = false) {
  char probe;
  if (stack_overflowed(f->stk, &probe, read_canary)) {
    fatal("goro: stack overflow in fiber %" PRIu64 " (stack of %zu bytes; see options::stack_size)",
          f->id, f->stk.size);
  }
}

// First run of a fiber: attach a stack and build its initial context.
void start(worker* w, fiber* f) {
  f->stk = w->p->stacks.get();
  f->stack_top.store(f->stk.top(), std::memory_order_relaxed);
  san::asan_unpoison(f->stk.lo, f->stk.size);
  set_ctx(f, bctx::make_fcontext(f->stk.top(), f->stk.size, &fiber_entry));
  // A TSan fiber is expensive to create (~1 MiB of state cleared) and TSan
  // allows only ~8k of them, so one lives with each stack and is reused by
  // every fiber that runs on that stack.
  if (f->stk.tsan == nullptr) f->stk.tsan = san::tsan_create();
  f->tsan = f->stk.tsan;
  registry_add(w->p, f);
}

// The fiber to switch to directly from a fiber that stops running, or null
// to go through g0: at shutdown, and when this P has a timer due (g0 fires
// it once the caller's lock has been released in after_switch).
fiber* next_local(worker* w) {
  if (w->s->stopping.load(std::memory_order_relaxed)) return nullptr;
  // Reading the clock costs about as much as a switch, so with timers armed
  // it is read every 8th switch: a busy P fires a due timer within a few
  // switches (microseconds), an idle one at once (find_runnable).
  if (w->p->timers.first.load(std::memory_order_relaxed) != kNoTimer &&
      (++w->timer_polls & 7) == 0 && timers_due(w->p->timers)) {
    return nullptr;
  }
  // Likewise for sockets: with fibers waiting on the netpoller and nobody
  // polling for a while (every P busy), go through g0, which polls.
  if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0 && (++w->poll_ticks & 63) == 0 &&
      mono_now() - g_netpoll_last.load(std::memory_order_relaxed) >= kBusyPollInterval) {
    return nullptr;
  }
  return find_local(w);
}

// Back in a fiber after a jump: finish the hand-off and, at shutdown, start
// unwinding its stack (once).
void resumed(fiber* self, bctx::transfer_t t) {
  san::asan_finish_switch(self->asan_fake_stack);
  after_switch(t);
  if (self->unwinding && !self->unwind_thrown) {
    self->unwind_thrown = true;
    throw forced_unwind{};
  }
}

}  // namespace

bctx::transfer_t jump_to(worker* w, fiber* from, fiber* to, bool from_dying) {
  void** fake =
      from_dying ? nullptr : (from != nullptr ? &from->asan_fake_stack : &w->g0_asan_fake_stack);
  w->running_id.store(to != nullptr ? to->id : 0, std::memory_order_relaxed);
  if (to != nullptr) {
    w->current = to;
    const bool fresh = to->ctx == nullptr;
    if (fresh) start(w, to);
    // `ret` pays where the two fibers stopped at the same place (the same
    // wait reason: the same park call chain, or both yielded), so that the
    // resumed fiber's returns match the ones the stopping fiber's calls
    // pushed. Elsewhere (a fresh fiber's trampoline, a fiber exiting into
    // one parked elsewhere) Boost's indirect jmp predicts better.
    const bool same_site = !fresh && from != nullptr &&
                           from->wait_reason.load(std::memory_order_relaxed) ==
                               to->wait_reason.load(std::memory_order_relaxed);
    san::asan_start_switch(fake, to->stk.lo, to->stk.size);
    san::tsan_switch_to(to->tsan);
    if (!same_site) return bctx::jump_fcontext(to->ctx, &w->sw);
    return switch_context(to->ctx, &w->sw);
  }
  w->current = nullptr;
  san::asan_start_switch(fake, w->g0_stack_lo, w->g0_stack_size);
  san::tsan_switch_to(w->g0_tsan);
  return bctx::jump_fcontext(w->g0, &w->sw);
}

// GORO_LOCK_CHECKS: the fiber that just switched away left no internal
// spinlock held on this thread (the park protocol's lock is released by the
// unlock callback, which has run).
inline void check_no_locks_held([[maybe_unused]] fiber* f, [[maybe_unused]] const char* what) {
#if defined(GORO_LOCK_CHECKS)
  if (t_spinlocks_held != 0) [[unlikely]] {
    fatal("goro: fiber %" PRIu64 " %s while holding %d internal lock(s) (%s)", f->id, what,
          t_spinlocks_held, spawn_site(f).c_str());
  }
#endif
}

void after_switch(bctx::transfer_t t) {
  worker* w = current_worker();
  switch_record& sw = *static_cast<switch_record*>(t.data);
  fiber* from = sw.from;
  if (from == nullptr) {
    w->g0 = t.fctx;
    return;
  }
  set_ctx(from, t.fctx);
  const after action = sw.action;
  sw.action = after::nothing;
  switch (action) {
    case after::nothing:
      break;
    case after::requeue:
      check_no_locks_held(from, "yielded");
      set_state(from, fiber_state::running, fiber_state::runnable);
      runq_put(w->p, from, false);
      break;
    case after::park:
      set_state(from, fiber_state::running, fiber_state::parked);
      if (!sw.unlock(sw.unlock_arg)) {
        check_no_locks_held(from, "parked");
        set_state(from, fiber_state::parked, fiber_state::runnable);
        runq_put(w->p, from, true);
      } else {
        check_no_locks_held(from, "parked");
      }
      break;
    case after::release:
      release_fiber(w, from);
      break;
  }
}

void release_fiber(worker* w, fiber* f) {
  w->p->stacks.put(f->stk);
  registry_remove(f);
  add_live(w->p, -1);
  free_fiber(w->s, w->p, f);
}

void fiber_entry(bctx::transfer_t t) {
  san::asan_finish_switch(nullptr);
  after_switch(t);
  fiber* self = current_worker()->current;
  try {
    task fn = std::move(self->fn);
    fn();
  } catch (const forced_unwind&) {
    // Shutdown unwinding reached the bottom of the stack: done.
  } catch (const std::exception& e) {
    print_panic(self, e.what());
  } catch (...) {
    print_panic(self, "exception not derived from std::exception");
  }
  exit_fiber();
}

void exit_fiber() {
  worker* w = current_worker();
  fiber* self = w->current;
  destroy_locals(self);
  check_stack(self, /*read_canary=*/true);
  set_state(self, fiber_state::running, fiber_state::dead);
  w->sw = switch_record{self, after::release, nullptr, nullptr};
  fiber* next = next_local(w);
  if (next != nullptr) set_state(next, fiber_state::runnable, fiber_state::running);
  jump_to(w, self, next, /*from_dying=*/true);
  fatal("goro: internal error: a dead fiber was resumed");
}

void park(park_callback unlock, void* arg, const char* reason, const void* obj) {
  worker* w = current_worker();
  fiber* self = w != nullptr ? w->current : nullptr;
  if (self == nullptr) fatal("goro: internal error: park() outside a fiber");
  if (self->unwind_thrown) {
    fatal("goro: fiber %" PRIu64
          " blocked (%s) while being unwound at exit; a destructor may not block then, and "
          "catch (...) must rethrow",
          self->id, reason);
  }
  self->wait_reason.store(reason, std::memory_order_relaxed);
  self->wait_obj.store(obj, std::memory_order_relaxed);
  self->wait_since.store(w->s->clock.load(std::memory_order_relaxed), std::memory_order_relaxed);
  check_stack(self);
  w->sw = switch_record{self, after::park, unlock, arg};
  fiber* next = next_local(w);
  if (next != nullptr && next->ctx == nullptr) {
    // Starting a fiber means attaching a stack and faulting in its first page
    // (microseconds), all while the caller's lock is still held until
    // after_switch. Let g0 release the lock first and start it from there.
    w->handoff = next;
    next = nullptr;
  }
  if (next != nullptr) set_state(next, fiber_state::runnable, fiber_state::running);
  bctx::transfer_t t = jump_to(w, self, next, false);
  self->wait_reason.store(nullptr, std::memory_order_relaxed);
  resumed(self, t);
}

void yield_fiber() {
  worker* w = current_worker();
  fiber* self = w->current;
  check_stack(self);
  const bool stopping = w->s->stopping.load(std::memory_order_relaxed);
  const bool timers = !stopping && timers_due(w->p->timers);
  fiber* next = stopping || timers ? nullptr : find_local(w);
  // Nothing else runnable here: keep running (to g0 at shutdown, so the worker
  // can exit, or to fire due timers).
  // Under options::migrate_always it goes through the queues all the same.
  if (next == nullptr && !stopping && !timers && !w->p->migrate) return;
  if (next != nullptr) set_state(next, fiber_state::runnable, fiber_state::running);
  w->p->yields.store(w->p->yields.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  w->sw = switch_record{self, after::requeue, nullptr, nullptr};
  bctx::transfer_t t = jump_to(w, self, next, false);
  resumed(self, t);
}

}  // namespace goro::detail
