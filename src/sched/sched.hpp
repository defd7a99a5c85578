// src/sched/sched.hpp — the runtime's core records: fiber (G), processor (P),
// worker (M), and the scheduler state they share.
//
// Concepts (Go's names in brackets; HACKING.md has the long version):
//  * fiber [G]: a stackful coroutine. Its stack is attached on first run.
//  * processor [P]: the right to run fibers; owns a local run queue, a
//    `runnext` slot, and caches (stacks, fiber records, ids). maxprocs of them.
//  * worker [M]: an OS thread. Its native stack is the scheduler context
//    ("g0"): the loop that finds work, steals, spins and sleeps. Each worker
//    holds one P for its whole life. A worker stuck in a blocking call keeps
//    it; sysmon (sysmon.cpp) starts a spare worker with a spare P meanwhile,
//    where Go would hand the stuck M's P to another M (handoffp).
//
// Switching is direct: fiber A switches straight to the next runnable fiber B
// when its P has one (one jump); only when none is at hand does it switch to
// its worker's g0. Whatever must happen to A after it is off its stack
// (requeue it, mark it parked and release the waker's lock, free it) is
// recorded in worker::sw and done by B (or g0) as the first thing after the
// jump: after_switch(). This is Go's gopark "unlockf" run on the next stack.
//
// Fiber state machine (fiber::state, changed only by set_state(), which
// asserts the old state):
//   runnable --(a worker picks it)--> running
//   running  --(yield: requeued after the switch)--> runnable
//   running  --(park: after the switch, before the unlock callback)--> parked
//   parked   --(ready())--> runnable
//   running  --(function returned)--> dead   (record recycled after the switch)
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <iosfwd>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "fiber/sanitizer.hpp"
#include "fiber/stack.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/task.hpp"
#include "goro/runtime.hpp"
#include "sched/runq.hpp"
#include "time/timer.hpp"

namespace goro::detail {

namespace bctx = boost::context::detail;

enum class fiber_state : std::uint8_t {
  runnable,  // in a run queue, a runnext slot, or just spawned
  running,   // executing on a worker
  parked,    // blocked in a goro call; only ready() moves it on
  dead,      // its function has returned
};
const char* to_string(fiber_state s);

struct local_storage;  // fiber_local values (fiber_local.cpp)
struct processor;

struct fiber {
  // Saved context while not running; null until the first run. Written by
  // after_switch() on the context that took over, read by whoever resumes the
  // fiber; the run-queue publication (release/acquire) orders the two.
  bctx::fcontext_t ctx = nullptr;
  // stk.top() while a stack is attached, else null: read by a P prefetching
  // the stacks of queued fibers, racily like ctx (see set_ctx).
  std::atomic<const char*> stack_top{nullptr};
  stack stk;             // attached at first run, released at death
  std::uint64_t id = 0;  // 1 is the main fiber
  std::atomic<fiber_state> state{fiber_state::runnable};
  bool unwinding = false;      // set at shutdown: the next switch-back throws
  bool unwind_thrown = false;  // the unwind exception was thrown once already
  bool is_main = false;
  task fn;                     // cleared when the fiber starts running it
  processor* reg_p = nullptr;  // whose registry holds it (started fibers only)
  fiber* reg_prev = nullptr;   // registry links; guarded by reg_p->reg_mu
  fiber* reg_next = nullptr;
  void* asan_fake_stack = nullptr;  // ASan bookkeeping across switches
  void* tsan = nullptr;             // TSan fiber handle, created at first run
  local_storage* locals = nullptr;  // fiber_local values; owned
  // For dumps, the deadlock report and the debugger (tools/goro-gdb.py):
  // Atomics (relaxed: plain stores on x86) because the monitor and dumps read
  // them while the fiber parks and resumes.
  std::atomic<const char*> wait_reason{nullptr};  // what it is parked on
  std::atomic<const void*> wait_obj{nullptr};     // the object waited on (a channel...), if any
  std::atomic<nanos> wait_since{0};               // sched::clock when it parked
  std::source_location spawned_at;  // where go() was called (empty for the main fiber)
};

void set_state(fiber* f, fiber_state from, fiber_state to);

// Writes f->ctx. Atomic (relaxed: a plain store) because a P prefetching the
// stacks of its queued fibers reads the ctx of one that a thief may be
// running (sched.cpp, prefetch_queued); every other read is ordered after
// the write by the run queue or the registry.
inline void set_ctx(fiber* f, bctx::fcontext_t c) {
  std::atomic_ref<bctx::fcontext_t>(f->ctx).store(c, std::memory_order_relaxed);
}

struct processor {
  explicit processor(int id, stack_pool* pool) : id(id), stacks(pool) {}

