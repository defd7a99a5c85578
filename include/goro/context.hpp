// goro/context.hpp — Go's context package: cancellation, deadlines, values.
//
//   goro::context::background()          context.Background()
//   auto [ctx, cancel] = with_cancel(p)   context.WithCancel(p)
//   with_cancel_cause(p)                  context.WithCancelCause(p): cancel(status)
//   with_timeout(p, d), with_deadline(p, t)
//   with_value(p, key, v)                 with `static const goro::context_key<T> key;`
//   ctx.done(), ctx.err(), ctx.cause(), ctx.deadline(), ctx.value(key)
//   sleep_for(ctx, d), ch.send(ctx, v), ch.recv(ctx)
//
// A context is a cheap copyable handle to an immutable node; a default-
// constructed one is background(): never cancelled, no deadline, no values,
// and its done() is a nil channel (blocks forever in a select).
//
// Cancellation: cancelling a context (its cancel function, its deadline, or
// an ancestor's cancellation) closes its done() channel and sets err() to
// absl::CancelledError("context canceled") or
// absl::DeadlineExceededError("context deadline exceeded"), forever; err() is
// set before done() is closed. Every descendant is cancelled with the same
// error, once. A cancel function is idempotent and thread-safe, may be called
// from fibers and plain threads, and detaches the context from its parent
// (the parent forgets it). Cancellation runs no helper fiber or thread: a
// deadline is a runtime timer that cancels on the scheduler.
//
// Lifetime (where C++ differs from Go): a parent holds its live cancellable
// children until they are cancelled, as Go's does, so a waiter on a child's
// done() is woken by the parent's cancellation even if nobody else holds the
// child. A child holds its ancestors. Nothing leaks when a cancel function is
// never called: the whole tree goes away with its last handle. Not calling
// cancel still keeps a child reachable from its parent (and, with a
// deadline, its timer armed) until the parent is cancelled or freed.
//
// Deadlines and timeouts need a running runtime (they arm a timer); an
// already-past deadline cancels at once without one.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "goro/chan.hpp"
#include "goro/select.hpp"
#include "goro/time.hpp"

namespace goro {

// A key for with_value/value. Keys compare by identity: every object is a
// distinct key, whatever T is. Make it a `static` or namespace-scope const.
template <class T>
class context_key {
 public:
  constexpr context_key() = default;
  context_key(const context_key&) = delete;
  context_key& operator=(const context_key&) = delete;
};

namespace detail {
struct ctx_node;
}

class context {
 public:
  context() = default;  // background()
  static context background() { return context(); }

  // Closed when the context is cancelled; nil for background().
  chan<void> done() const;
  // OK while live; then Cancelled or DeadlineExceeded, forever.
  absl::Status err() const;
  // The status given to a cancel_cause_func (Go's context.Cause), else err().
  absl::Status cause() const;
  std::optional<clock::time_point> deadline() const;

  // The value stored under `key` here or in the nearest ancestor; nullptr if
  // none. Lives as long as any context that holds it.
  template <class T>
  const T* value(const context_key<T>& key) const {
    return static_cast<const T*>(find_value(&key));
  }

 private:
  friend struct context_access;
  explicit context(std::shared_ptr<const detail::ctx_node> n) : n_(std::move(n)) {}
  const void* find_value(const void* key) const;

  std::shared_ptr<const detail::ctx_node> n_;
};

// Copyable and callable any number of times from anywhere.
using cancel_func = std::function<void()>;
// Cancels with `cause` (an OK status means plain cancellation): err() is
// Cancelled, cause() returns `cause`.
using cancel_cause_func = std::function<void(absl::Status cause)>;

std::pair<context, cancel_func> with_cancel(const context& parent);
std::pair<context, cancel_cause_func> with_cancel_cause(const context& parent);
std::pair<context, cancel_func> with_deadline(const context& parent, clock::time_point deadline);
std::pair<context, cancel_func> with_timeout(const context& parent, clock::duration timeout);

namespace detail {
// For tests: how many live cancellable children `ctx` has.
std::size_t context_children(const context& ctx);
context with_value_impl(const context& parent, const void* key, std::shared_ptr<const void> v);
}  // namespace detail

template <class T, class V>
context with_value(const context& parent, const context_key<T>& key, V&& v) {
  return detail::with_value_impl(parent, &key, std::make_shared<const T>(std::forward<V>(v)));
}

// Sleeps for `d` unless `ctx` ends first: OK, or ctx.err(). An already-ended
// context returns its error at once.
absl::Status sleep_for(const context& ctx, clock::duration d);
absl::Status sleep_until(const context& ctx, clock::time_point t);

// ---- context-aware channel operations (declared in chan.hpp) -------------
//
// A context that has already ended wins over a ready channel, so a loop that
// checks its context stops deterministically; otherwise the first of the
// operation and the context's end is taken.

namespace detail {

template <class T, class E>
absl::Status send_ctx(const chan<T>& c, const context& ctx, E v) {
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  chan<void> done = ctx.done();
  if (!done) {
    if constexpr (std::is_void_v<T>) {
      c.send();
    } else {
      c.send(std::move(v));
    }
    return absl::OkStatus();
  }
  std::size_t i = 0;
  if constexpr (std::is_void_v<T>) {
    i = goro::select(on_send(c), on_recv(done));
  } else {
    i = goro::select(on_send(c, std::move(v)), on_recv(done));
  }
  return i == 0 ? absl::OkStatus() : ctx.err();
}

template <class T>
ctx_recv_result<T> recv_ctx(const chan<T>& c, const context& ctx) {
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  chan<void> done = ctx.done();
  if (!done) return c.recv();
  if constexpr (std::is_void_v<T>) {
    bool got = false;
    std::size_t i = goro::select(on_recv(c, [&](bool ok) { got = ok; }), on_recv(done));
    if (i == 0) return got;
  } else {
    std::optional<T> got;
    std::size_t i =
        goro::select(on_recv(c, [&](std::optional<T> v) { got = std::move(v); }), on_recv(done));
    if (i == 0) return got;
  }
  return ctx.err();
}

}  // namespace detail
}  // namespace goro
