// src/fiber/stack.cpp — see stack.hpp for the layout and the pooling protocol.
#include "fiber/stack.hpp"

#include "fiber/sanitizer.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace goro::detail {
namespace {

// Stacks per slab mapping: one mmap per 256 stacks keeps syscalls rare while a
// slab (64 MiB at the default size) stays a modest slice of address space.
constexpr std::size_t kSlabStacks = 256;

// Free stacks in the global pool that keep their committed pages; past this,
// returned stacks are MADV_DONTNEED'd (256 stacks ≈ 1 MiB if each touched a
// page: cheap to keep, enough to absorb the churn of a busy program).
constexpr std::size_t kPoolKeepCommitted = 256;
// Free stacks the pool hands out last in, first out (see recent_).
constexpr std::size_t kRecent = 64;
// Surplus stacks are trimmed in batches of this many (see give()).
constexpr std::size_t kTrimBatch = 1024;

// Linux 6.13's guard regions; Debian 12's headers predate them.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE  // Linux 5.14
#define MADV_POPULATE_WRITE 23
#endif

// Cold stacks whose top page take() commits in one call (the per-P cache
// refills 32 at a time); the iovecs are on the caller's stack, see map_slab.
constexpr std::size_t kMaxPopulate = 32;

void* map_region(std::size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Best effort: a huge page would commit 2 MiB for a stack that uses 4 KiB.
  ::madvise(p, len, MADV_NOHUGEPAGE);
  return p;
}

// Whether this kernel installs guard regions in private anonymous memory.
bool have_guard_regions(std::size_t page) {
  void* p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = ::madvise(p, page, MADV_GUARD_INSTALL) == 0;
  ::munmap(p, 2 * page);
  return ok;
}

// Installs a guard page at each of `v[0..n)`; returns how many, from the
// front, are guarded. One process_madvise() call for all of them where the
// kernel takes MADV_GUARD_INSTALL that way (6.13 also opened every advice
// to a process advising itself), one madvise() per page for what is left.
std::size_t install_guards(int pidfd, iovec* v, std::size_t n, std::size_t page) {
  std::size_t done = 0;
  if (pidfd >= 0) {
    const long r = ::syscall(SYS_process_madvise, pidfd, v, n, MADV_GUARD_INSTALL, 0u);
    if (r > 0) done = static_cast<std::size_t>(r) / page;
  }
  for (; done < n; ++done) {
    if (::madvise(v[done].iov_base, page, MADV_GUARD_INSTALL) != 0) break;
  }
  return done;
}

}  // namespace

bool stack_overflowed(stack& s, const void* sp, bool read_canary) {
  if (s.guarded) return false;
  const char* p = static_cast<const char*>(sp);
  if (p < s.lo + kRedZoneBytes || p > s.top()) return true;
  if (!read_canary) return false;
  if (!s.canary_probed) {
    // The first check since the stack's pages were mapped or dropped: a page
    // nobody touched is not resident, and its canary is zero by definition.
    // Asking the kernel costs one system call; reading would cost a page
    // fault that maps the zero page (several times dearer, and most stacks
    // of a burst of fibers are used once). Later checks read: that fault is
    // paid at most once per stack until it is trimmed.
    s.canary_probed = true;
    unsigned char resident = 0;
    if (::mincore(s.lo, 1, &resident) == 0 && (resident & 1) == 0) return false;
  }
  std::uint64_t acc = 0;
  const auto* w = reinterpret_cast<const volatile std::uint64_t*>(s.lo);
  for (std::size_t i = 0; i < kCanaryBytes / sizeof(std::uint64_t); ++i) acc |= w[i];
  return acc != 0;
}

stack_pool::stack_pool(std::size_t stack_size, long guarded_budget,
                       std::chrono::milliseconds peak_memory, bool use_guard_regions)
    : size_((stack_size + static_cast<std::size_t>(::getpagesize()) - 1) &
            ~(static_cast<std::size_t>(::getpagesize()) - 1)),
      page_(static_cast<std::size_t>(::getpagesize())),
      guarded_budget_(guarded_budget < 0 ? 0 : static_cast<std::size_t>(guarded_budget)),
      guard_regions_(use_guard_regions && guarded_budget > 0 && have_guard_regions(page_)),
      peak_memory_(peak_memory),
      // For process_madvise() on ourselves: batches of advice in one call.
      pidfd_(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0))),
      populate_(pidfd_ >= 0),
      window_start_(std::chrono::steady_clock::now()) {}

