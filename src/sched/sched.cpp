// src/sched/sched.cpp — run queues, spawning, ready(), and the idle protocol.
//
// Where a runnable fiber can be (Go's model, runtime/proc.go):
//   1. a P's `runnext` slot — ready()/spawn put the fiber there so that a
//      communicate-and-wait pair runs back to back on one P (cache-warm, no
//      wake-up of another worker); the displaced fiber goes to the queue tail;
//   2. a P's local runq (runq.hpp), 256 slots; when full, half of it plus the
//      new fiber move to the global queue in one batch;
//   3. the global queue (FIFO, under sched::mu), for overflow, for fibers made
//      runnable by plain OS threads, and checked first every 61st schedule so
//      that local queues cannot starve it.
// runnext can starve the local queue when two fibers keep readying each
// other; Go bounds that with its 10 ms time slice, goro (no preemption) with
// kMaxRunnextStreak consecutive runnext picks, after which the queue head goes
// first.
//
// Idle protocol (Go's "spinning" M): a worker out of local work steals; while
// stealing it counts in nmspinning. Whoever makes work runnable calls
// wakep_if_needed(): after a full fence, if some worker is idle and none is
// spinning, wake one (and count it spinning on its behalf). A spinning worker
// that finds work stops spinning and, if more work is visible, wakes another.
// A worker about to sleep: under mu it joins the idle list and stops
// spinning; then, after a full fence, re-checks every queue (Dekker pairing
// with the submitter's fence: either the submitter sees npidle > 0 and
// nmspinning == 0 and wakes someone, or the sleeper sees the work). Sleeping
// is on the worker's own futex word, so an idle runtime uses no CPU.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "fiber/sanitizer.hpp"
#include "net/netpoll.hpp"
#include "sched/futex.hpp"
#include "sched/sched.hpp"

