// goro/chan.hpp — Go's channels.
//
//   goro::chan<T>            a channel handle (nil when default-constructed)
//   goro::make_chan<T>(n)    make(chan T, n); n = 0 (default) is unbuffered
//   goro::chan<void>         chan struct{}: send() takes no value, recv() -> bool
//   goro::channel_closed     thrown on send to / close of a closed channel
//
// A chan<T> is a cheap, copyable, thread-safe handle with reference semantics
// (like Go's): copies refer to the same channel, `==` compares identity, and
// `explicit operator bool` is false for a nil channel. Every operation is a
// const member: it acts on the shared channel, not on the handle. The channel
// lives as long as any handle does; dropping the last handle right after
// close() is safe.
//
// Blocking: send blocks until a receiver takes the value (unbuffered) or
// there is buffer room; recv blocks until a value or close. A blocked fiber
// parks (its worker runs other fibers); a blocked plain OS thread blocks. Send
// and receive on a nil channel block forever.
//
// Close: receivers drain buffered values in FIFO order, then get
// std::nullopt (false for chan<void>) forever. close() wakes every blocked
// receiver, and every blocked sender wakes and throws goro::channel_closed.
// send on a closed channel, close of a closed or nil channel throw it too.
// Blocked receivers and senders are served in FIFO order.
//
// T may be move-only and need not be default-constructible. send(T v) takes
// its argument by value: pass an lvalue to copy, std::move to move.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "goro/detail/chan_base.hpp"

namespace goro {

namespace detail {

struct unit {};  // the element of chan<void>

template <class T>
struct elem_traits {
  static void construct(void* raw, void* src) { ::new (raw) T(std::move(*static_cast<T*>(src))); }
  static void destroy(void* obj) { static_cast<T*>(obj)->~T(); }
  static void deliver(void* dst, void* src) {
    static_cast<std::optional<T>*>(dst)->emplace(std::move(*static_cast<T*>(src)));
  }
  static constexpr elem_ops ops = {.construct = &construct,
                                   .destroy = &destroy,
                                   .deliver = &deliver,
                                   .size = sizeof(T),
                                   .align = alignof(T),
                                   .nothrow_move = std::is_nothrow_move_constructible_v<T>};
};

template <class T>
class chan_impl final : public chan_base {
  static constexpr std::size_t kAlign = alignof(T) > alignof(std::atomic<std::uint64_t>)
                                            ? alignof(T)
                                            : alignof(std::atomic<std::uint64_t>);
  // Storage this small lives inside the channel object: no second
  // allocation for unbuffered channels, done channels and timer channels.
  static constexpr std::size_t kInlineBytes = 64;

 public:
  explicit chan_impl(std::size_t cap)
      : chan_base(cap, &elem_traits<T>::ops, allocate(cap, inline_)) {
    init_storage();  // now that inline_ exists
  }
  ~chan_impl() {
    drain();
    unsigned char* b = buffer();
    if (b == inline_) return;
    if constexpr (kAlign > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      ::operator delete (b, std::align_val_t{kAlign});
    } else {
      ::operator delete(b);
    }
  }

 private:
  // One block: the slots (for the lock-free ring, cells of a sequence
  // number and a slot). Called before inline_ is "constructed", which is
  // fine for raw bytes: only its address is taken.
  static unsigned char* allocate(std::size_t cap, unsigned char* inline_buf) {
    const std::size_t bytes = storage_bytes(cap, &elem_traits<T>::ops);
    if (bytes <= kInlineBytes) return inline_buf;
    // The aligned operator new is much slower in glibc: only when needed.
    if constexpr (kAlign > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return static_cast<unsigned char*>(::operator new (bytes, std::align_val_t{kAlign}));
    } else {
      return static_cast<unsigned char*>(::operator new(bytes));
    }
  }

  alignas(kAlign) unsigned char inline_[kInlineBytes];
};

}  // namespace detail

template <class T>
class chan;

template <class T>
chan<T> make_chan(std::size_t capacity = 0);

class context;  // goro/context.hpp

namespace detail {
// What recv(ctx) returns: the value (nullopt: closed and drained; for
// chan<void>, false) or the context's error.
template <class T>
using ctx_recv_result =
    absl::StatusOr<std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>>;
// Defined in goro/context.hpp.
template <class T, class E>
absl::Status send_ctx(const chan<T>& c, const context& ctx, E v);
template <class T>
ctx_recv_result<T> recv_ctx(const chan<T>& c, const context& ctx);
}  // namespace detail

template <class T>
class chan {
  using elem = std::conditional_t<std::is_void_v<T>, detail::unit, T>;
  using impl = detail::chan_impl<elem>;

