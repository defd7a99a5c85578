// src/sched/diag.cpp — diagnostics: the fiber dump, deadlock detection, the
// leak report and check, SIGQUIT dumps, GORO_DEBUG.
//
// Deadlock detection runs on the monitor thread (sysmon.cpp), never on the
// scheduling paths: each tick it first reads a few counters (idle Ps, queue
// sizes, the next timer, socket waiters), and only when all say "asleep"
// walks the fiber registries and counts the process's threads. A deadlock
// must also hold still: the same state, with no scheduling event anywhere
// (the sum of every P's schedtick and the global queue's taken count), for
// kDeadlockAfter. The rule, and why plain OS threads are safe, is in
// goro/runtime.hpp (options::on_deadlock).
#include <cxxabi.h>
#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#if defined(GORO_HAVE_ABSL_SYMBOLIZE)
#include "absl/debugging/symbolize.h"
#endif
#include "absl/strings/str_format.h"
#include "goro/dump.hpp"
#include "goro/time.hpp"
#include "net/netpoll.hpp"
#include "sched/sched.hpp"

namespace goro::detail {
namespace {

constexpr nanos kDeadlockAfter = 20'000'000;  // 20 ms without a single event

std::string format_for(nanos d) {
  if (d < 1'000'000) return "<1 ms";
  if (d < 10'000'000'000) return absl::StrFormat("%d ms", d / 1'000'000);
  if (d < 120'000'000'000) return absl::StrFormat("%d s", d / 1'000'000'000);
  return absl::StrFormat("%d minutes", d / 60'000'000'000);
}

// Threads in this process, from /proc/self/stat (field 20), or -1. Read
// through a descriptor the monitor keeps open for the whole run, so that
// fd counts taken meanwhile do not see one come and go.
int process_threads(int fd) {
  if (fd < 0) return -1;
  char buf[1024];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (p == nullptr) return -1;
  // After ") ": field 3 (state) ... field 20 (num_threads): skip 17 fields.
  ++p;
  for (int field = 3; field < 20; ++field) {
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return -1;
  }
  return std::atoi(p + 1);
}

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer's own threads (one background thread; two in a child
// after fork), told apart by their signal mask: they block every signal
// that can be blocked. Only in a TSan build; there, a user thread that also
// blocks every signal is taken for one of them and not counted.
int sanitizer_threads() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char path[300];
    std::snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    std::FILE* f = std::fopen(path, "re");
    if (f == nullptr) continue;
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::strncmp(line, "SigBlk:", 7) != 0) continue;
      const unsigned long long mask = std::strtoull(line + 7, nullptr, 16);
      // Signals 1-31 except SIGKILL, SIGSTOP (unblockable) and 32.
      const unsigned long long all = 0xFFFFFFFFull & ~((1ull << 8) | (1ull << 18) | (1ull << 31));
      n += (mask & all) == all;
      break;
    }
    std::fclose(f);
  }
  ::closedir(d);
  return n;
}
#endif

// Threads that are neither the runtime's nor asleep in a goro wait: each
// may still wake a fiber.
int foreign_running_threads(int stat_fd) {
  int n = process_threads(stat_fd);
  if (n < 0) return 1;  // cannot tell: assume one
#if defined(__SANITIZE_THREAD__)
  n -= sanitizer_threads();
#endif
  return n - g_runtime_threads.load(std::memory_order_relaxed) -
         g_threads_parked.load(std::memory_order_relaxed);
}

// The cheap half of the test: nothing runs, nothing is queued, nothing can
// fire. Also returns the progress signature.
bool looks_asleep(sched* s, std::uint64_t& progress) {
  if (s->npidle.load() != s->nprocs) return false;
  {
    std::lock_guard lk(s->mu);
    if (!s->spares.empty() || !s->gq.empty()) return false;
  }
  progress = s->gq_taken.load(std::memory_order_relaxed);
  const int n = s->ps_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    processor* p = s->ps[static_cast<std::size_t>(i)];
    if (!p->q.empty() || p->runnext.load(std::memory_order_relaxed) != nullptr) return false;
    progress += p->schedtick.load(std::memory_order_relaxed);
  }
  if (next_timer(s) != kNoTimer) return false;
  if (g_netpoll_waiters.load(std::memory_order_relaxed) > 0) return false;
  return true;
}

// The expensive half: the main fiber is parked, no fiber waits in
// goro::blocking, and no other thread could wake anyone.
bool nobody_can_wake(sched* s, int stat_fd) {
  fiber* m = s->main_fiber;
  if (m == nullptr || m->state.load(std::memory_order_acquire) != fiber_state::parked) return false;
  for (processor* p : s->ps) {
    std::lock_guard lk(p->reg_mu);
    for (fiber* f = p->reg_head; f != nullptr; f = f->reg_next) {
      if (f->state.load(std::memory_order_relaxed) != fiber_state::parked) return false;
      const char* why = f->wait_reason.load(std::memory_order_relaxed);
      if (why != nullptr && std::strcmp(why, "blocking") == 0) return false;
    }
  }
  return foreign_running_threads(stat_fd) <= 0;
}

