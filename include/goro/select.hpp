// goro/select.hpp — Go's select statement.
//
//   std::size_t i = goro::select(
//       goro::on_recv(in, [](std::optional<int> v) { /* nullopt: in is closed */ }),
//       goro::on_send(out, 42, [] { /* sent */ }),
//       goro::on_recv(ctx_done, [] { /* ready */ }),
//       goro::on_default([] { /* nothing was ready */ }));
//
//   goro::on_recv(c [, handler])       handler(): or handler(std::optional<T>)
//                                      (handler(bool) for chan<void>)
//   goro::on_send(c, v [, handler])    handler(); for chan<void>: on_send(c [, handler])
//   goro::on_default([handler])        at most one
//   goro::select(cases...)             returns the index of the case that ran
//   goro::select(range)                over a runtime-sized range of goro::select_case
//
// Semantics (Go's):
//   * A case made from a channel variable (an lvalue) refers to that
//     variable, which must outlive the select (it does in
//     `select(on_recv(c), ...)`); its channel is read when the select starts,
//     as Go evaluates the channel expressions on entering a select. This
//     spares two reference-count RMWs per case per select. A case made from
//     a temporary (`on_recv(ctx.done())`) holds its own handle, and so does
//     every select_case. The value to send is always the case's own copy.
//     Reassigning a channel variable inside a handler affects later selects
//     only.
//   * Exactly one case commits. When several are ready, one is chosen
//     uniformly at random. Cases on nil channels are never chosen.
//   * With no ready case, on_default runs if present; otherwise the caller
//     blocks (a fiber parks, a plain OS thread blocks) until a case can
//     commit. With only nil cases and no default, or no cases at all, it
//     blocks forever.
//   * The chosen case's handler runs after the operation, outside any lock.
//   * The same channel may appear in several cases; a select never pairs
//     with itself (its send cannot meet its own receive).
//   * on_send to a closed channel throws goro::channel_closed when chosen; a
//     receive from a closed channel is ready and yields std::nullopt/false.
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "goro/chan.hpp"

namespace goro {

namespace detail {

template <class T>
using elem_t = std::conditional_t<std::is_void_v<T>, unit, T>;

struct no_handler {};

// A case's channel: a handle of its own (H = chan<T>) or a borrowed one.
template <class T>
struct borrowed_chan {
  const chan<T>* p;
  chan_base* base() const { return p->base(); }
};
template <class T>
chan<T> own_handle(const chan<T>& c) {
  return c;
}
template <class T>
chan<T> own_handle(const borrowed_chan<T>& c) {
  return *c.p;
}

template <class T, class F, class H = chan<T>>
struct recv_case {
  H c;
  F f;
  std::optional<elem_t<T>> v;

  void prepare(select_op& op, bool& /*is_default*/) {
    op.c = c.base();
    op.is_send = false;
    op.elem = &v;
    op.ok = false;
  }
  void fire(const select_op& op) {
    if constexpr (std::is_same_v<F, no_handler>) {
      (void)op;
    } else if constexpr (std::is_void_v<T>) {
      if constexpr (std::is_invocable_v<F&, bool>) {
        f(op.ok);
      } else {
        static_assert(std::is_invocable_v<F&>, "goro::on_recv handler must take bool or nothing");
        f();
      }
    } else {
      if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
        f(std::move(v));
      } else {
        static_assert(std::is_invocable_v<F&>,
                      "goro::on_recv handler must take std::optional<T> or nothing");
        f();
      }
    }
  }
};

template <class T, class F, class H = chan<T>>
struct send_case {
  H c;
  elem_t<T> v;
  F f;

