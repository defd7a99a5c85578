// goro/runtime.hpp — starting the runtime and spawning fibers.
//
// This header declares:
//   goro::options        how many processors, how big a stack, guard budget
//   goro::run(fn)        Go's `func main()`: run fn as the main fiber
//   goro::go(f, args...) Go's `go f(args...)`
//   goro::yield()        Go's `runtime.Gosched()`
//   goro::maxprocs()     Go's `runtime.GOMAXPROCS(0)`
//   goro::num_fibers()   Go's `runtime.NumGoroutine()`
//   goro::fiber_id()     the calling fiber's id (0 on a plain OS thread)
//   goro::runtime_error  thrown on misuse of the runtime itself
//
// Model. Fibers are stackful coroutines scheduled M:N: `maxprocs` logical
// processors (P), each driven by one OS worker thread (M), with per-P run
// queues and work stealing. See HACKING.md for the scheduler in depth.
//
// Preemption. Scheduling is cooperative: a fiber gives up its worker only when
// it blocks in a goro call or calls goro::yield(). A fiber that spins forever
// without either keeps its worker (and delays run()'s return until it yields).
//
// Thread-locals. A fiber may resume on a different OS thread after any
// blocking goro call or yield(). A `thread_local` read before such a call and
// again after it may therefore be another thread's copy (and compilers may
// cache a thread_local's address across the call). Use goro::fiber_local<T>
// (goro/fiber_local.hpp) for per-fiber state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "goro/detail/task.hpp"

namespace goro {

// Misuse of the runtime: run() nested or concurrent, go() with no runtime.
class runtime_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// What the runtime does when every fiber is asleep and nothing can wake one
// (see options::on_deadlock).
enum class deadlock_action {
  abort,   // print the report and a fiber dump to stderr, then std::abort()
  report,  // print them once per deadlock and keep waiting (attach a debugger)
  ignore,  // do not look for deadlocks
};

// Runtime options. An aggregate: `goro::run({.maxprocs = 2}, fn)`.
struct options {
  // Number of logical processors (worker threads running fibers at once).
  // 0: $GOMAXPROCS if set to a positive integer, else the number of CPUs this
  // process may run on (sched_getaffinity), capped by the cgroup CPU quota
  // rounded up (never below 2 because of a fractional quota, as Go 1.25).
  int maxprocs = 0;

  // Usable bytes of each fiber stack, rounded up to whole pages. 0: the
  // default, 256 KiB. Stacks do not grow (unlike Go's): this is virtual
  // address space, committed lazily page by page, so a parked fiber that
  // touched little of its stack costs about one 4 KiB page of memory.
  std::size_t stack_size = 0;

  // Guard pages below fiber stacks. On Linux 6.13 and later (guard
  // regions, MADV_GUARD_INSTALL) every stack gets one at no cost in memory
  // mappings, and an overflow faults at the first write past the stack.
  // Older kernels need a mapping of its own per guarded stack, and Linux
  // caps mappings per process (vm.max_map_count, 65530 by default), so
  // there only this many stacks are guarded; the rest are carved from shared
  // slabs with no guard page, and their overflow is caught by a check at
  // every context switch (the stack pointer) and at exit (a 64-byte zero
  // canary at the bottom of the stack) instead of at the faulting write.
  // -1: the default, 8192. 0: no guard pages at all, on any kernel.
  // GORO_DEBUG=noguardregions turns guard regions off (gdb's gcore cannot
  // copy memory mappings that have them; kernel core dumps can).
  long guarded_stacks = -1;

  // The monitor prints "goro: fiber N has blocked worker W for X ms" once
  // for each fiber that keeps a worker from scheduling for over 10 ms while
  // other fibers wait (a blocking syscall or a long computation: use
  // goro::blocking for the former). false silences it; the monitor still
  // starts spare workers so that the waiting fibers run.
  bool report_blocked = true;

  // Deadlock detection, as Go's "all goroutines are asleep". The runtime is
  // deadlocked when, for 20 ms on end: the main fiber is parked, no fiber is
  // runnable, no timer is armed (a sleeping fiber, a timeout, a ticker), no
  // fiber waits on a socket or in goro::blocking, and every OS thread of the
  // process that is not the runtime's own is itself asleep in a goro call.
  // That last rule is what keeps plain threads safe: goro cannot know which
  // channels a thread holds, so any thread that is running (or blocked
  // outside goro: in a join, a read, a std::mutex) counts as one that may
  // still wake a fiber, and no deadlock is declared while one exists. A
  // thread parked in a goro call can only be woken by a fiber or a timer, so
  // it counts as asleep. It then prints
  // `goro: fatal error: all fibers are asleep - deadlock!` and a fiber dump
  // to stderr, and acts as this says.
  deadlock_action on_deadlock = deadlock_action::abort;

