// src/time/timer.cpp — per-P timer heaps and their scheduler hooks (see
// timer.hpp for the design).
#include "time/timer.hpp"

#include <mutex>
#include <shared_mutex>

#include "sched/futex.hpp"
#include "sched/sched.hpp"

namespace goro::detail {

namespace {

// ---- the 4-ary heap (Go uses 4-ary too: shallower, and siblings share
// cache lines) --------------------------------------------------------------

constexpr std::size_t kArity = 4;
// Due timers taken out of a heap per lock acquisition.
constexpr std::size_t kFireBatch = 64;

using slots = std::vector<timer_slot>;

void heap_set(slots& h, std::size_t i, timer_slot e) {
  h[i] = e;
  if (!e.is_sleeper()) e.node()->idx = static_cast<std::int32_t>(i);
}

// Returns where the slot ends up.
std::size_t sift_up(slots& h, std::size_t i) {
  timer_slot e = h[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / kArity;
    if (h[parent].when <= e.when) break;
    heap_set(h, i, h[parent]);
    i = parent;
  }
  heap_set(h, i, e);
  return i;
}

void sift_down(slots& h, std::size_t i) {
  timer_slot e = h[i];
  const std::size_t size = h.size();
  for (;;) {
    std::size_t c = i * kArity + 1;
    if (c >= size) break;
    std::size_t best = c;
    const std::size_t end = std::min(c + kArity, size);
    for (std::size_t k = c + 1; k < end; ++k) {
      if (h[k].when < h[best].when) best = k;
    }
    if (h[best].when >= e.when) break;
    heap_set(h, i, h[best]);
    i = best;
  }
  heap_set(h, i, e);
}

void publish_first(timer_heap& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t.mu) {
  t.first.store(t.h.empty() ? kNoTimer : t.h[0].when, std::memory_order_release);
}

void heap_remove_at(timer_heap& t, std::size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t.mu) {
  auto& h = t.h;
  const timer_slot gone = h[i];
  timer_slot last = h.back();
  h.pop_back();
  if (i < h.size()) {
    heap_set(h, i, last);
    if (i > 0 && h[(i - 1) / kArity].when > last.when) {
      sift_up(h, i);
    } else {
      sift_down(h, i);
    }
  }
  if (gone.is_sleeper()) return;  // its node stays untouched (see timer_slot)
  gone.node()->idx = -1;
  // Release: whoever sees it out of the heap (timer_del) may rewrite `when`.
  gone.node()->owner.store(nullptr, std::memory_order_release);
}

// Inserts; true if `n` became the earliest.
bool heap_push(processor* p, timer_node* n) {
  timer_heap& t = p->timers;
  std::lock_guard lk(t.mu);
  t.h.push_back(n->wake != nullptr ? timer_slot::of_sleeper(n->when, n->wake)
                                   : timer_slot::of_node(n->when, n));
  n->owner.store(p, std::memory_order_relaxed);
  if (sift_up(t.h, t.h.size() - 1) != 0) return false;
  publish_first(t);
  return true;
}

struct due {
  timer_node* n;
  std::uint64_t seq;
  timer_ref ref;  // read before the fire: a stack node may be gone after it
};

// What take_due took out of a heap: timers to fire and sleepers to ready.
struct due_batch {
  due nodes[kFireBatch];
  fiber* sleepers[kFireBatch];
  std::size_t nnodes = 0, nsleepers = 0;
};

// Takes up to kFireBatch due timers of `p` out of its heap (or re-arms a
// periodic one), each with the seq it was taken at. Returns how many.
std::size_t take_due(processor* p, nanos now, due_batch& b) {
  timer_heap& t = p->timers;
  b.nnodes = b.nsleepers = 0;
  std::lock_guard lk(t.mu);
  std::size_t k = 0;
  for (; k < kFireBatch && !t.h.empty() && t.h[0].when <= now; ++k) {
    if (t.h[0].is_sleeper()) {
      b.sleepers[b.nsleepers++] = t.h[0].sleeper();
      heap_remove_at(t, 0);
      continue;
    }
    timer_node* n = t.h[0].node();
    const std::uint64_t seq = n->seq.load(std::memory_order_relaxed);
    n->inflight.store(seq, std::memory_order_relaxed);
    b.nodes[b.nnodes++] = due{n, seq, n->ref};
    if (n->period > 0) {
      // A ticker: next tick after `now`, dropping the ones a slow program
      // missed (as Go does), and keep the heap's reference.
      const nanos missed = (now - n->when) / n->period;
      n->when = deadline_after(n->when, (missed + 1) * n->period);
      t.h[0].when = n->when;
      sift_down(t.h, 0);
      if (n->ref != nullptr) n->ref(n, +1);  // the runner's reference
    } else {
      heap_remove_at(t, 0);  // the heap's reference passes to the runner
    }
  }
  if (k > 0) publish_first(t);
  return k;
}

bool run_timers(processor* p, nanos now) {
  bool any = false;
  due_batch b;
  while (std::size_t k = take_due(p, now, b)) {
    any = true;
    ready_many(b.sleepers, b.nsleepers);
    for (std::size_t i = 0; i < b.nnodes; ++i) {
      timer_node* n = b.nodes[i].n;
      n->fire(n, b.nodes[i].seq, now);
      if (b.nodes[i].ref != nullptr) b.nodes[i].ref(n, -1);
    }
    if (k < kFireBatch) break;
  }
  return any;
}

}  // namespace

void timer_add(timer_node* n, nanos when) {
  n->when = when;
  if (n->ref != nullptr) n->ref(n, +1);  // the heap's reference
  sched* s = nullptr;
  bool first = false;
  if (worker* w = current_worker()) {
    s = w->s;
    first = heap_push(w->p, n);
  } else {
    std::shared_lock gate(g_gate);
    s = g_sched.load(std::memory_order_acquire);
    if (s == nullptr) {
      if (n->ref != nullptr) n->ref(n, -1);
      throw runtime_error("goro: timers need a running runtime (call inside goro::run)");
    }
    first = heap_push(s->ps[0], n);
    if (first) timer_wake(s, when);
    return;
  }
  if (first) timer_wake(s, when);
}

bool timer_del(timer_node* n) {
  for (;;) {
    processor* p = n->owner.load(std::memory_order_acquire);
    if (p == nullptr) return false;
    timer_heap& t = p->timers;
    std::lock_guard lk(t.mu);
    if (n->owner.load(std::memory_order_relaxed) != p) continue;  // moved or fired meanwhile
    std::size_t i = static_cast<std::size_t>(n->idx);
    if (n->wake != nullptr) {
      // A sleeper's position is not kept, nor is `owner` cleared when it
      // fires (see timer_slot): only unwinding deletes one, so a scan is fine.
      const timer_slot mine = timer_slot::of_sleeper(0, n->wake);
      i = 0;
      while (i < t.h.size() && t.h[i].bits != mine.bits) ++i;
      // heap_remove_at leaves a sleeper's node alone: clear its owner here.
      n->owner.store(nullptr, std::memory_order_relaxed);
      if (i == t.h.size()) return false;
    }
    heap_remove_at(t, i);
    publish_first(t);
    if (n->ref != nullptr) n->ref(n, -1);  // the heap's reference (never the last: caller has one)
    return true;
  }
}

bool run_all_timers(sched* s) {
  nanos now = 0;
  bool any = false;
  for (processor* p : s->ps) {
    nanos f = p->timers.first.load(std::memory_order_acquire);
    if (f == kNoTimer) continue;
    if (now == 0) now = mono_now();
    if (f > now) continue;
    any |= run_timers(p, now);
  }
  return any;
}

nanos next_timer(sched* s) {
  nanos best = kNoTimer;
  for (processor* p : s->ps) {
    nanos f = p->timers.first.load(std::memory_order_acquire);
    if (f < best) best = f;
  }
  return best;
}

void timer_wake(sched* s, nanos when) {
  full_fence();
  if (s->npidle.load() == 0) return;  // every worker is busy: they poll at switches
  if (when >= s->timed_deadline.load()) return;
  worker* m = nullptr;
  {
    std::lock_guard lk(s->mu);
    m = s->timed_sleeper;
    if (m != nullptr) m->wake.store(1, std::memory_order_release);
  }
  if (m != nullptr) {
    wake_worker(m);
  } else {
    wakep(s);  // an idle worker that will take the timed-sleeper role
  }
}

void clear_timers(sched* s) {
  for (processor* p : s->ps) {
    std::vector<timer_slot> gone;
    {
      std::lock_guard lk(p->timers.mu);
      gone.swap(p->timers.h);
      p->timers.first.store(kNoTimer);
      for (timer_slot& e : gone) {
        if (e.is_sleeper()) continue;  // its fiber's timer_del finds it gone
        e.node()->idx = -1;
        e.node()->owner.store(nullptr, std::memory_order_relaxed);
      }
    }
    for (timer_slot& e : gone) {
      if (!e.is_sleeper() && e.node()->ref != nullptr) e.node()->ref(e.node(), -1);
    }
  }
}

}  // namespace goro::detail