  void prepare(select_op& op, bool& /*is_default*/) {
    op.c = c.base();
    op.is_send = true;
    op.elem = &v;
    op.ok = false;
  }
  void fire(const select_op& /*op*/) {
    if constexpr (!std::is_same_v<F, no_handler>) {
      static_assert(std::is_invocable_v<F&>, "goro::on_send handler takes no arguments");
      f();
    }
  }
};

template <class F>
struct default_case {
  F f;
  void prepare(select_op& op, bool& is_default) {
    op.c = nullptr;
    op.is_send = false;
    op.elem = nullptr;
    op.ok = false;
    is_default = true;
  }
  void fire(const select_op& /*op*/) {
    if constexpr (!std::is_same_v<F, no_handler>) f();
  }
};

template <class C>
struct is_case : std::false_type {};
template <class T, class F, class H>
struct is_case<recv_case<T, F, H>> : std::true_type {};
template <class T, class F, class H>
struct is_case<send_case<T, F, H>> : std::true_type {};
template <class F>
struct is_case<default_case<F>> : std::true_type {};
template <class C>
inline constexpr bool is_case_v = is_case<std::remove_cvref_t<C>>::value;

template <class C>
inline constexpr bool is_default_v = false;
template <class F>
inline constexpr bool is_default_v<default_case<F>> = true;

// The same case holding its own channel handle (for select_case).
template <class C>
C owning_case(C c) {
  return c;
}
template <class T, class F, class H>
auto owning_case(recv_case<T, F, H> c) {
  return recv_case<T, F>{own_handle(c.c), std::move(c.f), std::move(c.v)};
}
template <class T, class F, class H>
auto owning_case(send_case<T, F, H> c) {
  return send_case<T, F>{own_handle(c.c), std::move(c.v), std::move(c.f)};
}

}  // namespace detail

// From a channel variable: the case borrows it. From a temporary: the case
// holds the handle (see "Semantics" above).
template <class T>
auto on_recv(const chan<T>& c) {
  return detail::recv_case<T, detail::no_handler, detail::borrowed_chan<T>>{{&c}, {}, std::nullopt};
}
template <class T>
auto on_recv(chan<T>&& c) {
  return detail::recv_case<T, detail::no_handler>{std::move(c), {}, std::nullopt};
}
template <class T, class F>
auto on_recv(const chan<T>& c, F handler) {
  return detail::recv_case<T, F, detail::borrowed_chan<T>>{{&c}, std::move(handler), std::nullopt};
}
template <class T, class F>
auto on_recv(chan<T>&& c, F handler) {
  return detail::recv_case<T, F>{std::move(c), std::move(handler), std::nullopt};
}

template <class T>
requires(!std::is_void_v<T>) auto on_send(const chan<T>& c, T v) {
  return detail::send_case<T, detail::no_handler, detail::borrowed_chan<T>>{{&c}, std::move(v), {}};
}
template <class T>
requires(!std::is_void_v<T>) auto on_send(chan<T>&& c, T v) {
  return detail::send_case<T, detail::no_handler>{std::move(c), std::move(v), {}};
}
template <class T, class F>
requires(!std::is_void_v<T>) auto on_send(const chan<T>& c, T v, F handler) {
  return detail::send_case<T, F, detail::borrowed_chan<T>>{{&c}, std::move(v), std::move(handler)};
}
template <class T, class F>
requires(!std::is_void_v<T>) auto on_send(chan<T>&& c, T v, F handler) {
  return detail::send_case<T, F>{std::move(c), std::move(v), std::move(handler)};
}
inline auto on_send(const chan<void>& c) {
  return detail::send_case<void, detail::no_handler, detail::borrowed_chan<void>>{{&c}, {}, {}};
}
inline auto on_send(chan<void>&& c) {
  return detail::send_case<void, detail::no_handler>{std::move(c), {}, {}};
}
template <class F>
auto on_send(const chan<void>& c, F handler) {
  return detail::send_case<void, F, detail::borrowed_chan<void>>{{&c}, {}, std::move(handler)};
}
template <class F>
auto on_send(chan<void>&& c, F handler) {
  return detail::send_case<void, F>{std::move(c), {}, std::move(handler)};
}

inline auto on_default() { return detail::default_case<detail::no_handler>{}; }
template <class F>
auto on_default(F handler) {
  return detail::default_case<F>{std::move(handler)};
}

