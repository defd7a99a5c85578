// src/sched/runtime.cpp — goro::run and the runtime's life cycle.
//
// Shutdown protocol, in order:
//   1. The main fiber's function returns (or throws: the exception is kept).
//   2. It calls stop_workers(): `stopping` is set and every sleeping worker
//      is woken. From now on no worker picks up new work: a fiber that blocks,
//      yields or exits switches to its worker's g0, which exits its loop.
//      (Fibers are not preempted: one spinning without blocking delays this.)
//   3. The main fiber wakes run()'s caller thread (main_done futex) and exits.
//   4. The caller joins every worker thread, then closes the gate that lets
//      plain OS threads call go() (they get goro::runtime_error from now on).
//   5. The caller becomes a worker itself (with P 0) and unwinds every fiber
//      still alive: a fiber that never ran (it can only be in a run queue)
//      has its function destroyed; a started fiber (in a P's registry) is
//      resumed with `unwinding` set, so the goro call it is blocked in throws
//      forced_unwind and its destructors run (armed timers are dropped
//      first, see clear_timers). Unwinding can ready or spawn
//      fibers; the loop runs until the queues and registries are empty.
//   6. Everything is freed (stacks unmapped), and the main exception, if any,
//      is rethrown.
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <thread>

#include "fiber/sanitizer.hpp"
#include "goro/dump.hpp"
#include "goro/runtime.hpp"
#include "sched/futex.hpp"
#include "sched/sched.hpp"

namespace goro::detail {

int default_maxprocs();                           // maxprocs.cpp
bool debug_flag(std::string_view name);           // diag.cpp: GORO_DEBUG=name[,name]
void install_overflow_handler(std::size_t page);  // overflow.cpp
void* enter_altstack();
void leave_altstack(void* alt);

std::atomic<sched*> g_sched{nullptr};

// Plain OS threads hold this shared while they hand work to the runtime, so
// run() cannot free the scheduler under them (step 4 above).
std::shared_mutex g_gate;

namespace {

constexpr std::size_t kDefaultStackSize = 256 * 1024;
constexpr long kDefaultGuardedStacks = 8192;
constexpr int kMaxSpareProcs = 64;

// initial-exec: a plain %fs-relative load instead of a __tls_get_addr call
// per access (the general-dynamic model a shared library gets by default).
// The cost is a few bytes of static TLS, which glibc reserves even for a
// library loaded with dlopen.
[[gnu::tls_model("initial-exec")]] thread_local worker* t_worker = nullptr;

// Serializes run() calls: one runtime at a time.
std::mutex g_run_mu;

void init_g0(worker* w) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    w->g0_stack_lo = addr;
    w->g0_stack_size = size;
  }
  w->g0_tsan = san::tsan_current();
  w->rng = 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(w->p->id + 1);
}

}  // namespace

void worker_main(worker* w) {
  thread_count_scope counted(g_runtime_threads);
  w->tid.store(static_cast<int>(::gettid()), std::memory_order_relaxed);
  set_current_worker(w);
  init_g0(w);
  void* alt = enter_altstack();
  for (;;) {
    fiber* f = w->handoff;
    w->handoff = nullptr;
    // At shutdown a handed-off fiber is not run: it goes back to the run
    // queue, where the unwinder (step 5) finds it (a fiber that never ran is
    // in no registry, so dropping it here would leak it and its task).
    if (f != nullptr && w->s->stopping.load(std::memory_order_acquire)) {
      runq_put(w->p, f, false);
      f = nullptr;
    }
    if (f == nullptr) f = find_runnable(w);
    if (f == nullptr) break;
    set_state(f, fiber_state::runnable, fiber_state::running);
    w->sw = switch_record{};
    bctx::transfer_t t = jump_to(w, nullptr, f, false);
    san::asan_finish_switch(w->g0_asan_fake_stack);
    after_switch(t);
  }
  leave_altstack(alt);
  set_current_worker(nullptr);
  w->exited.store(true, std::memory_order_release);  // sysmon joins spares
}