// Set by the SIGQUIT handler, taken by the monitor. A lock-free atomic is as
// async-signal-safe as a volatile sig_atomic_t and, unlike it, no data race
// between the thread the signal landed on and the monitor (TSan saw one).
std::atomic<int> g_sigquit{0};
static_assert(std::atomic<int>::is_always_lock_free);
struct sigaction g_old_sigquit;

void on_sigquit(int) { g_sigquit.store(1, std::memory_order_relaxed); }

}  // namespace

bool debug_flag(std::string_view name) {
  const char* env = std::getenv("GORO_DEBUG");
  if (env == nullptr) return false;
  std::string_view v(env);
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    if (item == name || item == std::string(name) + "=1") return true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

namespace {

// ---- Backtraces of parked fibers (the deadlock report) ---------------------
//
// Only when nothing can run (a deadlock about to abort), and not under the
// sanitizers (these stack switches are not annotated for them). For each
// parked fiber, ontop_fcontext resumes its saved context with capture_on()
// called on top: on the fiber's own stack, as if its last jump_fcontext had
// called it, so the unwinder (glibc's backtrace(), DWARF CFI) walks the
// fiber's frames. capture_on() then jumps straight back. Its frame has
// overwritten the fiber's saved registers, so the fiber's context becomes the
// one capture_on() left: resumed later, capture_on() returns what it is
// given, which is exactly what the fiber's own jump would have returned.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && defined(__GLIBC__)
#define GORO_FIBER_BACKTRACES 1
constexpr int kMaxFrames = 24;

struct capture {
  void* pcs[kMaxFrames];
  int n = 0;
};

bctx::transfer_t capture_on(bctx::transfer_t t) {
  auto* c = static_cast<capture*>(t.data);
  c->n = ::backtrace(c->pcs, kMaxFrames);
  return bctx::jump_fcontext(t.fctx, nullptr);
}

std::string symbolize(void* pc) {
  // A return address: the call is the instruction before it.
  void* at = static_cast<char*>(pc) - 1;
#if defined(GORO_HAVE_ABSL_SYMBOLIZE)
  char name[1024];
  if (absl::Symbolize(at, name, sizeof name)) return name;
#endif
  Dl_info info{};
  if (::dladdr(at, &info) != 0) {
    if (info.dli_sname != nullptr) {
      int status = 0;
      char* d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      std::string s = status == 0 && d != nullptr ? d : info.dli_sname;
      std::free(d);
      return s;
    }
    if (info.dli_fname != nullptr) {
      return absl::StrFormat(
          "%s+%#x", info.dli_fname,
          static_cast<std::uintptr_t>(static_cast<char*>(at) - static_cast<char*>(info.dli_fbase)));
    }
  }
  return "?";
}

// The frames of parked fiber `f`, one "\t#i pc name" line each. The first
// frames are the runtime's own switch (capture_on, jump_to, park): skipped.
std::string backtrace_of(fiber* f) {
  capture c;
  bctx::transfer_t t = bctx::ontop_fcontext(f->ctx, &c, capture_on);
  set_ctx(f, t.fctx);
  std::vector<std::string> names;
  for (int i = 0; i < c.n; ++i) names.push_back(symbolize(c.pcs[i]));
  // The first frames are the switch itself (capture_on, on top of jump_to
  // and park): start after the last of them.
  int first = 0;
  for (int i = 0; i < static_cast<int>(names.size()) && i < 8; ++i) {
    const std::string& n = names[static_cast<std::size_t>(i)];
    if (n.find("capture_on") != std::string::npos ||
        n.find("detail::jump_to") != std::string::npos ||
        n.find("detail::park(") != std::string::npos || n.rfind("goro::detail::park", 0) == 0) {
      first = i + 1;
    }
  }
  std::string out;
  for (int i = first; i < c.n; ++i) {
    out +=
        absl::StrFormat("\t#%d %p %s\n", i - first, c.pcs[i], names[static_cast<std::size_t>(i)]);
  }
  return out;
}
#endif

}  // namespace

std::string spawn_site(const fiber* f) {
  if (f->is_main) return "started by goro::run";
  const std::source_location& at = f->spawned_at;
  if (at.line() == 0) return "spawn site not recorded";
  return absl::StrFormat("spawned at %s:%u in %s", at.file_name(), at.line(), at.function_name());
}

std::string describe_spawn(sched* s, std::uint64_t id) {
  for (processor* p : s->ps) {
    std::lock_guard lk(p->reg_mu);
    for (fiber* f = p->reg_head; f != nullptr; f = f->reg_next) {
      if (f->id == id) return spawn_site(f);
    }
  }
  return "spawn site unknown";
}

void dump_fibers(sched* s, std::ostream& os, [[maybe_unused]] bool backtraces) {
  const std::int64_t live = live_fibers(s);
  const nanos now = mono_now();
  // Formatted under each registry lock, printed in id order afterwards.
  std::vector<std::pair<std::uint64_t, std::string>> lines;
  for (processor* p : s->ps) {
    std::lock_guard lk(p->reg_mu);
    for (fiber* f = p->reg_head; f != nullptr; f = f->reg_next) {
      const fiber_state st = f->state.load(std::memory_order_relaxed);
      std::ostringstream o;
      o << "\nfiber " << f->id << " [";
      if (st == fiber_state::parked) {
        const char* why = f->wait_reason.load(std::memory_order_relaxed);
        const void* obj = f->wait_obj.load(std::memory_order_relaxed);
        o << (why != nullptr ? why : "parked");
        if (obj != nullptr) o << " " << obj;
        o << ", " << format_for(now - f->wait_since.load(std::memory_order_relaxed));
      } else {
        o << to_string(st);
      }
      o << "]" << (f->is_main ? " (main)" : "") << ":\n";
      o << "\t" << spawn_site(f) << "\n";
#if defined(GORO_FIBER_BACKTRACES)
      if (backtraces && st == fiber_state::parked && f->ctx != nullptr) o << backtrace_of(f);
#endif
      lines.emplace_back(f->id, o.str());
    }
  }
  std::sort(lines.begin(), lines.end());
  os << "goro: " << live << (live == 1 ? " fiber" : " fibers") << ", maxprocs " << s->nprocs
     << "\n";
  for (const auto& l : lines) os << l.second;
  const std::int64_t unstarted = live - static_cast<std::int64_t>(lines.size());
  if (unstarted > 0) os << "\nand " << unstarted << " fibers not started yet\n";
}

void diag_tick(sched* s, deadlock_watch& dw, nanos now) {
  if (g_sigquit.exchange(0, std::memory_order_relaxed) != 0) {
    std::ostringstream os;
    os << "goro: SIGQUIT: fiber dump\n";
    dump_fibers(s, os);
    std::fputs(os.str().c_str(), stderr);
    std::fflush(stderr);
  }
  if (s->on_deadlock == deadlock_action::ignore) return;
  std::uint64_t progress = 0;
  if (!looks_asleep(s, progress) || !nobody_can_wake(s, s->stat_fd)) {
    dw.candidate = false;
    dw.reported = false;
    return;
  }
  if (!dw.candidate || progress != dw.progress) {
    dw.candidate = true;
    dw.progress = progress;
    dw.since = now;
    dw.reported = false;
    return;
  }
  if (dw.reported || now - dw.since < kDeadlockAfter) return;
  dw.reported = true;
  std::ostringstream os;
  os << "goro: fatal error: all fibers are asleep - deadlock!\n\n";
  // Backtraces only when the process is about to end: they run code on each
  // parked fiber's stack, safe only because none can run any more.
  dump_fibers(s, os, s->on_deadlock == deadlock_action::abort);
  std::fputs(os.str().c_str(), stderr);
  std::fflush(stderr);
  if (s->on_deadlock == deadlock_action::abort) std::abort();
}

void install_sigquit(sched* s) {
  if (!s->dump_on_sigquit) return;
  g_sigquit.store(0, std::memory_order_relaxed);
  struct sigaction sa {};
  sa.sa_handler = on_sigquit;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGQUIT, &sa, &g_old_sigquit);
}