namespace goro::detail {
namespace {

// Schedules between checks of the global queue ahead of local work (Go's 61:
// a prime, so it doesn't beat in step with periodic program behaviour).
constexpr std::uint32_t kGlobalCheckPeriod = 61;
// Consecutive runnext picks before the local queue head is given a turn.
constexpr std::uint32_t kMaxRunnextStreak = 32;
// Stealing passes over all victims before a worker gives up and sleeps.
constexpr int kStealRounds = 4;
// How long a thief watches a victim with a short queue or a full runnext
// slot before deciding to take from it (Go's 3 us for runnext: ~50x a
// channel hand-off, so the owner gets to run it first). See steal().
constexpr std::chrono::microseconds kStealGrace{3};
// A victim queue this long is stolen from at once.
constexpr std::uint32_t kStealEager = 8;
// How long a spinning worker that found nothing keeps polling before it
// sleeps (see idle_spin), and how many polls between clock reads.
constexpr std::chrono::microseconds kIdleSpin{50};
constexpr int kIdleSpinCheckEvery = 8;
constexpr int kIdleSpinPauses = 16;
// Recycled fiber records a P keeps before spilling a batch to the global pool.
constexpr std::size_t kMaxFreeFibers = 256;
constexpr std::size_t kFiberBatch = 64;
// Fiber ids a P reserves at a time (one atomic add per batch).
constexpr std::uint64_t kIdBatch = 64;

std::uint64_t next_random(worker* w) {
  // xorshift64*: cheap and good enough to pick steal victims.
  std::uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

void gq_push_locked(sched* s, fiber* const* fs, std::int64_t n)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  s->gq.insert(s->gq.end(), fs, fs + n);
  s->gq_size.store(static_cast<std::int64_t>(s->gq.size()), std::memory_order_release);
}

fiber* gq_pop_locked(sched* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->gq.empty()) return nullptr;
  fiber* f = s->gq.front();
  s->gq.pop_front();
  s->gq_taken.store(s->gq_taken.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  s->gq_size.store(static_cast<std::int64_t>(s->gq.size()), std::memory_order_release);
  return f;
}

// Go's globrunqget: take a fair share of the global queue, run one, queue the
// rest locally.
fiber* gq_get_locked(sched* s, processor* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  std::int64_t size = static_cast<std::int64_t>(s->gq.size());
  if (size == 0) return nullptr;
  std::int64_t n = size / s->nprocs + 1;
  if (n > size) n = size;
  if (n > static_cast<std::int64_t>(runq::kSize / 2)) n = runq::kSize / 2;
  if (p->migrate) {
    // options::migrate_always: take one, at random (FIFO order would keep
    // workers that run in lockstep taking back the fibers they gave up).
    n = 1;
    if (worker* w = current_worker(); w != nullptr && size > 1) {
      std::swap(s->gq[0], s->gq[next_random(w) % static_cast<std::uint64_t>(size)]);
    }
  }
  fiber* first = s->gq.front();
  std::int64_t moved = 1;
  for (; moved < n; ++moved) {
    if (!p->q.push(s->gq[static_cast<std::size_t>(moved)])) break;  // full: leave the rest
  }
  s->gq.erase(s->gq.begin(), s->gq.begin() + moved);
  s->gq_taken.store(s->gq_taken.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(moved),
                    std::memory_order_relaxed);
  s->gq_size.store(static_cast<std::int64_t>(s->gq.size()), std::memory_order_release);
  return first;
}

// With many fibers each one's stack is cold when it runs (100k sleepers: a
// cache and a TLB miss on the words a switch loads, and the fiber record
// before that). Each time a fiber is taken, the memory of the ones queued
// behind it is prefetched, in two stages: the record of one a few places
// back, and the stack of the one after next: from just below its saved
// context (read from its record, prefetched earlier) up to the top, which
// the resumed fiber returns through (at most kPrefetchStackSpan of it: a
// select parks ~1.2 KiB below the top, a sleep ~0.4 KiB), or for a fiber yet
// to start the top of the stack it will get.
//   A queued fiber may be stolen and run meanwhile: its ctx and stack_top
// are then read while another thread writes them (atomics), and what is
// prefetched is stale, which costs nothing but the prefetch. How far ahead
// (measured on 100k cold fibers: records 3 ahead and stacks 1 ahead beat
// 1/0, 4/2 and 6/2 by 10-20%). How much: the two lines at the context that
// were prefetched before left most of a resumed select's frames to miss
// (cancel_broadcast 57-63 -> 32-40 ms with the whole span).
constexpr std::uint32_t kPrefetchRecords = 3;
constexpr std::uint32_t kPrefetchStacks = 1;
constexpr std::uintptr_t kPrefetchStackSpan = 1280;  // bytes above a saved context
constexpr std::uintptr_t kPrefetchBelowCtx = 128;    // after_switch's frames
constexpr std::ptrdiff_t kPrefetchFreshSpan = 512;   // bytes below a fresh stack's top

void prefetch_queued(processor* p) {
  if (fiber* after = p->q.peek(kPrefetchRecords)) __builtin_prefetch(after, 0, 1);
  fiber* next = p->q.peek(kPrefetchStacks);
  if (next == nullptr) return;
  if (auto* ctx = static_cast<char*>(
          std::atomic_ref<bctx::fcontext_t>(next->ctx).load(std::memory_order_relaxed))) {
    const auto from = reinterpret_cast<std::uintptr_t>(ctx);
    const auto top =
        reinterpret_cast<std::uintptr_t>(next->stack_top.load(std::memory_order_relaxed));
    if (from < top) {
      const std::uintptr_t end = std::min(top, from + kPrefetchStackSpan);
      for (std::uintptr_t a = from - kPrefetchBelowCtx; a < end; a += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(a), 1, 1);
      }
    }
  } else if (const stack* st = p->stacks.peek()) {
    for (char* a = st->top() - 64; a >= st->top() - kPrefetchFreshSpan; a -= 64) {
      __builtin_prefetch(a, 1, 1);
    }
  }
}

fiber* runq_get(processor* p) {
  if (p->runnext_streak >= kMaxRunnextStreak) {
    p->runnext_streak = 0;
    if (fiber* f = p->q.pop()) return f;
  }
  fiber* f = p->runnext.load(std::memory_order_relaxed);
  if (f != nullptr && p->runnext.compare_exchange_strong(f, nullptr, std::memory_order_acq_rel)) {
    ++p->runnext_streak;
    return f;
  }
  p->runnext_streak = 0;
  return p->q.pop();
}

}  // namespace