 public:
  using value_type = T;

  chan() = default;  // nil

  explicit operator bool() const { return impl_ != nullptr; }
  friend bool operator==(const chan& a, const chan& b) { return a.impl_ == b.impl_; }

  // Blocks until sent. Throws channel_closed if the channel is or becomes
  // closed. Blocks forever on a nil channel.
  void send(elem v) const requires(!std::is_void_v<T>) {
    if (!impl_) detail::block_forever("chan send (nil chan)");
    impl_->send(&v, true);
  }
  void send() const requires std::is_void_v<T> {
    elem v;
    if (!impl_) detail::block_forever("chan send (nil chan)");
    impl_->send(&v, true);
  }

  // Sends only if that needs no waiting. False if it would block (always, on
  // a nil channel); throws channel_closed on a closed channel.
  bool try_send(elem v) const requires(!std::is_void_v<T>) {
    return impl_ && impl_->send(&v, false);
  }
  bool try_send() const requires std::is_void_v<T> {
    elem v;
    return impl_ && impl_->send(&v, false);
  }

  // Blocks until a value arrives (returned) or the channel is closed and
  // drained (std::nullopt; `false` for chan<void>). Blocks forever on nil.
  auto recv() const {
    std::optional<elem> v;
    if (!impl_) detail::block_forever("chan receive (nil chan)");
    impl_->recv(&v, true);
    if constexpr (std::is_void_v<T>) {
      return v.has_value();
    } else {
      return v;
    }
  }

  // Context-aware forms (include goro/context.hpp): send returns OK once sent
  // or the context's error if it ended first (then nothing was sent); still
  // throws channel_closed like send. recv returns what recv() would, or the
  // context's error. On a nil channel they wait for the context only.
  template <std::same_as<context> Ctx>
  absl::Status send(const Ctx& ctx, elem v) const requires(!std::is_void_v<T>) {
    return detail::send_ctx(*this, ctx, std::move(v));
  }
  template <std::same_as<context> Ctx>
  absl::Status send(const Ctx& ctx) const requires std::is_void_v<T> {
    return detail::send_ctx(*this, ctx, elem{});
  }
  template <std::same_as<context> Ctx>
  detail::ctx_recv_result<T> recv(const Ctx& ctx) const {
    return detail::recv_ctx(*this, ctx);
  }

  // Closes the channel. Throws channel_closed if it is nil or already closed.
  void close() const {
    if (!impl_) throw channel_closed("goro: close of nil channel");
    impl_->close();
  }

  // len(c) and cap(c); 0 for a nil channel.
  std::size_t size() const { return impl_ ? impl_->size() : 0; }
  std::size_t capacity() const { return impl_ ? impl_->capacity() : 0; }

  // for (auto& v : c) — receives until the channel is closed and drained.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = elem;
    using difference_type = std::ptrdiff_t;
    using pointer = elem*;
    using reference = elem&;
    iterator() = default;
    explicit iterator(const chan* c) : c_(c) { ++*this; }
    elem& operator*() { return *v_; }
    iterator& operator++() {
      v_.reset();
      c_->impl_->recv(&v_, true);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.v_; }

   private:
    const chan* c_ = nullptr;
    std::optional<elem> v_;
  };
  iterator begin() const {
    if (!impl_) detail::block_forever("chan range (nil chan)");
    return iterator(this);
  }
  std::default_sentinel_t end() const { return {}; }

  // Internal: the type-erased channel (for select).
  detail::chan_base* base() const { return impl_.get(); }

 private:
  template <class U>
  friend chan<U> make_chan(std::size_t);
  explicit chan(std::shared_ptr<impl> p) : impl_(std::move(p)) {}

  std::shared_ptr<impl> impl_;
};

template <class T>
chan<T> make_chan(std::size_t capacity) {
  using elem = std::conditional_t<std::is_void_v<T>, detail::unit, T>;
  return chan<T>(std::make_shared<detail::chan_impl<elem>>(capacity));
}

}  // namespace goro
