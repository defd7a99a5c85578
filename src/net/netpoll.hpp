// src/net/netpoll.hpp — the netpoller: fibers wait for socket readiness
// while their worker runs other fibers (Go's runtime/netpoll_epoll.go).
//
// One process-wide epoll instance, created at the first registration. Every
// socket is registered once, edge-triggered, for both directions, with a
// poll_desc as its data. A fiber whose non-blocking syscall says EAGAIN
// waits on the descriptor's read or write queue (wait()); an event wakes
// every waiter of that direction, or, when nobody waits, leaves a token that
// the next wait() consumes, so an edge that arrives between the EAGAIN and
// the wait is not lost. Waiters retry their syscall after every wake-up;
// spurious wake-ups are harmless by design.
//
// Who polls (sched.cpp): a worker that finds no local work polls without
// blocking before it steals; the idle worker that holds the timed-sleeper
// role blocks in epoll_wait until the next timer instead of on its futex,
// and wake_worker() interrupts it through an eventfd; busy workers poll at
// most every kBusyPollInterval at their switches, so events are not
// starved by fibers that keep their Ps busy.
//
// Descriptors are pooled and never freed: an event already taken from the
// kernel for a descriptor that was closed and reused meanwhile only leaves a
// spurious token. Each descriptor also counts the operations in flight on
// its fd (Go's fdMutex, reduced to a reference count and a closed bit): the
// fd itself is closed by whoever drops the last reference after close(), so
// a concurrent read never sees its fd number reused under it.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/wait_list.hpp"
#include "time/timer.hpp"
#include "wait/parker.hpp"

namespace goro {
class context;
}

namespace goro::detail {

struct sched;

enum poll_mode : int { poll_read = 0, poll_write = 1 };

struct poll_waiter {
  parker pk;
  poll_waiter* prev = nullptr;
  poll_waiter* next = nullptr;
  bool linked = false;
};

struct poll_desc {
  spinlock mu;
  int fd = -1;
  int family = 0;  // the socket's address family (AF_UNSPEC if not known)
  std::atomic<bool> closing{false};
  // A TCP read left the receive queue empty (TCP_INQ said so, see tcp_inq),
  // so any later data raises a new edge. The next read waits for readiness
  // before trying recv (saving the syscall that would say EAGAIN in a
  // request/response loop). A hint only: a reader may clear it. (A short
  // read is no proof: it also stops at an urgent mark with data behind.)
  std::atomic<bool> rd_drained{false};
  // The stream has seen its end or an error (EPOLLRDHUP/HUP/ERR): that is a
  // state, not data, so it raises no further edge; a short read then says
  // nothing about what the next recv returns, and rd_drained is ignored.
  std::atomic<bool> rd_final{false};
  // A TCP socket with TCP_INQ on: each read also says how many bytes it left
  // in the receive queue, so a read that fills the buffer exactly (a
  // read_full) also knows whether the queue is empty now, and a short read
  // that stopped at an urgent mark is not taken for an empty queue. Set
  // once when the connection is made, before any read.
  bool tcp_inq = false;
  bool token[2] = {false, false};  // guarded by mu
  wait_list<poll_waiter> q[2];     // guarded by mu
  // kClosed (close_desc ran) | kFdClosed (the fd is gone) | operations in
  // flight on the fd.
  std::atomic<std::uint64_t> refs{0};
  poll_desc* next_free = nullptr;  // pool link (pool lock)

  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kFdClosed = std::uint64_t{1} << 62;
};

// Registers a non-blocking fd; the descriptor owns it from now on. Error: the
// fd is closed. Lifetime: open_desc .. close_desc (any number of times; the
// first one counts) .. destroy_desc (once, by the owner, when no operation
// is in progress any more; it closes first if nobody did).
absl::StatusOr<poll_desc*> open_desc(int fd);

// Operations on the fd hold a reference: acquire_ref fails once close_desc
// has run (the caller reports "use of closed connection").
bool acquire_ref(poll_desc* pd);
void release_ref(poll_desc* pd);
// Marks it closed, wakes every waiter (they see closing), and closes the fd
// when the last reference goes. False if it was already closed.
bool close_desc(poll_desc* pd);
void destroy_desc(poll_desc* pd);

// Waits until the fd may be ready in `mode` (then retry the syscall), the
// deadline passes (DeadlineExceeded), ctx ends (its err()), or the
// descriptor is closed (FailedPrecondition). ctx may be null; deadline may
// be kNoTimer. A plain OS thread (or a fiber with no netpoller running)
// waits in poll(2).
absl::Status wait_ready(poll_desc* pd, poll_mode mode, const context* ctx, nanos deadline);

// ---- the scheduler's side ---------------------------------------------------

// True once the first descriptor was registered (the epoll fd exists).
bool netpoll_inited() noexcept;
// Fibers parked in wait_ready right now (a hint for whether to poll).
extern std::atomic<std::int64_t> g_netpoll_waiters;
// When a poll last ran (steady nanoseconds), to pace the busy workers' polls.
extern std::atomic<nanos> g_netpoll_last;
inline constexpr nanos kBusyPollInterval = 200'000;  // 200 us

// Polls and wakes the waiters of ready descriptors (ready() onto the calling
// worker's P). timeout_ns: 0 = don't block, < 0 = until an event or a break.
// Returns the number of fibers woken. `polling`, if given, is cleared as soon
// as epoll_wait returns (before the waiters are readied).
int netpoll(nanos timeout_ns, std::atomic<bool>* polling = nullptr);
// Interrupts a netpoll() blocked in epoll_wait (coalesced).
void netpoll_break();

}  // namespace goro::detail