  const int id;
  runq q;                                   // see runq.hpp
  std::atomic<fiber*> runnext{nullptr};     // owner sets; owner and thieves take
  std::atomic<std::uint32_t> schedtick{0};  // owner writes, sysmon and thieves read: schedules
  std::atomic<std::uint32_t> yields{0};     // owner writes, thieves read: yields so far
  bool migrate = false;                     // sched::migrate_always, at hand for runq_put
  std::uint32_t runnext_streak = 0;         // owner only: consecutive runnext picks
  stack_cache stacks;                       // owner only
  std::vector<fiber*> free_fibers;          // owner only: recycled records
  std::uint64_t next_id = 0, end_id = 0;    // owner only: [next_id, end_id) reserved ids

  // Fibers spawned minus fibers finished on this P (may be negative: a fiber
  // often ends on another P). Owner writes; anyone reads; sum = num_fibers.
  std::atomic<std::int64_t> live{0};

  // Registry of started fibers whose first run was on this P. Unstarted
  // fibers are only in run queues, where the unwinder finds them at exit.
  // Mostly touched by the owner (a short fiber starts and ends on one P), so
  // the lock is rarely contended. A spinlock: see goro/detail/spinlock.hpp.
  spinlock reg_mu;
  fiber* reg_head ABSL_GUARDED_BY(reg_mu) = nullptr;

  timer_heap timers;  // see time/timer.hpp
};

// What the context that takes over must do with the fiber that switched away.
enum class after : std::uint8_t {
  nothing,  // came from g0, or the fiber was already dealt with
  requeue,  // yield: put it back on the local run queue
  park,     // park: mark parked, then run the unlock callback
  release,  // it died: recycle its stack and record
};

using park_callback = bool (*)(void* arg);  // false: don't park after all

struct switch_record {
  fiber* from = nullptr;  // null: g0
  after action = after::nothing;
  park_callback unlock = nullptr;
  void* unlock_arg = nullptr;
};

struct sched;

// Where fiber records come from: mappings of kChunkBytes, carved into
// records a batch at a time and never returned one by one (records are
// recycled through the free lists, see alloc_fiber) until the runtime ends.
// Not malloc: growing a malloc arena by ~1 MiB calls mprotect() or brk()
// every 128 KiB, each taking the process's mmap lock for writing, and a
// spawning loop then queues behind the other workers committing the top
// pages of new stacks under the same lock (process_madvise holds it for
// reading): the first 100,000 spawns ran 10x slower than the next. One
// mmap() per chunk takes it once per ~4,600 records.
class fiber_arena {
 public:
  fiber_arena() = default;
  ~fiber_arena();  // unmaps every chunk; the records must be destroyed already
  fiber_arena(const fiber_arena&) = delete;
  fiber_arena& operator=(const fiber_arena&) = delete;

  // Constructs up to `n` (at least one) fresh records and appends them to
  // `out`. Throws std::bad_alloc if the kernel refuses memory.
  void carve(std::vector<fiber*>& out, std::size_t n);

  static constexpr std::size_t kChunkBytes = std::size_t{1} << 20;

 private:
  std::mutex mu_;
  char* next_ ABSL_GUARDED_BY(mu_) = nullptr;  // the first uncarved byte of the last chunk
  char* end_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<void*> chunks_ ABSL_GUARDED_BY(mu_);
};

struct worker {
  sched* s = nullptr;
  processor* p = nullptr;
  std::thread thread;                        // not joinable for the run() caller's worker
  bctx::fcontext_t g0 = nullptr;             // scheduler context while a fiber runs
  fiber* current = nullptr;                  // running fiber; null while in g0
  switch_record sw;                          // written before a jump, consumed after it
  fiber* handoff = nullptr;                  // owner only: the fiber g0 must run next
  bool spinning = false;                     // guarded by sched::mu while idle, else owner
  bool on_idle_list = false;                 // guarded by sched::mu
  std::atomic<std::uint32_t> wake{0};        // futex word: 1 = woken (by wakep/stop)
  std::atomic<bool> polling{false};          // blocked in epoll_wait rather than on `wake`
  std::uint32_t poll_ticks = 0;              // owner only: switches, to pace busy netpolls
  std::atomic<std::uint64_t> running_id{0};  // id of the fiber it runs, 0 in g0 (sysmon)
  bool spare = false;                        // started by sysmon; exits when not needed
  std::atomic<bool> exited{false};           // a spare's worker_main has returned
  std::atomic<int> tid{0};                   // kernel thread id (sysmon reads its state)
  std::uint64_t rng = 0;                     // owner only: xorshift state for stealing
  std::uint32_t timer_polls = 0;             // owner only: switches, to pace timer checks
  const void* g0_stack_lo = nullptr;         // for ASan's switch annotations
  std::size_t g0_stack_size = 0;
  void* g0_tsan = nullptr;
  void* g0_asan_fake_stack = nullptr;
  void* altstack = nullptr;  // sigaltstack for the overflow handler
};

// Scheduler-wide state. One instance lives while run() is active.
struct sched {
  explicit sched(const options& o);

