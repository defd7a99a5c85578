// goro/sync.hpp — fiber-aware synchronization primitives (Go's sync package).
//
//   goro::wait_group   sync.WaitGroup         (goro/wait_group.hpp)
#pragma once

#include "goro/wait_group.hpp"
