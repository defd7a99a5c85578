// goro/group.hpp — golang.org/x/sync/errgroup.Group: fibers working on
// subtasks of one task, with the first error cancelling the rest.
//
//   goro::group g(ctx);                     errgroup.WithContext(ctx)
//   g.set_limit(8);                         g.SetLimit(8)
//   for (auto& url : urls)
//     g.go([&, url]() -> absl::Status {     g.Go(func() error { ... })
//       return fetch(g.ctx(), url);
//     });
//   absl::Status st = g.wait();             g.Wait()
//
// go(f) runs f in a new fiber; f returns absl::Status (or anything
// convertible to it) or void (success). The first failure — a non-OK status,
// or an exception escaping f — cancels ctx() (its cause() is that status)
// and is what wait() reports: wait() returns the first non-OK status, or
// rethrows the first exception if that came first. Later failures are
// dropped, as Go's. Exceptions never escape a group's fibers, so they never
// terminate the process. ctx() is also cancelled when wait() returns.
//
// set_limit(n) bounds how many of the group's fibers run at once: go() then
// waits (parks) until one finishes; try_go() returns false instead. A
// negative n removes the limit. Changing the limit while fibers of the group
// are running throws std::logic_error (Go panics); with a limit of 0, go()
// throws std::logic_error (it could never start) and try_go() returns false.
//
// Where C++ differs from Go: the destructor cancels ctx() and then waits for
// the group's fibers to finish (they refer to the group), like std::jthread's
// request_stop() and join(). Call wait() to see their result.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "goro/context.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/semaphore.hpp"
#include "goro/wait_group.hpp"

namespace goro {

class group {
 public:
  group() : group(context::background()) {}
  explicit group(const context& parent);
  group(const group&) = delete;
  group& operator=(const group&) = delete;
  ~group();

  template <class F>
  void go(F&& f, const std::source_location& where = std::source_location::current()) {
    go_impl(wrap(std::forward<F>(f)), /*block=*/true, where);
  }
  template <class F>
  bool try_go(F&& f, const std::source_location& where = std::source_location::current()) {
    return go_impl(wrap(std::forward<F>(f)), /*block=*/false, where);
  }

  // Waits for every fiber started so far; the first failure (see above).
  absl::Status wait();

  // Cancelled by the first failure and when wait() returns.
  const context& ctx() const noexcept { return ctx_; }

  void set_limit(std::int64_t n);

 private:
  using body = absl::AnyInvocable<absl::Status() &&>;

  template <class F>
  static body wrap(F&& f) {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    if constexpr (std::is_void_v<R>) {
      return [f = std::forward<F>(f)]() mutable -> absl::Status {
        f();
        return absl::OkStatus();
      };
    } else {
      static_assert(std::is_convertible_v<R, absl::Status>,
                    "goro::group::go: the function must return void or absl::Status");
      return [f = std::forward<F>(f)]() mutable -> absl::Status { return f(); };
    }
  }

  bool go_impl(body f, bool block, const std::source_location& where);
  void run(body& f);  // in the new fiber
  void fail(absl::Status st, std::exception_ptr e);

  context ctx_;
  cancel_cause_func cancel_;
  wait_group wg_;
  std::atomic<std::int64_t> active_{0};
  std::unique_ptr<semaphore> limit_;  // null: no limit

  detail::spinlock mu_;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status err_ ABSL_GUARDED_BY(mu_);
  std::exception_ptr exc_ ABSL_GUARDED_BY(mu_);
};

}  // namespace goro
