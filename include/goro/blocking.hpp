// goro/blocking.hpp — goro::blocking(f): run a call that blocks its OS thread
// without blocking the scheduler's worker.
//
//   std::string text = goro::blocking([&] { return read_whole_file(path); });
//
// A fiber that calls getaddrinfo, reads a file, sleeps in a C library or waits
// on a std::mutex holds its worker thread (and its processor) for as long as
// the call lasts: goro has no preemption. goro::blocking(f) runs f() on a
// separate pool of OS threads instead and parks only the calling fiber until f
// returns; meanwhile its worker runs other fibers. Go has no direct
// equivalent: its runtime hands the processor of a thread stuck in a syscall
// or a cgo call to another thread.
//
// f is called in place (neither copied nor moved), as an lvalue, on a pool
// thread. Result: f's result, decayed (a reference comes back as a copy;
// move-only results are moved out; void is fine), or the exception f threw,
// rethrown with its type in the calling fiber.
//
// Inline cases: called from a plain OS thread (not a fiber) or with no runtime
// running, blocking(f) simply calls f() on the calling thread; the same
// happens in a destructor run while the runtime unwinds fibers at exit (other
// blocking goro calls abort there). f running on a pool thread is itself on a
// plain OS thread: the goro calls it makes behave as on any such thread, and a
// nested goro::blocking runs inline.
//
// The pool is process-wide and survives goro::run. Threads are started on
// demand, one for each job that finds no idle thread, up to
// max_blocking_threads() (default 64; Go's cgo calls have no such limit, but
// a limit keeps a storm of slow calls from creating thousands of threads).
// Jobs beyond the limit wait in FIFO order for a thread; a job that waits for
// another queued job can therefore deadlock once the limit is reached. A
// thread idle for 10 s exits.
//
// Cancellation: f cannot be interrupted. At runtime exit a fiber parked in
// blocking() is unwound like any other: if its f is still waiting for a
// thread, f never runs; if f is running, the unwinding waits until f returns,
// since f may use the fiber's stack. So goro::run does not return before
// every f it started has finished.
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"

namespace goro {

namespace detail {
// True when the caller is a fiber that blocking() should park (not a plain OS
// thread, not a fiber being unwound at exit).
bool blocking_offloads() noexcept;
// Runs `job` on the blocking pool and parks the calling fiber until it has
// run. Requires blocking_offloads(). `job` must not throw. Throws
// std::system_error if the pool has no thread and none can be started.
void blocking_submit(absl::AnyInvocable<void() &&> job);
}  // namespace detail

// Runs f() on the blocking pool and parks the calling fiber (not its worker)
// until it returns; returns its result or rethrows its exception. See above.
template <class F>
auto blocking(F&& f) -> std::decay_t<std::invoke_result_t<F&>> {
  using R = std::decay_t<std::invoke_result_t<F&>>;
  if (!detail::blocking_offloads()) return std::invoke(f);
  // Everything lives on the caller's stack, which stays put while it is
  // parked; the job captures one pointer, so it fits AnyInvocable's inline
  // buffer and submitting allocates nothing.
  struct state {
    std::remove_reference_t<F>* fn;
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
    std::exception_ptr error;
  } st{&f, {}, {}};
  detail::blocking_submit([s = &st]() noexcept {
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(*s->fn);
      } else {
        s->value.emplace(std::invoke(*s->fn));
      }
    } catch (...) {
      s->error = std::current_exception();
    }
  });
  if (st.error) std::rethrow_exception(st.error);
  if constexpr (!std::is_void_v<R>) return std::move(*st.value);
}

// Sets the most threads the pool may run at once; n < 1 throws
// std::invalid_argument. Lowering it lets surplus threads finish their
// current job and exit; raising it starts threads for jobs already waiting
// (std::system_error if one cannot be started; the new limit stays).
void set_max_blocking_threads(int n);
// The current limit (64 unless set).
int max_blocking_threads();

}  // namespace goro
