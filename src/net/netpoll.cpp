// src/net/netpoll.cpp — see netpoll.hpp.
#include "net/netpoll.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "goro/context.hpp"
#include "sched/sched.hpp"
#include "wait/wake_sources.hpp"

namespace goro::detail {

std::atomic<std::int64_t> g_netpoll_waiters{0};
std::atomic<nanos> g_netpoll_last{0};

namespace {

// How long an OS thread sleeps in poll(2) between looks at its context and
// at close(): cancellation of a thread's socket wait is seen within this.
constexpr int kThreadPollSliceMs = 20;
constexpr std::size_t kPoolChunk = 64;
constexpr int kMaxEvents = 128;

std::once_flag g_init_once;
std::atomic<bool> g_inited{false};
int g_epfd = -1;
int g_evfd = -1;
std::atomic<bool> g_break_pending{false};
// The eventfd's slot in epoll data: no descriptor has this address.
char g_break_tag;

std::mutex g_pool_mu;
poll_desc* g_free = nullptr;  // guarded by g_pool_mu

absl::Status errno_status(const char* what, int err) {
  return absl::InternalError(absl::StrFormat("goro: netpoll: %s: %s", what, std::strerror(err)));
}

absl::Status init() {
  static absl::Status st;
  std::call_once(g_init_once, [] {
    g_epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (g_epfd < 0) {
      st = errno_status("epoll_create1", errno);
      return;
    }
    g_evfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_evfd < 0) {
      st = errno_status("eventfd", errno);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: a break stays visible until drained
    ev.data.ptr = &g_break_tag;
    if (::epoll_ctl(g_epfd, EPOLL_CTL_ADD, g_evfd, &ev) != 0) {
      st = errno_status("epoll_ctl(eventfd)", errno);
      return;
    }
    g_inited.store(true);  // seq_cst: see wake_timed_sleeper_for_netpoll
  });
  wake_timed_sleeper_for_netpoll();
  return st;
}

poll_desc* alloc_desc() {
  std::lock_guard lk(g_pool_mu);
  if (g_free == nullptr) {
    // Never freed (see netpoll.hpp): a chunk at a time.
    auto* chunk = new poll_desc[kPoolChunk];
    for (std::size_t i = 0; i < kPoolChunk; ++i) {
      chunk[i].next_free = g_free;
      g_free = &chunk[i];
    }
  }
  poll_desc* pd = g_free;
  g_free = pd->next_free;
  pd->next_free = nullptr;
  return pd;
}

void free_desc(poll_desc* pd) {
  std::lock_guard lk(g_pool_mu);
  pd->next_free = g_free;
  g_free = pd;
}

// Takes every waiter of `mode` (or leaves a token if there are none); the
// caller unparks what it got after unlocking.
poll_waiter* take_waiters_locked(poll_desc* pd, int mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pd->mu) {
  if (pd->q[mode].empty()) {
    pd->token[mode] = true;
    return nullptr;
  }
  return pd->q[mode].take_all();
}

int unpark_all(poll_waiter* w) {
  int n = 0;
  while (w != nullptr) {
    poll_waiter* nx = w->next;  // read before unpark: the record may vanish
    w->pk.unpark();
    w = nx;
    ++n;
  }
  return n;
}

// An OS thread's wait: poll(2) in slices, looking at close() and ctx between.
absl::Status wait_thread(poll_desc* pd, poll_mode mode, const context* ctx, nanos deadline) {
  pollfd p{};
  p.fd = pd->fd;
  p.events = mode == poll_read ? POLLIN : POLLOUT;
  for (;;) {
    if (pd->closing.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError("use of closed network connection");
    }
    if (ctx != nullptr) {
      if (absl::Status st = ctx->err(); !st.ok()) return st;
    }
    int slice = kThreadPollSliceMs;
    if (deadline != kNoTimer) {
      const nanos left = deadline - mono_now();
      if (left <= 0) return absl::DeadlineExceededError("i/o timeout");
      if (left < nanos{slice} * 1'000'000) slice = static_cast<int>((left + 999'999) / 1'000'000);
    }
    const int r = ::poll(&p, 1, slice);
    if (r > 0) {
      // close() shuts the socket down to wake us: report the close, not
      // the EOF that shutdown makes the next recv see.
      if (pd->closing.load(std::memory_order_acquire)) {
        return absl::FailedPreconditionError("use of closed network connection");
      }
      return absl::OkStatus();
    }
    if (r < 0 && errno != EINTR) return errno_status("poll", errno);
  }
}

}  // namespace

bool netpoll_inited() noexcept { return g_inited.load(std::memory_order_acquire); }

absl::StatusOr<poll_desc*> open_desc(int fd) {
  if (absl::Status st = init(); !st.ok()) {
    ::close(fd);
    return st;
  }
  poll_desc* pd = alloc_desc();
  {
    std::lock_guard lk(pd->mu);
    pd->fd = fd;
    pd->family = 0;
    pd->token[0] = pd->token[1] = false;
  }
  pd->closing.store(false, std::memory_order_relaxed);
  pd->rd_drained.store(false, std::memory_order_relaxed);
  pd->rd_final.store(false, std::memory_order_relaxed);
  pd->refs.store(0, std::memory_order_release);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = pd;
  if (::epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    ::close(fd);
    pd->fd = -1;
    free_desc(pd);
    return errno_status("epoll_ctl(ADD)", err);
  }
  return pd;
}

bool acquire_ref(poll_desc* pd) {
  const std::uint64_t old = pd->refs.fetch_add(1, std::memory_order_acquire);
  if ((old & poll_desc::kClosed) != 0) {
    release_ref(pd);
    return false;
  }
  return true;
}

void release_ref(poll_desc* pd) {
  std::uint64_t now = pd->refs.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (now != poll_desc::kClosed) return;
  // Closed and nothing in flight: the fd goes now, closed by exactly one
  // party (the CAS), so a later failed acquire_ref cannot close it again.
  if (!pd->refs.compare_exchange_strong(now, poll_desc::kClosed | poll_desc::kFdClosed,
                                        std::memory_order_acq_rel)) {
    return;
  }
  ::epoll_ctl(g_epfd, EPOLL_CTL_DEL, pd->fd, nullptr);
  ::close(pd->fd);
}

bool close_desc(poll_desc* pd) {
  pd->refs.fetch_add(1, std::memory_order_acquire);  // keeps the fd while we wake
  const std::uint64_t old = pd->refs.fetch_or(poll_desc::kClosed, std::memory_order_acq_rel);
  if ((old & poll_desc::kClosed) != 0) {
    release_ref(pd);
    return false;
  }
  poll_waiter* woken[2];
  {
    std::lock_guard lk(pd->mu);
    pd->closing.store(true, std::memory_order_release);
    woken[0] = pd->q[0].take_all();
    woken[1] = pd->q[1].take_all();
  }
  unpark_all(woken[0]);
  unpark_all(woken[1]);
  // OS threads blocked in poll(2) on it wake at once rather than at the end
  // of their slice: shut down, the socket polls readable and writable.
  ::shutdown(pd->fd, SHUT_RDWR);
  release_ref(pd);
  return true;
}

void destroy_desc(poll_desc* pd) {
  close_desc(pd);
  // Operations still returning from the close's wake-up hold references;
  // the owner may be destroyed only after they returned, but be safe.
  while ((pd->refs.load(std::memory_order_acquire) & poll_desc::kFdClosed) == 0) {
    if (current_fiber() != nullptr) {
      yield_fiber();
    } else {
      ::sched_yield();
    }
  }
  pd->fd = -1;
  free_desc(pd);
}

absl::Status wait_ready(poll_desc* pd, poll_mode mode, const context* ctx, nanos deadline) {
  if (current_fiber() == nullptr) return wait_thread(pd, mode, ctx, deadline);
  if (deadline != kNoTimer && deadline <= mono_now()) {
    return absl::DeadlineExceededError("i/o timeout");
  }
  pd->mu.lock();
  if (pd->closing.load(std::memory_order_relaxed)) {
    pd->mu.unlock();
    return absl::FailedPreconditionError("use of closed network connection");
  }
  if (pd->token[mode]) {
    pd->token[mode] = false;
    pd->mu.unlock();
    return absl::OkStatus();
  }
  poll_waiter w;
  pd->q[mode].push_back(&w);
  auto unlock = [pd]() ABSL_NO_THREAD_SAFETY_ANALYSIS { pd->mu.unlock(); };
  auto remove = [pd, &w, mode] {
    std::lock_guard lk(pd->mu);
    if (!w.linked) return false;
    pd->q[mode].remove(&w);
    return true;
  };
  g_netpoll_waiters.fetch_add(1, std::memory_order_relaxed);
  woke_by by = woke_by::signal;
  try {
    by = park_until(w.pk, unlock, mode == poll_read ? "io read" : "io write", deadline, ctx, remove,
                    pd);
  } catch (...) {
    g_netpoll_waiters.fetch_sub(1, std::memory_order_relaxed);
    if (!remove()) {
      // Woken meanwhile: nothing left to undo.
    }
    throw;
  }
  g_netpoll_waiters.fetch_sub(1, std::memory_order_relaxed);
  switch (by) {
    case woke_by::deadline:
      return absl::DeadlineExceededError("i/o timeout");
    case woke_by::context:
      return ctx->err();
    case woke_by::signal:
      break;
  }
  if (pd->closing.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("use of closed network connection");
  }
  return absl::OkStatus();
}

int netpoll(nanos timeout_ns, std::atomic<bool>* polling) {
  if (!netpoll_inited()) return 0;
  int timeout_ms = 0;
  if (timeout_ns < 0) {
    timeout_ms = -1;
  } else if (timeout_ns > 0) {
    // Round up: waking before a timer is due would only spin.
    const nanos ms = (timeout_ns + 999'999) / 1'000'000;
    timeout_ms = ms > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(ms);
  }
  epoll_event evs[kMaxEvents];
  const int n = ::epoll_wait(g_epfd, evs, kMaxEvents, timeout_ms);
  if (polling != nullptr) polling->store(false, std::memory_order_relaxed);
  g_netpoll_last.store(mono_now(), std::memory_order_relaxed);
  if (n <= 0) return 0;
  int woken = 0;
  for (int i = 0; i < n; ++i) {
    const epoll_event& e = evs[i];
    if (e.data.ptr == &g_break_tag) {
      // A break is for the poller blocked in epoll_wait. A non-blocking poll
      // (another worker, sysmon) that sees it leaves it: the eventfd is
      // level-triggered, so it stays ready and still wakes that poller.
      if (timeout_ns == 0) continue;
      std::uint64_t v;
      while (::read(g_evfd, &v, sizeof v) > 0) {
      }
      g_break_pending.store(false, std::memory_order_release);
      continue;
    }
    auto* pd = static_cast<poll_desc*>(e.data.ptr);
    const bool rd = (e.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    // Before the waiters are woken (unpark orders it before their reads).
    if ((e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      pd->rd_final.store(true, std::memory_order_relaxed);
    }
    const bool wr = (e.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    poll_waiter* r = nullptr;
    poll_waiter* w = nullptr;
    {
      std::lock_guard lk(pd->mu);
      if (rd) r = take_waiters_locked(pd, poll_read);
      if (wr) w = take_waiters_locked(pd, poll_write);
    }
    woken += unpark_all(r);
    woken += unpark_all(w);
  }
  return woken;
}

void netpoll_break() {
  if (!netpoll_inited()) return;
  if (g_break_pending.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  while (::write(g_evfd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

}  // namespace goro::detail
