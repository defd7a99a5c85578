// src/context/context.cpp — the context tree (see goro/context.hpp).
//
// Two structures:
//   * ctx_node: the immutable chain a context handle points to. Each node
//     holds its parent (so values and ancestors live as long as a
//     descendant), the nearest cancellable state (its own or inherited), the
//     effective deadline, and for value nodes a key and value.
//   * cancel_state: the mutable part of a cancellable context: its done
//     channel, error, live children and deadline timer. A parent's state holds
//     its children's states strongly (Go's children map); a child's state
//     points back weakly, so there is no cycle and an uncancelled tree is
//     freed with its last handle.
// Cancelling takes a state's lock only to mark it and move out its children,
// then closes its done channel and cancels the children, iteratively (a deep
// chain cannot overflow a fiber stack) and never holding two state locks, so
// a parent and a child cancelled at the same time cannot deadlock.
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "context/hook.hpp"
#include "goro/context.hpp"
#include "goro/detail/spinlock.hpp"
#include "time/timer.hpp"

namespace goro::detail {

struct cancel_state {
  spinlock mu;
  std::atomic<bool> cancelled{false};
  absl::Status err ABSL_GUARDED_BY(mu);
  absl::Status cause ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<cancel_state*, std::shared_ptr<cancel_state>> children ABSL_GUARDED_BY(mu);
  std::weak_ptr<cancel_state> parent;  // set once, before the state is shared
  timer deadline_timer ABSL_GUARDED_BY(mu);
  ctx_hook* hooks ABSL_GUARDED_BY(mu) = nullptr;  // see context/hook.hpp
  const chan<void> done = make_chan<void>();

  ~cancel_state() {
    // A context dropped before its deadline: free the heap slot now.
    deadline_timer.stop();
  }
};

struct ctx_node {
  std::shared_ptr<const ctx_node> parent;
  std::shared_ptr<cancel_state> cancel;  // nearest cancellable, or null
  std::optional<nanos> deadline;         // effective (the earliest up the chain)
  const void* key = nullptr;             // value nodes
  std::shared_ptr<const void> value;
};

namespace {

absl::Status canceled_error() { return absl::CancelledError("context canceled"); }
absl::Status deadline_error() { return absl::DeadlineExceededError("context deadline exceeded"); }

// Cancels `st` and its subtree with `err`/`cause`; if `detach`, removes `st`
// from its parent's children. Idempotent.
void cancel(const std::shared_ptr<cancel_state>& st, const absl::Status& err,
            const absl::Status& cause, bool detach) {
  std::vector<std::shared_ptr<cancel_state>> work{st};
  while (!work.empty()) {
    std::shared_ptr<cancel_state> c = std::move(work.back());
    work.pop_back();
    absl::flat_hash_map<cancel_state*, std::shared_ptr<cancel_state>> children;
    timer t;
    ctx_hook* hooks = nullptr;
    {
      std::lock_guard lk(c->mu);
      if (c->cancelled.load(std::memory_order_relaxed)) continue;
      c->err = err;
      c->cause = cause;
      c->cancelled.store(true, std::memory_order_release);
      children.swap(c->children);
      t = std::move(c->deadline_timer);
      hooks = c->hooks;
      c->hooks = nullptr;
      for (ctx_hook* h = hooks; h != nullptr; h = h->next) h->linked = false;
    }
    c->done.close();  // after err is set: whoever sees done closed sees err
    while (hooks != nullptr) {
      ctx_hook* next = hooks->next;  // before `ran`: the hook may vanish after it
      hooks->fn(hooks);
      hooks->ran.store(true, std::memory_order_release);
      hooks = next;
    }
    t.stop();
    for (auto& [raw, child] : children) work.push_back(std::move(child));
  }
  if (detach) {
    if (std::shared_ptr<cancel_state> p = st->parent.lock()) {
      std::lock_guard lk(p->mu);
      p->children.erase(st.get());
    }
  }
}

// A new cancellable node under `parent`, linked into the parent's nearest
// cancellable state (or cancelled at once if that has ended).
std::shared_ptr<ctx_node> new_cancel_node(const std::shared_ptr<const ctx_node>& pn) {
  auto st = std::make_shared<cancel_state>();
  auto n = std::make_shared<ctx_node>();
  n->parent = pn;
  n->cancel = st;
  if (pn != nullptr) n->deadline = pn->deadline;
  std::shared_ptr<cancel_state> up = pn != nullptr ? pn->cancel : nullptr;
  if (up != nullptr) {
    st->parent = up;
    absl::Status err, cause;
    {
      std::lock_guard lk(up->mu);
      if (!up->cancelled.load(std::memory_order_relaxed)) {
        up->children.emplace(st.get(), st);
        return n;
      }
      err = up->err;
      cause = up->cause;
    }
    cancel(st, err, cause, /*detach=*/false);
  }
  return n;
}

cancel_func make_cancel(std::shared_ptr<cancel_state> st) {
  return [st = std::move(st)] { cancel(st, canceled_error(), canceled_error(), true); };
}

}  // namespace

// Tests: how many live children a context's cancellable state has.
std::size_t context_children(const context& ctx);

}  // namespace goro::detail

