// src/sched/sysmon.cpp — the monitor (Go's sysmon): keeps the runtime moving
// when a fiber holds its worker for too long.
//
// goro has no preemption, and a fiber that makes a blocking syscall (a read
// on a pipe, a C library that sleeps) or computes for a long time holds its
// worker's P all that time. The monitor is one thread that looks at every
// worker each tick (1 ms, backing off to 10 ms after 50 ticks in a row that
// found nothing stuck, as Go's sysmon does). A worker is stuck when it has
// been running the same fiber, without a single scheduling event on its P,
// for kStuckAfter; its fiber holds it when the thread sleeps in a syscall or
// computes (not when the OS merely did not run it). When some worker is held
// and runnable fibers starve (a run queue nobody has taken from for
// kStarveAfter, or a timer overdue by as much) while no worker is idle to
// take them, the monitor starts a spare worker: an extra thread with one of
// the spare Ps (sched::ps beyond nprocs) that runs fibers until it finds no
// more work or no worker is stuck any more, then gives its queue back and
// exits. Go hands the stuck M's own P to a new M instead; goro cannot take a
// P from under a fiber that is still running on it (there is no entersyscall
// hook to make that safe), so the spare brings its own P. While both run, one
// more thread than maxprocs runs fibers, as in Go while an M returns from a
// syscall.
//
// A fiber that runs long while the other workers keep taking the fibers
// waiting behind it (the main fiber spawning 100,000 others) starves nobody:
// it is neither reported nor given a spare.
//
// It also reports each held worker while fibers starve, once per fiber:
// "goro: fiber N has blocked worker W for X ms" (options::report_blocked
// silences it), and polls the netpoller when
// nobody has for 10 ms, so socket events reach a runtime whose workers are
// all busy.
#include <pthread.h>
#include <time.h>
#include <algorithm>
#include <cinttypes>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

#include "net/netpoll.hpp"
#include "sched/sched.hpp"

