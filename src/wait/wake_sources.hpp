// src/wait/wake_sources.hpp — a wait that a deadline or a context can end.
//
// The primitives (condition variable, semaphore, wait group) queue waiters
// under their own lock and wake them by unparking. A timed or cancellable
// wait adds two more wakers: a runtime timer (for a fiber; an OS thread uses
// a timed futex sleep) and a context hook (context/hook.hpp). Either one
// calls the primitive's `remove` — take your lock, unlink the record if it is
// still linked, say whether you did — and wakes the waiter only if it did, so
// exactly one party wakes it and the primitive's queue never holds a record
// that has left. After waking, the waiter disarms both, waiting out a
// callback already under way, and may then free its record.
#pragma once

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "time/timer.hpp"
#include "wait/parker.hpp"

namespace goro {
class context;
}

namespace goro::detail {

enum class woke_by : std::uint8_t { signal, deadline, context };

// Call with the waiter's record linked and the primitive's lock held;
// `unlock` releases that lock (once). Parks until a waker unparks `pk`,
// `deadline` passes (kNoTimer: never) or `ctx` ends (null: no context), and
// says which. On a fiber unwound at exit it disarms and rethrows; the caller
// then unlinks its record.
woke_by park_until(parker& pk, absl::FunctionRef<void()> unlock, const char* reason, nanos deadline,
                   const context* ctx, absl::FunctionRef<bool()> remove, const void* obj = nullptr);

}  // namespace goro::detail