void wakep(sched* s) {
  int expected = 0;
  if (!s->nmspinning.compare_exchange_strong(expected, 1)) return;
  worker* m = nullptr;
  {
    std::lock_guard lk(s->mu);
    if (!s->idle.empty()) {
      m = s->idle.back();
      s->idle.pop_back();
      m->on_idle_list = false;
      m->spinning = true;
      s->npidle.fetch_sub(1);
    }
  }
  if (m == nullptr) {
    s->nmspinning.fetch_sub(1);
    return;
  }
  wake_worker(m);
}

void wake_worker(worker* m) {
  // Dekker with the poller in find_runnable: it sets `polling`, fences and
  // reads `wake`; we set `wake`, fence and read `polling`.
  m->wake.store(1, std::memory_order_release);
  full_fence();
  if (m->polling.load(std::memory_order_relaxed)) {
    netpoll_break();
  } else {
    futex_wake(&m->wake);
  }
}

void wake_timed_sleeper_for_netpoll() {
  sched* s = g_sched.load(std::memory_order_acquire);
  if (s == nullptr) return;
  worker* m = nullptr;
  {
    std::lock_guard lk(s->mu);
    m = s->timed_sleeper;
  }
  if (m != nullptr) wake_worker(m);
}

namespace {

void reset_spinning(worker* w) {
  sched* s = w->s;
  w->spinning = false;
  s->nmspinning.fetch_sub(1);
  // More work than the fiber we are about to run? Let another worker help.
  if (!w->p->q.empty() || s->gq_size.load(std::memory_order_relaxed) > 0) wakep_if_needed(s);
}

// Work on some queue that an idle worker should take. Not the runnext
// slots: a fiber there was put by its P's running worker, which runs it
// next (a spinning worker may still take it after a grace period, in
// steal()); counting it would keep a second worker spinning for ever beside
// a communicating pair on one P, whose runnext is full half the time,
// polling that P's cache lines (measured: a ping-pong round trip 210 ns with,
// 150-170 without). Under migrate_always, fibers are put in other Ps'
// runnext slots, whose workers may be asleep: then they count.
bool any_work(sched* s) {
  const bool runnext = s->migrate_always;
  if (s->gq_size.load() > 0) return true;
  const int n = s->ps_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    processor* v = s->ps[static_cast<std::size_t>(i)];
    if (!v->q.empty() || (runnext && v->runnext.load() != nullptr)) return true;
  }
  return false;
}

// A spare worker (sysmon.cpp) leaves: what is queued on its P goes to the
// global queue, where the regular workers find it.
fiber* retire_spare(worker* w) {
  sched* s = w->s;
  processor* p = w->p;
  std::vector<fiber*> left;
  while (fiber* f = p->q.pop()) left.push_back(f);
  if (fiber* f = p->runnext.exchange(nullptr)) left.push_back(f);
  if (w->spinning) {
    w->spinning = false;
    s->nmspinning.fetch_sub(1);
  }
  if (!left.empty()) {
    {
      std::lock_guard lk(s->mu);
      gq_push_locked(s, left.data(), static_cast<std::int64_t>(left.size()));
    }
    wakep_if_needed(s);
  }
  return nullptr;
}

// Polls for runnable work for up to kIdleSpin; true if some appeared.
bool idle_spin(worker* w) {
  sched* s = w->s;
  const nanos until =
      mono_now() + std::chrono::duration_cast<std::chrono::nanoseconds>(kIdleSpin).count();
  for (int i = 1;; ++i) {
    // Pause between polls: reading every P's queue heads constantly would
    // pull those cache lines away from the Ps that are pushing to them.
    for (int k = 0; k < kIdleSpinPauses; ++k) cpu_relax();
    if (s->stopping.load(std::memory_order_relaxed)) return true;
    if (any_work(s)) return true;
    if (i % kIdleSpinCheckEvery == 0) {
      // Sockets too: a spinning worker that picks up ready sockets itself
      // saves the poller's wake-up and this worker's futex sleep and wake.
      if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0 && netpoll(0) > 0) return true;
      const nanos now = mono_now();
      if (next_timer(s) <= now) return true;  // a timer is due: run it
      if (now >= until) return false;
    }
  }
}

