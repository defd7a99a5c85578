// src/wait/wait_table_impl.hpp — template part of wait_table.hpp.
#pragma once

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "wait/parker.hpp"

namespace goro::detail {

struct table_waiter {
  const void* key = nullptr;
  parker pk;
  table_waiter* prev = nullptr;
  table_waiter* next = nullptr;
  bool linked = false;  // guarded by the bucket lock
};

// Non-template core: links `w` if should_wait() holds (under the bucket lock)
// and parks; unlinks it again if the park is unwound at shutdown.
void wait_on_impl(const void* key, absl::FunctionRef<bool()> should_wait, const char* reason);

template <class F>
void wait_on(const void* key, F&& should_wait, const char* reason) {
  wait_on_impl(key, absl::FunctionRef<bool()>(should_wait), reason);
}

}  // namespace goro::detail