namespace {

fiber* any_registered(sched* s) {
  for (processor* p : s->ps) {
    std::lock_guard lk(p->reg_mu);
    if (p->reg_head != nullptr) return p->reg_head;
  }
  return nullptr;
}

// Destroys every never-started fiber sitting in a run queue (their function
// objects, and what those captured, are destroyed); started ones are left to
// the registry. Workers are gone: the queues are quiescent.
bool drop_unstarted(worker* w) {
  sched* s = w->s;
  std::vector<fiber*> found;
  {
    std::lock_guard lk(s->mu);
    found.assign(s->gq.begin(), s->gq.end());
    s->gq.clear();
    s->gq_size.store(0);
  }
  for (processor* p : s->ps) {
    while (fiber* f = p->q.pop()) found.push_back(f);
    if (fiber* f = p->runnext.exchange(nullptr)) found.push_back(f);
  }
  for (worker* m : s->ws) {
    if (m->handoff != nullptr) found.push_back(std::exchange(m->handoff, nullptr));
  }
  bool any = false;
  for (fiber* f : found) {
    if (f->ctx != nullptr) continue;  // started: in the registry
    any = true;
    f->fn.reset();
    add_live(w->p, -1);
    free_fiber(s, w->p, f);
  }
  return any;
}

void unwind_all(worker* w) {
  sched* s = w->s;
  for (;;) {
    const bool dropped = drop_unstarted(w);
    fiber* f = any_registered(s);
    if (f == nullptr) {
      if (dropped) continue;  // destructors may have spawned more
      break;
    }
    f->unwinding = true;
    f->state.store(fiber_state::running, std::memory_order_relaxed);
    w->sw = switch_record{};
    bctx::transfer_t t = jump_to(w, nullptr, f, false);
    san::asan_finish_switch(w->g0_asan_fake_stack);
    after_switch(t);
  }
}

}  // namespace

__attribute__((noinline, noipa)) worker* current_worker() noexcept { return t_worker; }
__attribute__((noinline, noipa)) void set_current_worker(worker* w) noexcept { t_worker = w; }

fiber* current_fiber() noexcept {
  worker* w = current_worker();
  return w != nullptr ? w->current : nullptr;
}

sched::sched(const options& o)
    : nprocs(o.maxprocs > 0 ? o.maxprocs : default_maxprocs()),
      stacks(o.stack_size > 0 ? o.stack_size : kDefaultStackSize,
             o.guarded_stacks >= 0 ? o.guarded_stacks : kDefaultGuardedStacks,
             std::chrono::seconds(2), !debug_flag("noguardregions")),
      report_blocked(o.report_blocked),
      on_deadlock(o.on_deadlock),
      report_leaks(o.report_leaks),
      dump_on_sigquit(o.dump_on_sigquit),
      migrate_always(o.migrate_always || debug_flag("migrate")) {}

void print_panic(fiber* f, const char* what) {
  std::fprintf(stderr, "goro: panic in fiber %" PRIu64 ": %s\n\n", f->id, what);
  std::fflush(stderr);
  goro::dump(std::cerr);
  std::cerr.flush();
  std::abort();
}

void spawn(task t, const std::source_location& where) {
  worker* w = current_worker();
  if (w != nullptr) {
    sched* s = w->s;
    fiber* f = alloc_fiber(s, w->p);
    f->fn = std::move(t);
    f->spawned_at = where;
    add_live(w->p, 1);
    runq_put(w->p, f, true);
    wakep_if_needed(s);
    return;
  }
  std::shared_lock gate(g_gate);
  sched* s = g_sched.load(std::memory_order_acquire);
  if (s == nullptr)
    throw runtime_error("goro::go: no runtime is running (call it inside goro::run)");
  fiber* f = alloc_fiber(s, nullptr);
  f->fn = std::move(t);
  f->spawned_at = where;
  s->external_live.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(s->mu);
    s->gq.push_back(f);
    s->gq_size.store(static_cast<std::int64_t>(s->gq.size()), std::memory_order_release);
  }
  wakep_if_needed(s);
}

}  // namespace goro::detail

