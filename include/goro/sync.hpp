// goro/sync.hpp — fiber-aware synchronization (Go's sync and x/sync).
//
//   goro::mutex, goro::shared_mutex   sync.Mutex, sync.RWMutex   (goro/mutex.hpp)
//   goro::condition_variable          sync.Cond                  (goro/condition_variable.hpp)
//   goro::wait_group                  sync.WaitGroup             (goro/wait_group.hpp)
//   goro::once                        sync.Once                  (goro/once.hpp)
//   goro::semaphore                   x/sync/semaphore.Weighted  (goro/semaphore.hpp)
//   goro::group                       x/sync/errgroup.Group      (goro/group.hpp)
//
// Each parks a waiting fiber (its worker runs other fibers) and blocks a
// waiting plain OS thread; all work between OS threads with no runtime
// running, except that timed waits on a fiber use the runtime's timers and
// a group starts fibers (it needs a runtime).
#pragma once

#include "goro/condition_variable.hpp"
#include "goro/group.hpp"
#include "goro/mutex.hpp"
#include "goro/once.hpp"
#include "goro/semaphore.hpp"
#include "goro/wait_group.hpp"