// Takes `w` off the idle list if it is still there (under mu).
bool leave_idle_list(sched* s, worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (!w->on_idle_list) return false;
  for (std::size_t i = 0; i < s->idle.size(); ++i) {
    if (s->idle[i] == w) {
      s->idle.erase(s->idle.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  w->on_idle_list = false;
  s->npidle.fetch_sub(1);
  return true;
}

void release_timed_role(sched* s, worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->timed_sleeper != w) return;
  s->timed_sleeper = nullptr;
  s->timed_deadline.store(kNoTimer);
}

// What a thief saw of a victim P over one grace period.
struct victim_watch {
  bool scheduled;  // it switched fibers at least once
  bool yielded;    // some of its fibers yielded
};

victim_watch watch_victim(processor* v) {
  const std::uint32_t tick = v->schedtick.load(std::memory_order_relaxed);
  const std::uint32_t yields = v->yields.load(std::memory_order_relaxed);
  const auto until = std::chrono::steady_clock::now() + kStealGrace;
  while (std::chrono::steady_clock::now() < until) cpu_relax();
  return {v->schedtick.load(std::memory_order_relaxed) != tick,
          v->yields.load(std::memory_order_relaxed) != yields};
}

// Go's findRunnable steals half of any non-empty queue at once. goro takes a
// long queue (kStealEager fibers or more) at once too, but a short one only
// on the last pass and only if, watched for a grace period, its P did not
// schedule (its worker is stuck in one long-running fiber) or its fibers
// yielded (they compute: spreading them pays). A P that kept switching
// between fibers that park and ready each other keeps them: those are
// communicating through channels, and moving some to another worker only
// makes them fight over the channel's cache lines from two CPUs. Measured on
// 2 CPUs, 4 senders and 4 receivers on one unbuffered channel took 230-280
// ns per message with Go's rule (Go: 170-300) and 80-85 ns with this one;
// four fibers computing and yielding still spread over both workers.
fiber* steal(worker* w) {
  sched* s = w->s;
  processor* p = w->p;
  const int n = s->ps_used.load(std::memory_order_acquire);  // spare Ps too
  for (int round = 0; round < kStealRounds; ++round) {
    const bool last = round == kStealRounds - 1;
    int start = static_cast<int>(next_random(w) % static_cast<std::uint64_t>(n));
    for (int i = 0; i < n; ++i) {
      processor* v = s->ps[(start + i) % n];
      if (v == p) continue;
      const std::uint32_t queued = v->q.size();
      if (queued >= kStealEager) {
        if (fiber* f = p->q.steal_from(v->q)) return f;
        continue;
      }
      if (!last) continue;
      // The runnext slot is taken only on the last pass too, and only if its
      // owner did not schedule meanwhile: a fiber there was usually just
      // readied by a fiber about to block (a channel hand-off) and runs
      // within ~100 ns; a pair of fibers readying each other refills the
      // slot every ~100 ns, so "still there after the wait" would split the
      // pair across two workers. (Go waits 3 us, then takes what is there.)
      fiber* seen = v->runnext.load(std::memory_order_relaxed);
      if (queued == 0 && seen == nullptr) continue;
      const victim_watch saw = watch_victim(v);
      if (queued > 0 && (!saw.scheduled || saw.yielded)) {
        if (fiber* f = p->q.steal_from(v->q)) return f;
      }
      if (seen != nullptr && !saw.scheduled && v->runnext.compare_exchange_strong(seen, nullptr)) {
        return seen;
      }
    }
  }
  return nullptr;
}

}  // namespace

const char* to_string(fiber_state s) {
  switch (s) {
    case fiber_state::runnable:
      return "runnable";
    case fiber_state::running:
      return "running";
    case fiber_state::parked:
      return "parked";
    case fiber_state::dead:
      return "dead";
  }
  return "?";
}

void set_state(fiber* f, fiber_state from, fiber_state to) {
  // A plain load and store, not an exchange: every transition is made by the
  // one party that owns the fiber at that moment (protocol in sched.hpp), so
  // this is an assertion, not synchronization. So are ready() and ready_many().
  fiber_state old = f->state.load(std::memory_order_relaxed);
  f->state.store(to, std::memory_order_relaxed);
  if (old != from) {
    fatal("goro: internal error: fiber %" PRIu64 " went %s -> %s but was %s", f->id,
          to_string(from), to_string(to), to_string(old));
  }
}

void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

void runq_put(processor* p, fiber* f, bool next) {
  if (p->migrate) [[unlikely]] {
    // options::migrate_always: into the runnext slot of a random regular P
    // (an exchange, which its owner and thieves only ever CAS or exchange
    // too); whatever it displaces goes to the global queue. Its worker, or
    // a thief if that one is busy or asleep, runs it.
    worker* w = current_worker();
    sched* s = w->s;
    processor* to = s->ps[next_random(w) % static_cast<std::uint64_t>(s->nprocs)];
    if (fiber* old = to->runnext.exchange(f, std::memory_order_acq_rel)) {
      std::lock_guard lk(s->mu);
      gq_push_locked(s, &old, 1);
    }
    wakep_if_needed(s);
    return;
  }
  if (next) {
    // Only the owner fills the slot (null -> fiber); thieves and the owner's
    // runq_get only empty it. So an empty slot is filled with a plain store,
    // and a full one with a CAS that, if a thief emptied it meanwhile,
    // leaves it empty for the store. A ping-pong hand-off finds it empty:
    // one locked instruction fewer per message than an exchange.
    fiber* old = p->runnext.load(std::memory_order_relaxed);
    if (old == nullptr || !p->runnext.compare_exchange_strong(old, f, std::memory_order_acq_rel,
                                                              std::memory_order_relaxed)) {
      p->runnext.store(f, std::memory_order_release);
      return;
    }
    f = old;
  }
  fiber* batch[runq::kSize / 2 + 1];
  for (;;) {
    if (p->q.push(f)) return;
    std::uint32_t n = p->q.take_half(batch);
    if (n == 0) continue;  // thieves made room
    batch[n] = f;
    sched* s = current_worker()->s;
    std::lock_guard lk(s->mu);
    gq_push_locked(s, batch, n + 1);
    return;
  }
}

fiber* find_local(worker* w) {
  processor* p = w->p;
  sched* s = w->s;
  const std::uint32_t tick = p->schedtick.load(std::memory_order_relaxed) + 1;
  p->schedtick.store(tick, std::memory_order_relaxed);
  if (tick % kGlobalCheckPeriod == 0 && s->gq_size.load(std::memory_order_acquire) > 0) {
    std::lock_guard lk(s->mu);
    if (fiber* f = gq_pop_locked(s)) return f;
  }
  if (fiber* f = runq_get(p)) {
    prefetch_queued(p);
    return f;
  }
  if (s->gq_size.load(std::memory_order_acquire) > 0) {
    std::lock_guard lk(s->mu);
    return gq_get_locked(s, p);
  }
  return nullptr;
}

void wakep_if_needed(sched* s) {
  full_fence();
  if (s->npidle.load() > 0 && s->nmspinning.load() == 0) wakep(s);
}

fiber* find_runnable(worker* w) {
  sched* s = w->s;
  processor* p = w->p;
  for (;;) {
    if (s->stopping.load(std::memory_order_acquire)) return nullptr;
    if (w->spare && s->nstuck.load(std::memory_order_relaxed) == 0) return retire_spare(w);
    run_all_timers(s);  // one load per P when none is armed
    // Fibers waiting for sockets while every P is busy: poll at this pass
    // if nobody has for a while (next_local sends busy workers here).
    if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0 &&
        mono_now() - g_netpoll_last.load(std::memory_order_relaxed) >= kBusyPollInterval) {
      netpoll(0);
    }
    if (fiber* f = find_local(w)) {
      if (w->spinning) reset_spinning(w);
      return f;
    }
    // Out of local work: ready sockets before stealing (Go's findRunnable).
    if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0 && netpoll(0) > 0) continue;
    // Spin (steal) unless enough workers already do: Go caps spinners at half
    // the busy Ps, so a burst does not wake every idle worker to fight over it.
    if (w->spinning || 2 * s->nmspinning.load() < s->nprocs - s->npidle.load()) {
      if (!w->spinning) {
        w->spinning = true;
        s->nmspinning.fetch_add(1);
      }
      if (fiber* f = steal(w)) {
        reset_spinning(w);
        return f;
      }
      // Nothing to steal. Stay spinning a little longer before sleeping:
      // while this worker counts as spinning, a fiber that readies another
      // (a channel hand-off, every few hundred ns in a busy program) need
      // not wake anyone with a futex, which costs microseconds. Bounded, so
      // an idle runtime still goes to sleep almost at once.
      if (idle_spin(w)) continue;
    }

    std::unique_lock lk(s->mu);
    if (s->stopping.load(std::memory_order_acquire)) return nullptr;
    if (fiber* f = gq_get_locked(s, p)) {
      lk.unlock();
      if (w->spinning) reset_spinning(w);
      return f;
    }
    if (w->spare) {  // out of work: spares never sleep, they leave
      lk.unlock();
      return retire_spare(w);
    }
    const bool was_spinning = w->spinning;
    w->spinning = false;
    w->wake.store(0, std::memory_order_relaxed);
    w->on_idle_list = true;
    s->idle.push_back(w);
    s->npidle.fetch_add(1);
    // One idle worker sleeps until the next timer; the others until woken.
    const bool timed = s->timed_sleeper == nullptr;
    if (timed) s->timed_sleeper = w;
    lk.unlock();
    if (was_spinning) s->nmspinning.fetch_sub(1);

    full_fence();
    nanos deadline = kNoTimer;
    if (timed) {
      // Publish the deadline, then re-read the heaps (Dekker with
      // timer_wake): a timer armed meanwhile is either seen here or wakes us.
      deadline = next_timer(s);
      for (;;) {
        s->timed_deadline.store(deadline);
        full_fence();
        const nanos again = next_timer(s);
        if (again >= deadline) break;
        deadline = again;
      }
    }
    if (any_work(s) || (timed && deadline <= mono_now())) {
      lk.lock();
      if (timed) release_timed_role(s, w);
      if (leave_idle_list(s, w)) {
        w->spinning = true;
        s->nmspinning.fetch_add(1);
        lk.unlock();
        continue;
      }
      lk.unlock();  // a waker took us off the list: its token is on the way
    } else if (timed && netpoll_inited()) {
      // The timed sleeper is the poller: it blocks in epoll_wait until the
      // next timer, an event, or wake_worker (Dekker on polling/wake).
      w->polling.store(true, std::memory_order_relaxed);
      full_fence();
      if (w->wake.load(std::memory_order_acquire) == 0) {
        const nanos left = deadline == kNoTimer ? -1 : std::max<nanos>(deadline - mono_now(), 0);
        netpoll(left, &w->polling);
      }
      w->polling.store(false, std::memory_order_relaxed);
      lk.lock();
      release_timed_role(s, w);
      leave_idle_list(s, w);
      lk.unlock();
      continue;
    } else if (timed) {
      while (w->wake.load(std::memory_order_acquire) == 0) {
        if (deadline == kNoTimer) {
          futex_wait(&w->wake, 0);
          continue;
        }
        const nanos now = mono_now();
        if (now >= deadline) break;
        futex_wait_for(&w->wake, 0, std::chrono::nanoseconds(deadline - now));
      }
      lk.lock();
      release_timed_role(s, w);
      leave_idle_list(s, w);  // timed out or woken for a timer: not spinning
      lk.unlock();
      continue;  // the loop's top runs the timers that are due
    }
    // Woken by wakep (which took us off the idle list and made us spinning)
    // or by stop_workers. A token can be stale: a wakep that took us off the
    // list earlier (we then left through the any_work path without waiting)
    // may store it only after we went idle again. Only being off the list
    // counts; checking it under the lock also orders wakep's writes to
    // `spinning` before our reads.
    for (;;) {
      while (w->wake.load(std::memory_order_acquire) == 0) futex_wait(&w->wake, 0);
      lk.lock();
      const bool stale = w->on_idle_list;
      if (stale) w->wake.store(0, std::memory_order_relaxed);
      lk.unlock();
      if (!stale) break;
    }
  }
}

