// goro/fiber_local.hpp — per-fiber variables (what thread_local is to threads).
//
//   static goro::fiber_local<std::string> request_id;
//   *request_id = "abc";         // this fiber's copy
//
// Each fiber sees its own T, default-constructed on first access and
// destroyed when the fiber's function returns (or, for a plain OS thread,
// when the thread exits). Unlike a thread_local, the value follows the fiber
// across worker threads. Access is a hash lookup: cache a `T&` in a local
// variable in hot loops (the reference stays valid for the fiber's life).
// A fiber_local object must outlive every fiber that used it.
#pragma once

#include <new>

namespace goro {

namespace detail {
// The calling fiber's (or thread's) slot for `key`, created by `make` on
// first use; `destroy` frees it at fiber exit.
void* fiber_local_get(const void* key, void* (*make)(), void (*destroy)(void*));
}  // namespace detail

template <class T>
class fiber_local {
 public:
  fiber_local() = default;
  fiber_local(const fiber_local&) = delete;
  fiber_local& operator=(const fiber_local&) = delete;

  T& get() const {
    return *static_cast<T*>(detail::fiber_local_get(
        this, [] { return static_cast<void*>(new T()); },
        [](void* p) { delete static_cast<T*>(p); }));
  }
  T& operator*() const { return get(); }
  T* operator->() const { return &get(); }
};

}  // namespace goro
