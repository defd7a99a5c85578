// src/fiber/overflow.cpp — reporting a stack overflow instead of a bare SIGSEGV.
//
// A fiber overflowing a guarded stack faults in the PROT_NONE page below it.
// The fault cannot be handled on the exhausted stack, so every worker thread
// runs with a sigaltstack and the SIGSEGV handler is SA_ONSTACK. The handler
// reads the faulting thread's worker directly (a signal is delivered on the
// faulting thread, so its thread_local is the right one), and if the address
// is in the running fiber's guard page it prints
// `goro: stack overflow in fiber N` and aborts. Any other fault is passed to
// the handler that was installed before (or re-raised with the default
// action), so sanitizers and user handlers keep working.
// Slab stacks have no guard page; fiber.cpp checks them at every switch.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "sched/sched.hpp"

namespace goro::detail {
namespace {

// Enough for the handler and for a sanitizer's handler chained after it.
constexpr std::size_t kAltStackSize = 64 * 1024;

struct sigaction g_prev;
std::size_t g_page = 4096;
thread_local stack_t t_prev_altstack;  // restored by leave_altstack

void write_str(const char* s) {
  ssize_t r = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)r;
}

void on_segv(int sig, siginfo_t* si, void* uc) {
  worker* w = current_worker();
  fiber* f = w != nullptr ? w->current : nullptr;
  const char* a = static_cast<const char*>(si->si_addr);
  if (f != nullptr && f->stk.guarded && a >= f->stk.lo - g_page && a < f->stk.lo) {
    char num[24];
    int n = 0;
    std::uint64_t id = f->id;
    do {
      num[n++] = static_cast<char>('0' + id % 10);
      id /= 10;
    } while (id != 0);
    char msg[64] = "goro: stack overflow in fiber ";
    std::size_t len = std::strlen(msg);
    while (n > 0) msg[len++] = num[--n];
    msg[len++] = '\n';
    msg[len] = '\0';
    write_str(msg);
    std::abort();
  }
  if ((g_prev.sa_flags & SA_SIGINFO) != 0 && g_prev.sa_sigaction != nullptr) {
    g_prev.sa_sigaction(sig, si, uc);
    return;
  }
  if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
    g_prev.sa_handler(sig);
    return;
  }
  // Default action: restore it and return; the faulting instruction re-runs.
  ::sigaction(SIGSEGV, &g_prev, nullptr);
}

}  // namespace

void install_overflow_handler(std::size_t page) {
  // At every run(), not once per process: a program (or a forked child)
  // may have replaced the handler since the last run. Ours is never chained
  // to itself.
  static std::mutex mu;
  std::lock_guard lk(mu);
  g_page = page;
  struct sigaction cur;
  if (::sigaction(SIGSEGV, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) != 0 &&
      cur.sa_sigaction == &on_segv) {
    return;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = &on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_prev);
}

void* enter_altstack() {
  void* mem = ::mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  stack_t ss{};
  ss.ss_sp = mem;
  ss.ss_size = kAltStackSize;
  ss.ss_flags = 0;
  if (::sigaltstack(&ss, &t_prev_altstack) != 0) {
    ::munmap(mem, kAltStackSize);
    return nullptr;
  }
  return mem;
}

void leave_altstack(void* alt) {
  if (alt == nullptr) return;
  ::sigaltstack(&t_prev_altstack, nullptr);  // the thread's previous one, or disabled
  ::munmap(alt, kAltStackSize);
}

}  // namespace goro::detail