void stop_workers(sched* s) {
  s->stopping.store(true, std::memory_order_release);
  std::vector<worker*> woken;
  {
    std::lock_guard lk(s->mu);
    woken.swap(s->idle);
    for (worker* m : woken) m->on_idle_list = false;
    s->npidle.store(0);
  }
  for (worker* m : woken) wake_worker(m);
}

void registry_add(processor* p, fiber* f) {
  std::lock_guard lk(p->reg_mu);
  f->reg_p = p;
  f->reg_prev = nullptr;
  f->reg_next = p->reg_head;
  if (p->reg_head != nullptr) p->reg_head->reg_prev = f;
  p->reg_head = f;
}

void registry_remove(fiber* f) {
  processor* p = f->reg_p;
  if (p == nullptr) return;
  std::lock_guard lk(p->reg_mu);
  if (f->reg_prev != nullptr) {
    f->reg_prev->reg_next = f->reg_next;
  } else {
    p->reg_head = f->reg_next;
  }
  if (f->reg_next != nullptr) f->reg_next->reg_prev = f->reg_prev;
  f->reg_prev = f->reg_next = nullptr;
  f->reg_p = nullptr;
}

std::int64_t live_fibers(sched* s) {
  std::int64_t n = s->external_live.load(std::memory_order_relaxed);
  for (processor* p : s->ps) n += p->live.load(std::memory_order_relaxed);
  return n;
}

