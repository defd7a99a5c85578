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
  bool ticket = false;  // sema: the releaser took the token for us (handoff)
};

// Non-template core: links a waiter if should_wait() holds (under the bucket
// lock) and parks; unlinks it again if the park is unwound at shutdown.
bool wait_on_impl(const void* key, absl::FunctionRef<bool()> should_wait, const char* reason,
                  const context* ctx, absl::FunctionRef<void()> on_leave);

template <class F>
bool wait_on(const void* key, F&& should_wait, const char* reason, const context* ctx,
             absl::FunctionRef<void()> on_leave) {
  return wait_on_impl(key, absl::FunctionRef<bool()>(should_wait), reason, ctx, on_leave);
}

}  // namespace goro::detail