namespace goro {

struct context_access {
  static const std::shared_ptr<const detail::ctx_node>& node(const context& c) { return c.n_; }
  static context make(std::shared_ptr<const detail::ctx_node> n) { return context(std::move(n)); }
};

namespace detail {

hook_result hook_register(const context& ctx, ctx_hook* h) {
  const std::shared_ptr<const ctx_node>& n = goro::context_access::node(ctx);
  if (n == nullptr || n->cancel == nullptr) return hook_result::never;
  cancel_state* st = n->cancel.get();
  std::lock_guard lk(st->mu);
  if (st->cancelled.load(std::memory_order_relaxed)) return hook_result::ended;
  h->st = n->cancel;
  h->prev = nullptr;
  h->next = st->hooks;
  if (st->hooks != nullptr) st->hooks->prev = h;
  st->hooks = h;
  h->linked = true;
  return hook_result::registered;
}

void hook_unregister(ctx_hook* h) {
  cancel_state* st = h->st.get();
  bool taken = false;
  {
    std::lock_guard lk(st->mu);
    if (h->linked) {
      if (h->prev != nullptr) {
        h->prev->next = h->next;
      } else {
        st->hooks = h->next;
      }
      if (h->next != nullptr) h->next->prev = h->prev;
      h->linked = false;
    } else {
      taken = true;
    }
  }
  // Taken by a cancellation: its fn is short (a queue removal and a wake).
  for (int spins = 0; taken && !h->ran.load(std::memory_order_acquire); ++spins) {
    if (spins < 1000) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  h->st.reset();
}

}  // namespace detail

chan<void> context::done() const {
  return n_ != nullptr && n_->cancel != nullptr ? n_->cancel->done : chan<void>{};
}

namespace {
// OK while live; then the status `field` of the nearest cancellable state.
absl::Status ended_status(const detail::ctx_node* n, absl::Status detail::cancel_state::*field) {
  if (n == nullptr || n->cancel == nullptr) return absl::OkStatus();
  detail::cancel_state* st = n->cancel.get();
  if (!st->cancelled.load(std::memory_order_acquire)) return absl::OkStatus();
  std::lock_guard lk(st->mu);
  return st->*field;
}
}  // namespace

absl::Status context::err() const { return ended_status(n_.get(), &detail::cancel_state::err); }

absl::Status context::cause() const { return ended_status(n_.get(), &detail::cancel_state::cause); }

std::optional<clock::time_point> context::deadline() const {
  if (n_ == nullptr || !n_->deadline) return std::nullopt;
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds(*n_->deadline)));
}

const void* context::find_value(const void* key) const {
  for (const detail::ctx_node* n = n_.get(); n != nullptr; n = n->parent.get()) {
    if (n->key == key) return n->value.get();
  }
  return nullptr;
}

std::pair<context, cancel_func> with_cancel(const context& parent) {
  auto n = detail::new_cancel_node(context_access::node(parent));
  std::shared_ptr<detail::cancel_state> st = n->cancel;
  return {context_access::make(std::move(n)), detail::make_cancel(std::move(st))};
}

std::pair<context, cancel_cause_func> with_cancel_cause(const context& parent) {
  auto n = detail::new_cancel_node(context_access::node(parent));
  std::shared_ptr<detail::cancel_state> st = n->cancel;
  cancel_cause_func f = [st](absl::Status cause) {
    absl::Status err = detail::canceled_error();
    detail::cancel(st, err, cause.ok() ? err : cause, true);
  };
  return {context_access::make(std::move(n)), std::move(f)};
}

std::pair<context, cancel_func> with_deadline(const context& parent, clock::time_point deadline) {
  using namespace detail;
  const nanos when =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  const auto& pn = context_access::node(parent);
  if (pn != nullptr && pn->deadline && *pn->deadline <= when) {
    return with_cancel(parent);  // the parent's deadline comes first (as Go)
  }
  auto n = new_cancel_node(pn);
  n->deadline = when;
  std::shared_ptr<cancel_state> st = n->cancel;
  if (when <= mono_now()) {
    cancel(st, deadline_error(), deadline_error(), true);
  } else {
    std::weak_ptr<cancel_state> weak = st;
    timer t = make_call_timer(when, [weak] {
      if (std::shared_ptr<cancel_state> s = weak.lock()) {
        cancel(s, deadline_error(), deadline_error(), true);
      }
    });
    std::lock_guard lk(st->mu);
    if (st->cancelled.load(std::memory_order_relaxed)) {
      t.stop();  // the parent ended meanwhile
    } else {
      st->deadline_timer = std::move(t);
    }
  }
  return {context_access::make(std::move(n)), make_cancel(std::move(st))};
}

std::pair<context, cancel_func> with_timeout(const context& parent, clock::duration timeout) {
  using namespace detail;
  const nanos d = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  const nanos when = deadline_after(mono_now(), d);
  return with_deadline(parent, clock::time_point(std::chrono::duration_cast<clock::duration>(
                                   std::chrono::nanoseconds(when))));
}

context detail::with_value_impl(const context& parent, const void* key,
                                std::shared_ptr<const void> v) {
  const auto& pn = context_access::node(parent);
  auto n = std::make_shared<ctx_node>();
  n->parent = pn;
  if (pn != nullptr) {
    n->cancel = pn->cancel;
    n->deadline = pn->deadline;
  }
  n->key = key;
  n->value = std::move(v);
  return context_access::make(std::move(n));
}

std::size_t detail::context_children(const context& ctx) {
  const auto& n = context_access::node(ctx);
  if (n == nullptr || n->cancel == nullptr) return 0;
  std::lock_guard lk(n->cancel->mu);
  return n->cancel->children.size();
}

absl::Status sleep_until(const context& ctx, clock::time_point t) {
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  if (t <= clock::now()) return absl::OkStatus();
  chan<void> done = ctx.done();
  if (!done) {
    sleep_until(t);
    return absl::OkStatus();
  }
  timer tm(t - clock::now());
  if (select(on_recv(tm.c()), on_recv(done)) == 0) return absl::OkStatus();
  tm.stop();
  return ctx.err();
}

absl::Status sleep_for(const context& ctx, clock::duration d) {
  if (d <= clock::duration::zero()) return ctx.err();
  return sleep_until(ctx, clock::now() + d);
}

}  // namespace goro
