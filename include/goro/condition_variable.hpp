// goro/condition_variable.hpp — Go's sync.Cond, with std::condition_variable's
// interface, on std::unique_lock<goro::mutex>.
//
//   goro::mutex mu;
//   goro::condition_variable cv;
//   std::unique_lock lk(mu);
//   cv.wait(lk, [&] { return ready; });      // for !ready { c.Wait() }
//   cv.wait_for(lk, 50ms, [&] { return ready; });
//   cv.notify_one();  cv.notify_all();         // c.Signal(), c.Broadcast()
//
// A waiting fiber parks (its worker runs other fibers); a waiting OS thread
// blocks. Waiters are woken in the order they started waiting. A wait may
// wake spuriously only when a timed wait's deadline races a notify (then it
// reports no_timeout); the predicate forms handle that as usual.
//
// wait_for/wait_until take any std::chrono clock; a deadline that is not on
// the steady clock is converted once, when the wait starts. Timed waits on a
// fiber use the runtime's timers.
//
// Lifetime: as std::condition_variable, it may be destroyed once every waiter
// has been notified, even before they have returned from wait (the
// destructor waits for them to stop touching it, which takes microseconds).
//
// At runtime exit, a fiber unwound while waiting leaves with `lk` released
// (not owning the mutex) instead of relocking: blocking during unwinding is
// not allowed, and the unique_lock then has nothing to unlock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "goro/detail/spinlock.hpp"
#include "goro/detail/wait_list.hpp"
#include "goro/mutex.hpp"

namespace goro {

namespace detail {
struct cv_waiter;
}

class condition_variable {
 public:
  condition_variable() = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;
  ~condition_variable();

  void notify_one() noexcept;
  void notify_all() noexcept;

  // Throws std::logic_error if `lk` does not own its mutex.
  void wait(std::unique_lock<mutex>& lk) { wait_impl(lk, kNever); }

  template <class Pred>
  void wait(std::unique_lock<mutex>& lk, Pred pred) {
    while (!pred()) wait(lk);
  }

  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lk,
                            const std::chrono::time_point<Clock, Duration>& tp) {
    return wait_impl(lk, to_steady_ns(tp));
  }

  template <class Clock, class Duration, class Pred>
  bool wait_until(std::unique_lock<mutex>& lk, const std::chrono::time_point<Clock, Duration>& tp,
                  Pred pred) {
    const std::int64_t deadline = to_steady_ns(tp);
    while (!pred()) {
      if (wait_impl(lk, deadline) == std::cv_status::timeout) return pred();
    }
    return true;
  }

  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lk,
                          const std::chrono::duration<Rep, Period>& d) {
    return wait_impl(lk, steady_after(d));
  }

  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<mutex>& lk, const std::chrono::duration<Rep, Period>& d,
                Pred pred) {
    const std::int64_t deadline = steady_after(d);
    while (!pred()) {
      if (wait_impl(lk, deadline) == std::cv_status::timeout) return pred();
    }
    return true;
  }

 private:
  static constexpr std::int64_t kNever = INT64_MAX;

  // Steady-clock nanoseconds since its epoch, saturating.
  static std::int64_t steady_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  template <class Rep, class Period>
  static std::int64_t steady_after(const std::chrono::duration<Rep, Period>& d) {
    using namespace std::chrono;
    const std::int64_t now = steady_now();
    if (d <= d.zero()) return now;
    if (duration<double, std::nano>(d).count() >= static_cast<double>(kNever - now)) return kNever;
    return now + duration_cast<nanoseconds>(d).count();
  }
  template <class Clock, class Duration>
  static std::int64_t to_steady_ns(const std::chrono::time_point<Clock, Duration>& tp) {
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
      if (tp == std::chrono::time_point<Clock, Duration>::max()) return kNever;
      return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
    } else {
      return steady_after(tp - Clock::now());
    }
  }

  std::cv_status wait_impl(std::unique_lock<mutex>& lk, std::int64_t deadline);

  detail::spinlock mu_;
  detail::wait_list<detail::cv_waiter> q_ ABSL_GUARDED_BY(mu_);
  // Waiters that may still touch *this: from linking until they return.
  std::atomic<std::int32_t> refs_{0};
};

}  // namespace goro