fiber_arena::~fiber_arena() {
  std::lock_guard lk(mu_);
  for (void* c : chunks_) {
    san::lsan_remove_root(c, kChunkBytes);
    ::munmap(c, kChunkBytes);
  }
}

void fiber_arena::carve(std::vector<fiber*>& out, std::size_t n) {
  constexpr std::size_t kSize = sizeof(fiber);
  static_assert(kChunkBytes % alignof(fiber) == 0 && kSize <= kChunkBytes);
  char* base;
  std::size_t k;
  {
    std::lock_guard lk(mu_);
    if (static_cast<std::size_t>(end_ - next_) < kSize) {
      void* c =
          ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (c == MAP_FAILED) throw std::bad_alloc();
      // Fresh memory is addressable, whatever ASan's shadow still says of
      // an earlier mapping at this address.
      san::asan_unpoison(c, kChunkBytes);
      // Records hold the only pointers to their tasks' captures.
      san::lsan_add_root(c, kChunkBytes);
      chunks_.push_back(c);
      next_ = static_cast<char*>(c);
      end_ = next_ + kChunkBytes;
    }
    k = std::min(std::max<std::size_t>(n, 1), static_cast<std::size_t>(end_ - next_) / kSize);
    base = next_;
    next_ += k * kSize;
  }
  // Highest address first: callers pop from the back, so a spawning loop
  // walks the records upwards.
  for (std::size_t i = k; i-- > 0;) out.push_back(new (base + i * kSize) fiber);
}