namespace goro {

void run(options opts, detail::task main_fn) {
  using namespace detail;
  if (current_worker() != nullptr) throw runtime_error("goro::run: called from inside a fiber");
  std::unique_lock run_lock(g_run_mu, std::try_to_lock);
  if (!run_lock.owns_lock()) throw runtime_error("goro::run: another runtime is running");
  if (opts.maxprocs < 0) throw runtime_error("goro::run: options::maxprocs must be >= 0");

  auto* s = new sched(opts);
  install_overflow_handler(static_cast<std::size_t>(::getpagesize()));
  for (int i = 0; i < s->nprocs; ++i) {
    s->ps.push_back(new processor(i, &s->stacks));
    auto* w = new worker;
    w->s = s;
    w->p = s->ps.back();
    s->ws.push_back(w);
  }
  // Spare Ps for the workers sysmon starts while others are stuck.
  const int spares = std::min(4 * s->nprocs, kMaxSpareProcs);
  for (int i = 0; i < spares; ++i) s->ps.push_back(new processor(s->nprocs + i, &s->stacks));
  for (int i = static_cast<int>(s->ps.size()) - 1; i >= s->nprocs; --i) {
    s->free_spare_ps.push_back(s->ps[static_cast<std::size_t>(i)]);  // lowest index first out
  }
  s->ps_used.store(s->nprocs);
  for (processor* p : s->ps) p->migrate = s->migrate_always;

  fiber* m = alloc_fiber(s, nullptr);
  m->is_main = true;
  s->main_fiber = m;
  m->fn = task([s, fn = std::move(main_fn)]() mutable {
    try {
      fn();
    } catch (const forced_unwind&) {
      throw;
    } catch (...) {
      s->main_exception = std::current_exception();
    }
    report_leaks_at_exit(s);
    stop_workers(s);
    s->main_done.store(1, std::memory_order_release);
    futex_wake(&s->main_done);
  });
  s->external_live.fetch_add(1);
  {
    std::lock_guard lk(s->mu);
    s->gq.push_back(m);
    s->gq_size.store(1);
  }
  {
    std::unique_lock gate(g_gate);
    g_sched.store(s, std::memory_order_release);
  }

  s->clock.store(mono_now(), std::memory_order_relaxed);
  install_sigquit(s);
  // Opened before any fiber runs, so that fd counts taken by the program
  // see it all along (the deadlock detector reads it).
  s->stat_fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  {
    thread_count_scope waiting(g_runtime_threads);  // not a thread that could wake a fiber
    for (worker* w : s->ws) w->thread = std::thread(worker_main, w);
    s->sysmon = std::thread(sysmon_main, s);
    while (s->main_done.load(std::memory_order_acquire) == 0) futex_wait(&s->main_done, 0);
    sysmon_stop(s);
    for (worker* w : s->ws) w->thread.join();
  }
  uninstall_sigquit(s);
  if (s->stat_fd >= 0) ::close(s->stat_fd);
  {
    std::unique_lock gate(g_gate);
    g_sched.store(nullptr, std::memory_order_release);
  }

  // Step 5: this thread becomes a worker with P 0 and unwinds the rest.
  worker* w0 = s->ws[0];
  set_current_worker(w0);
  init_g0(w0);
  void* alt = enter_altstack();
  // Armed timers and tickers nobody will fire now: dropped before the
  // unwinding (a sleeping fiber's node is found by a scan, timer_del) and
  // again after it (timers armed by destructors while unwinding).
  clear_timers(s);
  unwind_all(w0);
  clear_timers(s);
  leave_altstack(alt);
  set_current_worker(nullptr);

  std::exception_ptr ex = s->main_exception;
  for (processor* p : s->ps) {
    p->stacks.flush();
    for (fiber* f : p->free_fibers) f->~fiber();  // s->fiber_mem unmaps the memory
    delete p;
  }
  for (fiber* f : s->free_fibers) f->~fiber();
  for (worker* w : s->ws) delete w;
  delete s;
  if (ex) std::rethrow_exception(ex);
}

void yield() {
  if (detail::current_fiber() == nullptr) {
    std::this_thread::yield();
    return;
  }
  detail::yield_fiber();
}

int maxprocs() {
  if (detail::worker* w = detail::current_worker()) return w->s->nprocs;
  std::shared_lock gate(detail::g_gate);
  if (detail::sched* s = detail::g_sched.load()) return s->nprocs;
  return detail::default_maxprocs();
}

std::int64_t num_fibers() {
  if (detail::worker* w = detail::current_worker()) return detail::live_fibers(w->s);
  std::shared_lock gate(detail::g_gate);
  if (detail::sched* s = detail::g_sched.load()) return detail::live_fibers(s);
  return 0;
}

std::uint64_t fiber_id() {
  detail::fiber* f = detail::current_fiber();
  return f != nullptr ? f->id : 0;
}

}  // namespace goro
