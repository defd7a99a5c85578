// src/sync/mutex_internal.hpp — goro::mutex internals that tests reach.
#pragma once

#include <atomic>

namespace goro::detail {

// Called, if set, by a slow-path mutex::unlock() on the unlocking thread
// between its release of the lock and its last access to the mutex: tests
// stall an unlocker there to check that ~mutex waits for it. Null otherwise.
extern std::atomic<void (*)()> g_unlock_window_hook;

}  // namespace goro::detail