fiber* alloc_fiber(sched* s, processor* p) {
  fiber* f = nullptr;
  if (p != nullptr) {
    if (p->free_fibers.empty()) {
      {
        std::lock_guard lk(s->mu);
        std::size_t n = std::min(kFiberBatch, s->free_fibers.size());
        p->free_fibers.insert(p->free_fibers.end(), s->free_fibers.end() - n, s->free_fibers.end());
        s->free_fibers.resize(s->free_fibers.size() - n);
      }
      if (p->free_fibers.empty()) s->fiber_mem.carve(p->free_fibers, kFiberBatch);
    }
    f = p->free_fibers.back();
    p->free_fibers.pop_back();
    // A spawning loop takes them one after another: fetch the next one.
    if (!p->free_fibers.empty()) __builtin_prefetch(p->free_fibers.back(), 1, 1);
    if (p->next_id == p->end_id) {
      p->next_id = s->ids.fetch_add(kIdBatch, std::memory_order_relaxed);
      p->end_id = p->next_id + kIdBatch;
    }
  } else {
    {
      std::lock_guard lk(s->mu);
      if (!s->free_fibers.empty()) {
        f = s->free_fibers.back();
        s->free_fibers.pop_back();
      }
    }
    if (f == nullptr) {
      std::vector<fiber*> one;
      s->fiber_mem.carve(one, 1);
      f = one.back();
    }
  }
  f->id = p != nullptr ? p->next_id++ : s->ids.fetch_add(1, std::memory_order_relaxed);
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  return f;
}