  const int nprocs;
  stack_pool stacks;
  std::vector<processor*> ps;
  std::vector<worker*> ws;

  std::mutex mu;  // the scheduler lock: global queue, idle list, free pools
  // The global run queue (FIFO). A deque of pointers, not a list through the
  // fibers: moving a batch in or out is a copy of contiguous pointers, with
  // no cache miss per fiber while the lock is held.
  std::deque<fiber*> gq ABSL_GUARDED_BY(mu);
  std::atomic<std::int64_t> gq_size{0};    // written under mu; read racily as a hint
  std::atomic<std::uint64_t> gq_taken{0};  // fibers taken from gq so far (under mu; sysmon reads)
  std::vector<worker*> idle ABSL_GUARDED_BY(mu);        // sleeping workers (LIFO)
  std::vector<fiber*> free_fibers ABSL_GUARDED_BY(mu);  // spilled fiber records
  fiber_arena fiber_mem;  // where records come from when no free list has one

  // Go's counters for the spinning protocol (proc.go "Worker thread parking/
  // unparking"): a worker that submits work wakes an idle one only if none is
  // spinning. seq_cst with the fence in ready()/idle recheck (Dekker).
  std::atomic<int> npidle{0};
  std::atomic<int> nmspinning{0};

  // The idle worker that sleeps until the next timer (time/timer.hpp), and
  // that deadline (kNoTimer while there is none or it sleeps indefinitely).
  worker* timed_sleeper ABSL_GUARDED_BY(mu) = nullptr;
  std::atomic<nanos> timed_deadline{kNoTimer};

  std::atomic<bool> stopping{false};           // main returned: workers exit
  std::atomic<std::int64_t> external_live{0};  // fibers spawned by OS threads
  std::atomic<std::uint64_t> ids{1};           // next unreserved fiber id

  // The monitor (sysmon.cpp) and the spare workers it starts. ps holds
  // nprocs regular Ps and then the spare ones; ps_used bounds the Ps that
  // may hold runnable fibers (regular + spares ever handed out).
  const bool report_blocked;
  std::thread sysmon;
  std::mutex sysmon_mu;
  std::condition_variable sysmon_cv;
  std::vector<worker*> spares ABSL_GUARDED_BY(mu);
  std::vector<processor*> free_spare_ps ABSL_GUARDED_BY(mu);
  std::atomic<int> ps_used{0};
  std::atomic<int> nstuck{0};  // workers sysmon saw stuck at its last tick

  // Diagnostics (diag.cpp).
  const deadlock_action on_deadlock;
  const bool report_leaks;
  const bool dump_on_sigquit;
  const bool migrate_always;  // options::migrate_always or GORO_DEBUG=migrate
  fiber* main_fiber = nullptr;
  // mono_now() as of the monitor's last tick (1-10 ms old): what a parking
  // fiber records as the time it parked, for a load instead of a clock read
  // on every park. Its own cache line: written every tick, read at parks.
  alignas(64) std::atomic<nanos> clock{0};
  char clock_pad[64 - sizeof(std::atomic<nanos>)];
  int stat_fd = -1;  // /proc/self/stat, open for the whole run (diag.cpp)

  std::exception_ptr main_exception;        // written by the main fiber
  std::atomic<std::uint32_t> main_done{0};  // futex word for run()'s caller
};

// Threads the runtime owns while they live (workers, spares, sysmon, the
// goro::blocking pool, run()'s caller while it waits), and plain OS threads
// asleep in a goro wait. The deadlock detector counts every other thread of
// the process as one that may still wake a fiber.
inline std::atomic<int> g_runtime_threads{0};
inline std::atomic<int> g_threads_parked{0};
// Counts the calling thread in one of them for the lifetime of the scope.
class thread_count_scope {
 public:
  explicit thread_count_scope(std::atomic<int>& n) : n_(n) {
    n_.fetch_add(1, std::memory_order_relaxed);
  }
  ~thread_count_scope() { n_.fetch_sub(1, std::memory_order_relaxed); }
  thread_count_scope(const thread_count_scope&) = delete;
  thread_count_scope& operator=(const thread_count_scope&) = delete;

