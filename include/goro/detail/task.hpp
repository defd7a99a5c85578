// goro/detail/task.hpp — the type-erased, move-only `void()` callable that a
// fiber runs.
//
// Why not std::function or absl::AnyInvocable: a fiber's function is stored
// inside the fiber record, and most closures passed to goro::go capture a few
// handles. A 48-byte inline buffer keeps those closures out of the heap (one
// allocation per spawn saved), which spawn-heavy code (1M fibers) feels.
// Larger or throwing-move closures are heap-allocated.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace goro::detail {

class task {
 public:
  static constexpr std::size_t inline_size = 48;

  task() noexcept = default;

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, task> && std::is_invocable_v<D&>>>
  task(F&& f) {  // NOLINT(google-explicit-constructor): lambdas convert implicitly
    if constexpr (sizeof(D) <= inline_size && alignof(D) <= alignof(std::max_align_t) &&
                  std::is_nothrow_move_constructible_v<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      ops_ = &inline_ops<D>;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      ops_ = &heap_ops<D>;
    }
  }

  task(task&& o) noexcept : ops_(o.ops_) {
    if (ops_ != nullptr) {
      ops_->move(buf_, o.buf_);
      o.ops_ = nullptr;
    }
  }
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = o.ops_;
      if (ops_ != nullptr) {
        ops_->move(buf_, o.buf_);
        o.ops_ = nullptr;
      }
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  void operator()() { ops_->call(buf_); }

  // Destroys the stored callable (and what it captured); leaves *this empty.
  void reset() noexcept {
    if (ops_ != nullptr) {
      const ops* o = ops_;
      ops_ = nullptr;
      o->destroy(buf_);
    }
  }

 private:
  struct ops {
    void (*call)(void*);
    void (*move)(void* dst, void* src) noexcept;  // move-constructs, destroys src
    void (*destroy)(void*) noexcept;
  };

  template <class D>
  static constexpr ops inline_ops = {
      [](void* p) { (*static_cast<D*>(p))(); },
      [](void* dst, void* src) noexcept {
        ::new (dst) D(std::move(*static_cast<D*>(src)));
        static_cast<D*>(src)->~D();
      },
      [](void* p) noexcept { static_cast<D*>(p)->~D(); },
  };
  template <class D>
  static constexpr ops heap_ops = {
      [](void* p) { (**static_cast<D**>(p))(); },
      [](void* dst, void* src) noexcept { *static_cast<D**>(dst) = *static_cast<D**>(src); },
      [](void* p) noexcept { delete *static_cast<D**>(p); },
  };

  alignas(std::max_align_t) unsigned char buf_[inline_size];
  const ops* ops_ = nullptr;
};

}  // namespace goro::detail