  // When main returns, print `goro: N fibers still alive when main returned`
  // and a dump of them to stderr, if there are any still alive 100 ms later
  // (they are unwound after that, as always). For finding leaks; see also goro::check_no_leaks().
  bool report_leaks = false;

  // Print a fiber dump to stderr on SIGQUIT (Ctrl-\) and keep running,
  // where Go would print its goroutine dump and exit. The handler is
  // installed for the duration of run() and the previous one restored.
  bool dump_on_sigquit = false;

  // A debugging aid for race detectors: every fiber made runnable (readied,
  // yielding, spawned) is queued on a random processor rather than the
  // current one, so fibers migrate between threads as often as possible.
  // Slow; also enabled by the environment variable GORO_DEBUG=migrate (the
  // CI's TSan run sets it).
  bool migrate_always = false;
};

// Runs `main_fn` as the main fiber on a fresh runtime and returns when it
// returns. An exception escaping `main_fn` is rethrown here after shutdown.
// Fibers still alive when `main_fn` returns are unwound: a parked or runnable
// fiber is resumed with an internal exception thrown from the goro call it is
// blocked in (catch it only with `catch (...) { throw; }`), so destructors
// run; a fiber that never started just has its function destroyed. A fiber
// that blocks again from a destructor during that unwinding aborts the
// process with a message, since it can't be unwound twice.
// run() may be called again after it returns. Throws goro::runtime_error if
// called from a fiber or while another run() is active.
void run(options opts, detail::task main_fn);
inline void run(detail::task main_fn) { run(options{}, std::move(main_fn)); }

namespace detail {
void spawn(task t, const std::source_location& where);

template <class F, class... Args>
void spawn_with(const std::source_location& where, F&& f, Args&&... args) {
  static_assert(std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>,
                "goro::go: f is not callable with these arguments");
  if constexpr (sizeof...(Args) == 0) {
    spawn(task(std::forward<F>(f)), where);
  } else {
    spawn(task([fn = std::decay_t<F>(std::forward<F>(f)),
                tup = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)]() mutable {
            std::apply(std::move(fn), std::move(tup));
          }),
          where);
  }
}
}  // namespace detail

// Starts `f(args...)` in a new fiber, like Go's `go f(args...)`. `f` and
// `args` are decay-copied (or moved) into the fiber, as std::thread does;
// pass std::ref to share. Callable from any fiber, and from any OS thread
// while run() is active; throws goro::runtime_error when no runtime is
// running. An exception escaping `f` is fatal, like a Go panic: the runtime
// prints `goro: panic in fiber N: <what()>` and a fiber dump to stderr, then
// calls std::abort().
//
// The call site is remembered as the fiber's spawn site, which dumps, the
// deadlock report and the blocked-worker report print (Go's "created by").
// A default argument cannot follow a parameter pack, so there is one overload
// per argument count up to six; with more arguments the site is not recorded.
template <class F>
void go(F&& f, const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f));
}
template <class F, class A1>
void go(F&& f, A1&& a1, const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1));
}
template <class F, class A1, class A2>
void go(F&& f, A1&& a1, A2&& a2,
        const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
}
template <class F, class A1, class A2, class A3>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3,
        const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3));
}
template <class F, class A1, class A2, class A3, class A4>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
        const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3), std::forward<A4>(a4));
}
template <class F, class A1, class A2, class A3, class A4, class A5>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5,
        const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5));
}
template <class F, class A1, class A2, class A3, class A4, class A5, class A6>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6,
        const std::source_location& where = std::source_location::current()) {
  detail::spawn_with(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5),
                     std::forward<A6>(a6));
}
template <class F, class A1, class A2, class A3, class A4, class A5, class A6, class A7,
          class... More>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6, A7&& a7, More&&... more) {
  detail::spawn_with(std::source_location(), std::forward<F>(f), std::forward<A1>(a1),
                     std::forward<A2>(a2), std::forward<A3>(a3), std::forward<A4>(a4),
                     std::forward<A5>(a5), std::forward<A6>(a6), std::forward<A7>(a7),
                     std::forward<More>(more)...);
}

// Lets other runnable fibers run, like runtime.Gosched(); the caller stays
// runnable and resumes later, possibly on another worker thread. On a plain
// OS thread it calls std::this_thread::yield().
void yield();

// The number of logical processors of the running runtime; with no runtime
// running, the number run() would use by default.
int maxprocs();

// The number of fibers that exist (started and not finished, including the
// main fiber and fibers not yet scheduled). 0 with no runtime running.
std::int64_t num_fibers();

// The calling fiber's id (the main fiber is 1), or 0 on a plain OS thread.
std::uint64_t fiber_id();

}  // namespace goro
