// goro/goro.hpp — the umbrella header: Go's concurrency model for C++20.
//
//   goro/runtime.hpp      run, go, yield, maxprocs, num_fibers, options
//   goro/chan.hpp         chan<T>, make_chan<T>(n), channel_closed
//   goro/select.hpp       select(on_recv, on_send, on_default), select_case
//   goro/fiber_local.hpp  fiber_local<T>: per-fiber variables
//   goro/blocking.hpp     blocking(f): run a thread-blocking call off the workers
//   goro/sync.hpp         mutex, shared_mutex, condition_variable, wait_group,
//                         once, semaphore, group
//   goro/dump.hpp         dump(): every fiber and what it waits on
#pragma once

#include "goro/blocking.hpp"
#include "goro/chan.hpp"
#include "goro/context.hpp"
#include "goro/dump.hpp"
#include "goro/fiber_local.hpp"
#include "goro/runtime.hpp"
#include "goro/select.hpp"
#include "goro/sync.hpp"
#include "goro/time.hpp"
