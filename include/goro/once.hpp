// goro/once.hpp — Go's sync.Once.
//
//   static goro::once init;
//   init.call([] { load_config(); });
//
// call(f, args...) runs f exactly once over all calls, even under contention;
// callers that arrive while it runs wait for it (a fiber parks). Unlike Go,
// and as std::call_once: if f throws, the exception propagates to that
// caller, the call does not count, and the next call runs f again.
// After the first completed call, call() is one acquire load.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <utility>

#include "goro/mutex.hpp"

namespace goro {

class once {
 public:
  constexpr once() noexcept = default;
  once(const once&) = delete;
  once& operator=(const once&) = delete;

  template <class F, class... Args>
  void call(F&& f, Args&&... args) {
    if (done_.load(std::memory_order_acquire)) return;
    std::lock_guard lk(mu_);
    if (done_.load(std::memory_order_relaxed)) return;
    std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    done_.store(true, std::memory_order_release);
  }

  // Whether a call has completed.
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> done_{false};
  mutex mu_;
};

}  // namespace goro
