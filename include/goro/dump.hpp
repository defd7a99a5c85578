// goro/dump.hpp — a snapshot of every fiber, for debugging.
//
//   goro::dump(std::cerr);
//
// Prints one line per started fiber: its id, whether it is the main fiber,
// its state (runnable, running, parked) and, for a parked fiber, what it is
// blocked on; then how many fibers are spawned but not started yet. Callable from any fiber or OS
// thread; with no runtime running it says so. The runtime prints the same dump on a fiber panic.
#pragma once

#include <iosfwd>

namespace goro {

void dump(std::ostream& os);

}  // namespace goro