// select over a fixed set of cases. Returns the index of the case that ran.
template <class... Cases>
requires(detail::is_case_v<Cases>&&...) std::size_t select(Cases&&... cases) {
  static_assert((0 + ... + (detail::is_default_v<std::remove_cvref_t<Cases>> ? 1 : 0)) <= 1,
                "goro::select: at most one on_default");
  constexpr std::size_t n = sizeof...(Cases);
  detail::select_op ops[n + 1];  // +1: a select with no cases is valid
  bool has_default = false;
  std::size_t default_index = n;
  std::size_t k = 0;
  (
      [&](auto& c) {
        bool is_default = false;
        c.prepare(ops[k], is_default);
        if (is_default) {
          has_default = true;
          default_index = k;
        }
        ++k;
      }(cases),
      ...);
  (void)k;  // unused when there are no cases
  std::size_t i = n;
  if constexpr (n == 2) {
    // One case and a default (Go compiles it to selectnbrecv/selectnbsend):
    // when the channel's lock-free check says it would block, take the
    // default without calling into the runtime.
    if (has_default) {
      const detail::select_op& op = ops[default_index == 0 ? 1 : 0];
      if (op.c == nullptr || (op.is_send ? op.c->send_would_block() : op.c->recv_would_block())) {
        i = default_index;
      }
    }
  }
  if (i == n) i = detail::select_impl(ops, n, has_default);
  if (i == n) i = default_index;
  k = 0;
  (
      [&](auto& c) {
        if (k++ == i) c.fire(ops[i]);
      }(cases),
      ...);
  return i;
}

// A select case of any kind, for selects over a runtime-sized set of cases
// (Go's reflect.Select). Built implicitly from on_recv/on_send/on_default.
class select_case {
 public:
  template <class C>
  requires detail::is_case_v<C> select_case(C c)  // NOLINT(google-explicit-constructor)
      : impl_(make_model(detail::owning_case(std::move(c)))) {}

  // Internal, used by select(range).
  void prepare(detail::select_op& op, bool& is_default) { impl_->prepare(op, is_default); }
  void fire(const detail::select_op& op) { impl_->fire(op); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void prepare(detail::select_op& op, bool& is_default) = 0;
    virtual void fire(const detail::select_op& op) = 0;
  };
  template <class C>
  struct model final : concept_t {
    explicit model(C c) : c(std::move(c)) {}
    void prepare(detail::select_op& op, bool& is_default) override { c.prepare(op, is_default); }
    void fire(const detail::select_op& op) override { c.fire(op); }
    C c;
  };
  template <class C>
  static std::unique_ptr<concept_t> make_model(C c) {
    return std::make_unique<model<C>>(std::move(c));
  }
  std::unique_ptr<concept_t> impl_;
};

// select over a contiguous range of select_case (e.g. std::vector). Returns
// the index of the case that ran. Throws std::invalid_argument on more than
// one on_default.
template <class Range>
requires std::is_same_v<std::remove_cvref_t<decltype(*std::begin(std::declval<Range&>()))>,
                        select_case>
    std::size_t select(Range&& cases) {
  const std::size_t n = static_cast<std::size_t>(std::size(cases));
  std::unique_ptr<detail::select_op[]> ops(new detail::select_op[n + 1]);
  bool has_default = false;
  std::size_t default_index = n;
  std::size_t k = 0;
  for (select_case& c : cases) {
    bool is_default = false;
    c.prepare(ops[k], is_default);
    if (is_default) {
      if (has_default) throw std::invalid_argument("goro::select: more than one on_default");
      has_default = true;
      default_index = k;
    }
    ++k;
  }
  std::size_t i = detail::select_impl(ops.get(), n, has_default);
  if (i == n) i = default_index;
  std::begin(cases)[static_cast<std::ptrdiff_t>(i)].fire(ops[i]);
  return i;
}

}  // namespace goro