 private:
  std::atomic<int>& n_;
};

// Diagnostics (diag.cpp). Each sysmon tick: looks for a deadlock and acts on
// it, and prints a dump if SIGQUIT asked for one.
struct deadlock_watch {
  bool candidate = false;
  std::uint64_t progress = 0;
  nanos since = 0;
  bool reported = false;
};
void diag_tick(sched* s, deadlock_watch& dw, nanos now);
void install_sigquit(sched* s);
void uninstall_sigquit(sched* s);
// The main fiber returned: prints the leak report if asked for.
void report_leaks_at_exit(sched* s);
// "spawned at F:L in FN", "started by goro::run" (the main fiber) or "spawn
// site not recorded" for `f`; describe_spawn looks the started fiber with
// this id up in the registries first.
std::string spawn_site(const fiber* f);
std::string describe_spawn(sched* s, std::uint64_t id);
// Writes the dump of every fiber; with `backtraces`, each parked fiber's
// stack too (only when no fiber can run: see diag.cpp).
void dump_fibers(sched* s, std::ostream& os, bool backtraces = false);

// A full barrier between a store and a following load on another variable
// (Dekker). TSan does not model std::atomic_thread_fence, so under TSan an
// RMW on one shared atomic provides the same total order.
#ifdef GORO_TSAN
inline std::atomic<int> g_fence_word{0};
inline void full_fence() { g_fence_word.fetch_add(0, std::memory_order_seq_cst); }
#else
inline void full_fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
#endif

// The running scheduler, or null. Set by run() before workers start.
extern std::atomic<sched*> g_sched;
// Plain OS threads hold it shared while they hand work to the runtime.
extern std::shared_mutex g_gate;

// The calling thread's worker, or null on a plain OS thread. Never inlined
// and never cached across a switch: a fiber may resume on another thread.
worker* current_worker() noexcept;
void set_current_worker(worker* w) noexcept;

// The calling fiber, or null on a plain OS thread or in g0.
fiber* current_fiber() noexcept;

// ---- the park/ready protocol (used by every blocking primitive) ----------

// Parks the calling fiber. Once it is off its stack and marked parked,
// `unlock(arg)` runs on the next context; it typically releases the lock that
// made the fiber visible to wakers. If it returns false the fiber is made
// runnable again at once. Returns when someone calls ready(fiber). Throws the
// runtime's unwind exception if the runtime is shutting down.
void park(park_callback unlock, void* arg, const char* reason, const void* obj = nullptr);

// Makes a parked fiber runnable (on the caller's P's runnext slot when the
// caller is a fiber, else on the global queue) and wakes an idle worker if
// needed. Each park is matched by exactly one ready.
void ready(fiber* f);
// ready() for a batch (a close or a broadcast waking many): into the local
// run queue while it has room, the rest onto the global queue under one lock,
// and one wake-up check.
// `global`: straight to the global queue, for a caller that goes on running
// long after (a close() waking thousands): fibers left in its own P's queue
// would wait for it, or for sysmon to hand the queue on.
void ready_many(fiber* const* fs, std::size_t n, bool global = false);

// The scheduling entry points used by the fiber layer.
void yield_fiber();
[[noreturn]] void exit_fiber();
void after_switch(bctx::transfer_t t);
bctx::transfer_t jump_to(worker* w, fiber* from, fiber* to, bool from_dying);
void fiber_entry(bctx::transfer_t t);
void release_fiber(worker* w, fiber* f);

// Scheduler internals shared by fiber.cpp and runtime.cpp (sched.cpp).
fiber* find_local(worker* w);
fiber* find_runnable(worker* w);  // blocks; null when the runtime stops
void runq_put(processor* p, fiber* f, bool next);
void wakep_if_needed(sched* s);
void wakep(sched* s);  // wakes an idle worker unless one is spinning
// Sets m->wake and gets m out of its futex sleep or its epoll_wait.
void wake_worker(worker* m);
// The netpoller was just created: a timed sleeper that chose its futex before
// there was anything to poll must come back and block in epoll_wait instead.
void wake_timed_sleeper_for_netpoll();
void stop_workers(sched* s);
void worker_main(worker* w);
void sysmon_main(sched* s);
void sysmon_stop(sched* s);  // after stop_workers: joins the monitor and spares
void registry_add(processor* p, fiber* f);
void registry_remove(fiber* f);
std::int64_t live_fibers(sched* s);
inline void add_live(processor* p, std::int64_t d) {
  p->live.store(p->live.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}
fiber* alloc_fiber(sched* s, processor* p);
void free_fiber(sched* s, processor* p, fiber* f);

// Thrown from park()/yield() into fibers unwound at shutdown. Not derived from
// std::exception, so `catch (const std::exception&)` lets it through.
struct forced_unwind {};
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace goro::detail