void free_fiber(sched* s, processor* p, fiber* f) {
  set_ctx(f, nullptr);
  f->stk = stack{};
  f->stack_top.store(nullptr, std::memory_order_relaxed);
  f->unwinding = f->unwind_thrown = f->is_main = false;
  f->reg_p = nullptr;
  f->asan_fake_stack = nullptr;
  f->tsan = nullptr;
  f->wait_reason.store(nullptr, std::memory_order_relaxed);
  f->wait_obj.store(nullptr, std::memory_order_relaxed);
  f->spawned_at = std::source_location();
  p->free_fibers.push_back(f);
  if (p->free_fibers.size() > kMaxFreeFibers) {
    std::lock_guard lk(s->mu);
    s->free_fibers.insert(s->free_fibers.end(), p->free_fibers.end() - kFiberBatch,
                          p->free_fibers.end());
    p->free_fibers.resize(p->free_fibers.size() - kFiberBatch);
  }
}

void ready_many(fiber* const* fs, std::size_t n, bool global) {
  if (n == 0) return;
  // The records are usually cold (timers firing 64 sleepers, a close waking
  // a batch): ask for all of them first so the misses overlap. Then a plain
  // load and store each, as in ready(): whoever took the fibers out of a
  // timer heap or a wait queue owns them; the run queue publishes the state.
  for (std::size_t i = 0; i < n; ++i) __builtin_prefetch(fs[i], 1, 1);
  for (std::size_t i = 0; i < n; ++i) {
    fiber_state old = fs[i]->state.load(std::memory_order_relaxed);
    fs[i]->state.store(fiber_state::runnable, std::memory_order_relaxed);
    if (old != fiber_state::parked) {
      fatal("goro: internal error: ready() of fiber %" PRIu64 " that is %s, not parked", fs[i]->id,
            to_string(old));
    }
  }
  worker* w = current_worker();
  sched* s = w != nullptr ? w->s : g_sched.load(std::memory_order_acquire);
  std::size_t i = 0;
  if (w != nullptr && !w->p->migrate && !global) {
    while (i < n && w->p->q.push(fs[i])) ++i;
  }
  if (i < n) {
    std::lock_guard lk(s->mu);
    gq_push_locked(s, fs + i, static_cast<std::int64_t>(n - i));
  }
  wakep_if_needed(s);
}

void ready(fiber* f) {
  // A plain load and store, as in set_state: the waker that took the
  // waiter's record owns the fiber (park protocol, parker.hpp), so this
  // checks for a double ready() (a protocol bug) rather than synchronizing.
  // The run queue's release publishes the state with the fiber.
  fiber_state old = f->state.load(std::memory_order_relaxed);
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  if (old != fiber_state::parked) {
    fatal("goro: internal error: ready() of fiber %" PRIu64 " that is %s, not parked", f->id,
          to_string(old));
  }
  worker* w = current_worker();
  if (w == nullptr) {
    sched* s = g_sched.load(std::memory_order_acquire);
    {
      std::lock_guard lk(s->mu);
      gq_push_locked(s, &f, 1);
    }
    wakep_if_needed(s);
    return;
  }
  sched* s = w->s;
  runq_put(w->p, f, true);
  if (w->p->migrate) [[unlikely]]
    return;  // runq_put woke a worker if needed
  // No fence before the idle check, as Go's ready(): the fiber is on this
  // worker's own P, which runs it when the caller parks or yields (or
  // sysmon hands the P on), so a worker that goes idle concurrently costs
  // some parallelism at worst, never the fiber. The fence cost a locked
  // instruction per channel hand-off.
  if (s->npidle.load(std::memory_order_relaxed) > 0 &&
      s->nmspinning.load(std::memory_order_relaxed) == 0) {
    wakep(s);
  }
}

}  // namespace goro::detail