void uninstall_sigquit(sched* s) {
  if (!s->dump_on_sigquit) return;
  sigaction(SIGQUIT, &g_old_sigquit, nullptr);
}

void report_leaks_at_exit(sched* s) {
  if (!s->report_leaks) return;
  // Fibers on their way out (one that just woke main with wg.done() is
  // still alive for a moment) get 100 ms to finish.
  std::int64_t others = live_fibers(s) - 1;  // not the main fiber
  for (int i = 0; others > 0 && i < 100; ++i) {
    sleep_for(std::chrono::milliseconds(1));
    others = live_fibers(s) - 1;
  }
  if (others <= 0) return;
  std::ostringstream os;
  os << "goro: " << others << (others == 1 ? " fiber" : " fibers")
     << " still alive when main returned\n\n";
  dump_fibers(s, os);
  std::fputs(os.str().c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace goro::detail

namespace goro {

void dump(std::ostream& os) {
  using namespace detail;
  if (worker* w = current_worker()) {
    dump_fibers(w->s, os);
    return;
  }
  std::shared_lock gate(g_gate);
  sched* s = g_sched.load();
  if (s == nullptr) {
    os << "goro: no runtime is running\n";
    return;
  }
  dump_fibers(s, os);
}

absl::Status check_no_leaks(std::chrono::milliseconds grace) {
  using namespace detail;
  fiber* self = current_fiber();
  if (self == nullptr) {
    throw runtime_error("goro::check_no_leaks: call it from a fiber (the main fiber, usually)");
  }
  sched* s = current_worker()->s;
  // The caller, and the main fiber if the caller is another one.
  const std::int64_t own = self->is_main ? 1 : 2;
  const nanos until = mono_now() + std::chrono::nanoseconds(grace).count();
  for (;;) {
    const std::int64_t others = live_fibers(s) - own;
    if (others <= 0) return absl::OkStatus();
    if (mono_now() >= until) {
      std::ostringstream os;
      os << "goro: " << others << (others == 1 ? " fiber" : " fibers") << " leaked\n";
      dump_fibers(s, os);
      return absl::FailedPreconditionError(os.str());
    }
    sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace goro
