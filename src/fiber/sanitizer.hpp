// src/fiber/sanitizer.hpp — telling ASan and TSan about stack switches.
//
// Without these hooks both sanitizers lose track when the stack pointer jumps
// to another stack: ASan reports false stack-buffer-overflows / use-after-
// return, TSan attributes accesses to the wrong thread and misses
// happens-before edges. Protocol (one switch from context A to context B):
//
//   A: asan_start_switch(&A.fake_stack, B.stack_lo, B.stack_size)
//      (pass nullptr instead of &A.fake_stack when A is finishing for good)
//   A: tsan_switch_to(B.tsan_fiber)
//   A: jump_fcontext(B)
//   B: asan_finish_switch(B.fake_stack)   — first thing after the jump returns
//
// Every function is a no-op in a build without the matching sanitizer.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define GORO_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define GORO_TSAN 1
#include <sanitizer/tsan_interface.h>
#endif

namespace goro::detail::san {

inline void asan_start_switch(void** fake_stack_save, const void* bottom, std::size_t size) {
#ifdef GORO_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

inline void asan_finish_switch(void* fake_stack_save) {
#ifdef GORO_ASAN
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(fake_stack_save, &old_bottom, &old_size);
#else
  (void)fake_stack_save;
#endif
}

// Marks [lo, lo + size) addressable. A recycled stack still carries the
// poison of the dead fiber's frames (it never returned through them): clear
// it before a new fiber runs there, and before the memory is unmapped (the
// shadow outlives the mapping).
inline void asan_unpoison(const void* lo, std::size_t size) {
#ifdef GORO_ASAN
  __asan_unpoison_memory_region(lo, size);
#else
  (void)lo, (void)size;
#endif
}

// Memory the leak checker should scan for pointers, as it scans the heap
// (mappings of ours that hold the only pointers to heap objects).
inline void lsan_add_root(const void* p, std::size_t size) {
#ifdef GORO_ASAN
  __lsan_register_root_region(p, size);
#else
  (void)p, (void)size;
#endif
}

inline void lsan_remove_root(const void* p, std::size_t size) {
#ifdef GORO_ASAN
  __lsan_unregister_root_region(p, size);
#else
  (void)p, (void)size;
#endif
}

inline void* tsan_current() {
#ifdef GORO_TSAN
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}

inline void* tsan_create() {
#ifdef GORO_TSAN
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}

inline void tsan_destroy(void* f) {
#ifdef GORO_TSAN
  if (f != nullptr) __tsan_destroy_fiber(f);
#else
  (void)f;
#endif
}

inline void tsan_switch_to(void* f) {
#ifdef GORO_TSAN
  __tsan_switch_to_fiber(f, 0);
#else
  (void)f;
#endif
}

}  // namespace goro::detail::san