void stack_pool::index_set::insert(std::uint32_t i) {
  const std::size_t w = i / 64;
  if (w >= bits_.size()) {
    bits_.resize(w + 1, 0);
    nonempty_.resize(w / 64 + 1, 0);
  }
  const std::uint64_t bit = std::uint64_t{1} << (i % 64);
  if ((bits_[w] & bit) != 0) {  // would hand one stack to two fibers later
    std::fprintf(stderr, "goro: internal error: stack %u given back twice\n", i);
    std::abort();
  }
  bits_[w] |= bit;
  nonempty_[w / 64] |= std::uint64_t{1} << (w % 64);
  ++count_;
}

std::uint32_t stack_pool::index_set::pop() {
  std::size_t s = 0;
  while (nonempty_[s] == 0) ++s;
  const std::size_t w = s * 64 + static_cast<std::size_t>(__builtin_ctzll(nonempty_[s]));
  std::uint64_t& word = bits_[w];
  const std::size_t i = w * 64 + static_cast<std::size_t>(__builtin_ctzll(word));
  word &= word - 1;
  if (word == 0) nonempty_[s] &= ~(std::uint64_t{1} << (w % 64));
  --count_;
  return static_cast<std::uint32_t>(i);
}

stack_pool::~stack_pool() {
  std::lock_guard lk(mu_);
  for (const stack& s : all_) san::tsan_destroy(s.tsan);
  for (const mapping& m : mappings_) {
    // ASan's shadow outlives the mapping: the poison that dead fibers'
    // frames left would fault whatever is mapped here next (a fiber record,
    // the program's own memory).
    san::asan_unpoison(m.addr, m.len);
    ::munmap(m.addr, m.len);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

void stack_pool::map_guarded() {
  const std::size_t len = size_ + page_;
  char* base = static_cast<char*>(map_region(len));
  if (::mprotect(base, page_, PROT_NONE) != 0) {
    ::munmap(base, len);
    throw std::bad_alloc();
  }
  mappings_.push_back({base, len});
  add_cold(stack{.lo = base + page_, .size = size_, .guarded = true});
  ++guarded_count_;
}

void stack_pool::add_cold(const stack& s) {
  stack& t = all_.emplace_back(s);
  t.index = static_cast<std::uint32_t>(all_.size() - 1);
  cold_.insert(t.index);
}

void stack_pool::map_slab() {
  // With guard regions each stack has a guard page of its own below it, so
  // the stride is one page more than the usable size.
  const std::size_t gap = guard_regions_ ? page_ : 0;
  const std::size_t stride = size_ + gap;
  char* base = static_cast<char*>(map_region(stride * kSlabStacks));
  mappings_.push_back({base, stride * kSlabStacks});
  std::size_t guarded = 0;
  if (guard_regions_) {
    // On the heap: take() may run on the stack of a fiber that is parking
    // (it starts the next fiber's stack), which must not need 4 KiB more.
    std::vector<iovec> guards(kSlabStacks);
    for (std::size_t i = 0; i < kSlabStacks; ++i) guards[i] = {base + i * stride, page_};
    // Should the kernel refuse some (out of memory for page tables), those
    // stacks fall back to the canary checks; the unguarded page below them
    // is their own, not a neighbour's.
    guarded = install_guards(pidfd_, guards.data(), kSlabStacks, page_);
  }
  // The highest stacks get the lowest indexes, so they are handed out first:
  // an overflow from a bare stack i runs into stack i-1, so the lowest stack
  // of a slab (overflowing into whatever lies below) is used last.
  for (std::size_t i = kSlabStacks; i-- > 0;) {
    add_cold(stack{
        .lo = base + i * stride + gap, .size = size_, .guarded = i < guarded, .in_slab = true});
  }
}

void stack_pool::take(std::vector<stack>& out, std::size_t n) {
  std::size_t first_cold = out.size();
  {
    std::lock_guard lk(mu_);
    out_ += n;
    roll_window();
    peak_now_ = std::max(peak_now_, out_);
    // Warm stacks first (the few last given back, then the rest in index
    // order: see the header), then cold ones in index order.
    for (; n > 0 && !recent_.empty(); --n) {
      out.push_back(all_[recent_.back()]);
      recent_.pop_back();
    }
    for (; n > 0 && warm_.size() > 0; --n) out.push_back(all_[warm_.pop()]);
    first_cold = out.size();
    for (; n > 0; --n) {
      if (cold_.size() == 0) {
        if (!guard_regions_ && guarded_count_ < guarded_budget_) {
          map_guarded();
        } else {
          map_slab();
        }
      }
      out.push_back(all_[cold_.pop()]);
    }
  }
  // Commit the top page of each cold stack now, in one system call for the
  // batch, rather than by the fiber's first write: a page fault is an
  // exception round trip per stack (~15 us on a virtual machine with shadow
  // paging, where the batched call costs ~1 us a stack and the first touch
  // ~6 us more; on bare metal it saves the exception's entry and exit).
  // Only stacks about to run are committed, and each would commit that page
  // anyway. Best effort: kernels before 6.13 refuse this advice through
  // process_madvise, and then the first write faults the page in as before.
  if (populate_.load(std::memory_order_relaxed) && out.size() > first_cold) {
    iovec tops[kMaxPopulate];
    std::size_t k = 0;
    for (std::size_t i = first_cold; i < out.size() && k < kMaxPopulate; ++i) {
      tops[k++] = {out[i].top() - page_, page_};
    }
    if (::syscall(SYS_process_madvise, pidfd_, tops, k, MADV_POPULATE_WRITE, 0u) < 0 &&
        errno == EINVAL) {
      populate_.store(false, std::memory_order_relaxed);  // not on this kernel: stop asking
    }
  }
}

void stack_pool::roll_window() {
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ <= peak_memory_) return;
  peak_before_ = now - window_start_ > 2 * peak_memory_ ? 0 : peak_now_;
  peak_now_ = out_;
  window_start_ = now;
}

std::size_t stack_pool::recent_peak() {
  // A windowed maximum: the peak of the current window and of the one
  // before, so a peak is remembered for one to two windows. (A single peak
  // with a timestamp forgot a load that came back a little lower than its
  // last peak every time, and trimmed the stacks it was about to reuse.)
  roll_window();
  return std::max(peak_before_, peak_now_);
}

void stack_pool::give(std::vector<stack>& in) {
  std::vector<stack> trim;
  {
    std::lock_guard lk(mu_);
    out_ -= in.size();
    // Keep as many warm stacks as were in use at the recent peak (at least
    // kPoolKeepCommitted): a program whose fiber count swings keeps its
    // stacks committed instead of trimming them and faulting them back in at
    // every swing; a peak two windows old (peak_memory_) is forgotten, and
    // then the surplus is trimmed.
    const std::size_t keep = std::max(kPoolKeepCommitted, recent_peak());
    for (const stack& s : in) {
      all_[s.index] = s;  // it may have gained a TSan fiber
      if (recent_.size() + warm_.size() < keep) {
        if (recent_.size() == kRecent) {  // the older half joins the ordered set
          for (std::size_t i = 0; i < kRecent / 2; ++i) warm_.insert(recent_[i]);
          recent_.erase(recent_.begin(), recent_.begin() + kRecent / 2);
        }
        recent_.push_back(s.index);
      } else {
        to_trim_.push_back(s);
      }
    }
    if (to_trim_.size() >= kTrimBatch) trim.swap(to_trim_);
  }
  in.clear();
  if (trim.empty()) return;
  // Drop the pages of a batch of surplus stacks (the mappings stay; pages read
  // back as zero). Sorting coalesces neighbours of a slab into one call: each
  // call costs a TLB shoot-down on every CPU running this process.
  std::sort(trim.begin(), trim.end(), [](const stack& a, const stack& b) { return a.lo < b.lo; });
  for (std::size_t i = 0; i < trim.size();) {
    std::size_t j = i + 1;
    // Neighbours in a slab, with at most a guard page between them (the
    // guard regions survive MADV_DONTNEED).
    const std::size_t gap = guard_regions_ ? page_ : 0;
    while (j < trim.size() && trim[j].in_slab && trim[j - 1].in_slab &&
           trim[j - 1].top() + gap == trim[j].lo) {
      ++j;
    }
    ::madvise(trim[i].lo, static_cast<std::size_t>(trim[j - 1].top() - trim[i].lo), MADV_DONTNEED);
    i = j;
  }
  std::lock_guard lk(mu_);
  for (const stack& s : trim) {
    all_[s.index].canary_probed = false;  // the canary pages are gone
    cold_.insert(s.index);
  }
}

stack stack_cache::get() {
  if (cache_.empty()) pool_->take(cache_, kBatch);
  stack s = cache_.back();
  cache_.pop_back();
  return s;
}

void stack_cache::put(stack s) {
  cache_.push_back(s);
  if (cache_.size() > kMax) {
    std::vector<stack> spill(cache_.end() - kBatch, cache_.end());
    cache_.resize(cache_.size() - kBatch);
    pool_->give(spill);
  }
}

void stack_cache::flush() {
  if (!cache_.empty()) pool_->give(cache_);
}

}  // namespace goro::detail