namespace goro::detail {
namespace {

constexpr nanos kStuckAfter = 10'000'000;    // 10 ms, as Go's forcePreemptNS
constexpr nanos kTickBusy = 1'000'000;       // 1 ms
constexpr nanos kTickMax = 10'000'000;       // 10 ms, as Go's sysmon
constexpr int kQuietTicks = 50;              // quiet 1 ms ticks before backing off
constexpr nanos kNetpollStale = 10'000'000;  // 10 ms, as Go's sysmon
constexpr nanos kCpuSample = 5'000'000;      // CPU-time sampling for a hog: 5 ms
constexpr nanos kAsleepReport = 50'000'000;  // asleep in a syscall this long: misuse
constexpr nanos kStarveAfter = 10'000'000;   // runnable fibers nobody took for 10 ms

struct watch {
  std::uint32_t tick = 0;
  std::uint64_t fiber = 0;
  nanos since = 0;
  bool asleep = false;     // seen sleeping in a syscall at the last tick
  nanos asleep_since = 0;  // since when, at every tick
  nanos cpu0 = -1;         // the thread's CPU time when first seen stuck
  nanos wall0 = 0;
};

nanos thread_cpu(worker* w) {
  clockid_t cid;
  timespec ts{};
  if (pthread_getcpuclockid(w->thread.native_handle(), &cid) != 0 || clock_gettime(cid, &ts) != 0) {
    return -1;
  }
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// The kernel's state letter for a thread ('R' running or runnable, 'S'/'D'
// sleeping in a syscall), or 0.
char thread_state(int tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char buf[512];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');  // the name may hold spaces
  return paren != nullptr && paren[1] == ' ' ? paren[2] : 0;
}

// Whether a worker seen stuck is really held by its fiber: it sleeps in a
// syscall (at two ticks in a row: one sample may catch a brief wait on a
// lock), or it had the CPU for most of the time since it was first seen
// stuck (a computation). A thread the OS merely did not run (an overloaded
// machine, a sanitizer's slowness) is not the fiber's doing, and a spare
// thread would only compete with it for the same CPUs.
bool held_by_fiber(worker* w, watch& st, nanos now) {
  const char state = thread_state(w->tid.load(std::memory_order_relaxed));
  if (state == 'S' || state == 'D') {
    if (st.asleep) return true;
    st.asleep = true;
    st.asleep_since = now;
    return false;
  }
  st.asleep = false;
  const nanos cpu = thread_cpu(w);
  if (cpu < 0) return false;
  if (st.cpu0 < 0) {
    st.cpu0 = cpu;
    st.wall0 = now;
    return false;
  }
  const nanos wall = now - st.wall0;
  return wall >= kCpuSample && 2 * (cpu - st.cpu0) >= wall;
}

// Whether runnable fibers wait and nobody takes them: a run queue (a P's, or
// the global one) that has held fibers for kStarveAfter without one being
// taken, or a timer overdue by as much. Fibers that other workers keep
// taking (a fiber spawning many while the others run them) are not waiting
// on a stuck worker, however long it runs.
class starvation {
 public:
  bool update(sched* s, nanos now) {
    const int n = s->ps_used.load(std::memory_order_acquire);
    if (ps_.size() < static_cast<std::size_t>(n)) ps_.resize(static_cast<std::size_t>(n));
    bool starving = false;
    for (int i = 0; i < n; ++i) {
      processor* p = s->ps[static_cast<std::size_t>(i)];
      fiber* next = p->runnext.load(std::memory_order_relaxed);
      const bool waiting = !p->q.empty() || next != nullptr;
      starving |= track(ps_[static_cast<std::size_t>(i)], waiting, p->q.taken(), next, now);
    }
    starving |= track(gq_, s->gq_size.load(std::memory_order_relaxed) > 0,
                      s->gq_taken.load(std::memory_order_relaxed), nullptr, now);
    return starving || next_timer(s) <= now - kStarveAfter;
  }

 private:
  struct queue {
    std::uint64_t taken = 0;
    const fiber* next = nullptr;
    nanos since = 0;  // when it was last seen empty or taken from
  };
  static bool track(queue& q, bool waiting, std::uint64_t taken, const fiber* next, nanos now) {
    if (!waiting || taken != q.taken || next != q.next) {
      q = {taken, next, now};
      return false;
    }
    return now - q.since >= kStarveAfter;
  }
  std::vector<queue> ps_;
  queue gq_;
};

// "goro: fiber N has blocked worker W for X ms (spawned at F:L in FN)".
void report_blocked(worker* w, std::uint64_t id, nanos held) {
  const std::string where = describe_spawn(w->s, id);
  std::fprintf(stderr, "goro: fiber %" PRIu64 " has blocked worker %d for %" PRId64 " ms (%s)\n",
               id, w->p->id, held / 1'000'000, where.c_str());
}

// Joins spare workers that have exited and gives their Ps back.
void reap_spares(sched* s) {
  std::vector<worker*> done;
  {
    std::lock_guard lk(s->mu);
    for (std::size_t i = 0; i < s->spares.size();) {
      worker* w = s->spares[i];
      if (w->exited.load(std::memory_order_acquire)) {
        done.push_back(w);
        s->spares[i] = s->spares.back();
        s->spares.pop_back();
      } else {
        ++i;
      }
    }
  }
  for (worker* w : done) {
    w->thread.join();
    std::lock_guard lk(s->mu);
    s->free_spare_ps.push_back(w->p);
    delete w;
  }
}

void start_spare(sched* s) {
  worker* w = nullptr;
  {
    std::lock_guard lk(s->mu);
    if (s->free_spare_ps.empty() || s->stopping.load(std::memory_order_relaxed)) return;
    w = new worker;
    w->s = s;
    w->spare = true;
    w->p = s->free_spare_ps.back();
    s->free_spare_ps.pop_back();
    s->spares.push_back(w);
    const int used = w->p->id + 1;
    if (used > s->ps_used.load(std::memory_order_relaxed)) {
      s->ps_used.store(used, std::memory_order_release);
    }
  }
  w->thread = std::thread(worker_main, w);
}

}  // namespace

void sysmon_main(sched* s) {
  thread_count_scope counted(g_runtime_threads);
  deadlock_watch deadlock;
  absl::flat_hash_map<const worker*, watch> seen;
  // Fibers already reported (ids are never reused within a run): once per
  // fiber, whatever worker it blocks and however the worker set changes.
  absl::flat_hash_set<std::uint64_t> reported;
  starvation waiting;
  nanos tick = kTickBusy;
  int quiet = 0;  // ticks in a row that found nothing stuck
  std::vector<worker*> all;
  for (;;) {
    {
      std::unique_lock lk(s->sysmon_mu);
      s->sysmon_cv.wait_for(lk, std::chrono::nanoseconds(tick),
                            [s] { return s->stopping.load(std::memory_order_acquire); });
    }
    if (s->stopping.load(std::memory_order_acquire)) break;
    reap_spares(s);
    const nanos now = mono_now();
    s->clock.store(now, std::memory_order_relaxed);
    diag_tick(s, deadlock, now);

    // Sockets: if nobody polled for a while (every worker busy), poll here;
    // the woken fibers go to the global queue.
    if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0 &&
        now - g_netpoll_last.load(std::memory_order_relaxed) >= kNetpollStale) {
      netpoll(0);
    }

    all.clear();
    {
      std::lock_guard lk(s->mu);
      all = s->ws;
      all.insert(all.end(), s->spares.begin(), s->spares.end());
    }
    // Forget workers that are gone (a spare's record may be reused: its
    // stale entry is reset below because its tick or fiber differ).
    if (seen.size() > all.size()) {
      for (auto it = seen.begin(); it != seen.end();) {
        if (std::find(all.begin(), all.end(), it->first) == all.end()) {
          seen.erase(it++);
        } else {
          ++it;
        }
      }
    }
    const bool starving = waiting.update(s, now);
    int running = 0;
    int stuck = 0;
    int held = 0;
    int held_spares = 0;
    for (worker* w : all) {
      watch& st = seen[w];
      const std::uint64_t id = w->running_id.load(std::memory_order_relaxed);
      const std::uint32_t t = w->p->schedtick.load(std::memory_order_relaxed);
      if (id != 0) ++running;
      if (id == 0 || id != st.fiber || t != st.tick) {
        st = watch{t, id, now};
        continue;
      }
      if (now - st.since < kStuckAfter) continue;
      ++stuck;
      if (!held_by_fiber(w, st, now)) continue;
      ++held;
      if (w->spare) ++held_spares;
      // Reported when others starve, and also when the thread has slept in
      // a syscall (a read, a std::mutex, a std::condition_variable) at every
      // tick for kAsleepReport, whether or not anyone waits yet: a worker
      // must never do that. (Not sooner: a worker may sleep a moment on the
      // runtime's own contended scheduler lock.)
      const bool long_asleep = st.asleep && now - st.asleep_since >= kAsleepReport;
      if ((starving || long_asleep) && s->report_blocked && reported.insert(id).second) {
        report_blocked(w, id, now - st.since);
      }
    }
    s->nstuck.store(stuck, std::memory_order_relaxed);
    // Go's pacing: 1 ms ticks while something is (or was just) stuck; after
    // 50 quiet ticks, double up to 10 ms, so a busy runtime pays ~100
    // wake-ups a second and an idle one fewer still.
    if (stuck > 0 || (running > 0 && quiet < kQuietTicks)) {
      quiet = stuck > 0 ? 0 : quiet + 1;
      tick = kTickBusy;
    } else {
      tick = std::min(tick * 2, kTickMax);
    }

    // A spare when fibers starve behind workers their fibers hold, and no
    // idle worker could take them. One at a time per tick: a spare that is
    // not itself held takes whatever waits; start another only while none
    // is free to.
    if (!starving || held == 0 || s->npidle.load() > 0) continue;
    std::size_t spares = 0;
    {
      std::lock_guard lk(s->mu);
      spares = s->spares.size();
    }
    if (static_cast<int>(spares) - held_spares <= 0) start_spare(s);
  }
}

void sysmon_stop(sched* s) {
  {
    std::lock_guard lk(s->sysmon_mu);  // pairs with the predicate's load
  }
  s->sysmon_cv.notify_all();
  if (s->sysmon.joinable()) s->sysmon.join();
  // Spares exit on `stopping` (find_runnable returns null); join them all.
  std::vector<worker*> left;
  {
    std::lock_guard lk(s->mu);
    left.swap(s->spares);
  }
  for (worker* w : left) {
    w->thread.join();
    std::lock_guard lk(s->mu);
    s->free_spare_ps.push_back(w->p);
    delete w;
  }
}

}  // namespace goro::detail
