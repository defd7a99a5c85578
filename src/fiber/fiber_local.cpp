// src/fiber/fiber_local.cpp — storage behind goro::fiber_local<T>.
//
// Each fiber owns a lazily created map key -> (value, destroy). Only the fiber
// itself touches it (no lock); destroy_locals() runs on the fiber, at the end
// of its function, so values may use goro calls in their destructors. Plain OS
// threads get a thread_local map of the same shape.
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "goro/fiber_local.hpp"
#include "sched/sched.hpp"

namespace goro::detail {

struct local_storage {
  struct value {
    void* ptr;
    void (*destroy)(void*);
  };
  absl::flat_hash_map<const void*, value> values;

  ~local_storage() {
    // A destructor may itself use a fiber_local: take the map first.
    auto vals = std::move(values);
    for (auto& [key, v] : vals) v.destroy(v.ptr);
  }
};

namespace {
thread_local local_storage t_thread_locals;
}

void destroy_locals(fiber* f) {
  delete f->locals;
  f->locals = nullptr;
}

void* fiber_local_get(const void* key, void* (*make)(), void (*destroy)(void*)) {
  fiber* f = current_fiber();
  local_storage* ls = nullptr;
  if (f != nullptr) {
    if (f->locals == nullptr) f->locals = new local_storage;
    ls = f->locals;
  } else {
    ls = &t_thread_locals;
  }
  auto it = ls->values.find(key);
  if (it != ls->values.end()) return it->second.ptr;
  void* p = make();
  ls->values.emplace(key, local_storage::value{p, destroy});
  return p;
}

}  // namespace goro::detail
