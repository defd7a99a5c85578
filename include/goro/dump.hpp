// goro/dump.hpp — what every fiber is doing, and leak checks.
//
//   goro::dump(std::cerr);
//   BOOST_TEST(goro::check_no_leaks().ok());   // goleak.VerifyNone(t)
//
// dump() prints every started fiber: its id, its state (running, runnable,
// or what it is parked on: "chan receive", "mutex", "sleep", "io read"...
// with the object's address and for how long), whether it is the main
// fiber, and where it was spawned (the file, line and function of the
// goro::go call); then how many fibers are spawned but not started yet.
// Callable from any fiber or OS thread; with no runtime running it says so.
// The runtime prints the same dump on a fiber panic, on a deadlock, for
// options::report_leaks and, with options::dump_on_sigquit, on SIGQUIT.
// The deadlock report (when it aborts) adds each parked fiber's backtrace,
// symbolized; elsewhere fibers may be running, so dump() cannot walk their
// stacks: tools/goro-gdb.py shows them in gdb (`goro bt ID`).
#pragma once

#include <chrono>
#include <iosfwd>

#include "absl/status/status.h"

namespace goro {

void dump(std::ostream& os);

// For tests, like uber-go/goleak: waits up to `grace` for every fiber other
// than the caller and the main fiber to finish. OK if they did; otherwise
// FailedPrecondition whose message is the count and a dump. Call it from a
// fiber (runtime_error otherwise).
absl::Status check_no_leaks(std::chrono::milliseconds grace = std::chrono::milliseconds(1000));

}  // namespace goro
