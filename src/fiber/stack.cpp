// src/fiber/stack.cpp — see stack.hpp for the layout and the pooling protocol.
#include "fiber/stack.hpp"

#include "fiber/sanitizer.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
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
// How long the pool remembers a peak of stacks in use (see give()).
constexpr std::chrono::seconds kPeakMemory{2};
// Surplus stacks are trimmed in batches of this many (see give()).
constexpr std::size_t kTrimBatch = 1024;

void* map_region(std::size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Best effort: a huge page would commit 2 MiB for a stack that uses 4 KiB.
  ::madvise(p, len, MADV_NOHUGEPAGE);
  return p;
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

stack_pool::stack_pool(std::size_t stack_size, long guarded_budget)
    : size_((stack_size + static_cast<std::size_t>(::getpagesize()) - 1) &
            ~(static_cast<std::size_t>(::getpagesize()) - 1)),
      page_(static_cast<std::size_t>(::getpagesize())),
      guarded_budget_(guarded_budget < 0 ? 0 : static_cast<std::size_t>(guarded_budget)) {}

stack_pool::~stack_pool() {
  std::lock_guard lk(mu_);
  for (auto* list : {&warm_, &cold_, &to_trim_}) {
    for (const stack& s : *list) san::tsan_destroy(s.tsan);
  }
  for (const mapping& m : mappings_) ::munmap(m.addr, m.len);
}

void stack_pool::map_guarded() {
  const std::size_t len = size_ + page_;
  char* base = static_cast<char*>(map_region(len));
  if (::mprotect(base, page_, PROT_NONE) != 0) {
    ::munmap(base, len);
    throw std::bad_alloc();
  }
  mappings_.push_back({base, len});
  cold_.push_back(stack{base + page_, size_, true});
  ++guarded_count_;
}

void stack_pool::map_slab() {
  const std::size_t len = size_ * kSlabStacks;
  char* base = static_cast<char*>(map_region(len));
  mappings_.push_back({base, len});
  // Hand out the highest stacks first: an overflow from stack i runs into
  // stack i-1, so the lowest stack of a slab (overflowing into whatever lies
  // below) is used last.
  for (std::size_t i = 0; i < kSlabStacks; ++i) {
    cold_.push_back(stack{base + i * size_, size_, false});
  }
}

void stack_pool::take(std::vector<stack>& out, std::size_t n) {
  const std::size_t before = out.size();
  std::size_t first_cold = before;
  {
    std::lock_guard lk(mu_);
    out_ += n;
    for (; n > 0 && !warm_.empty(); --n) {
      out.push_back(warm_.back());
      warm_.pop_back();
    }
    first_cold = out.size();
    // Hand warm stacks out in the same (descending) address order as fresh
    // slabs: fibers spawned together then sit on neighbouring stacks, and
    // waking them in spawn order (a closed done channel) walks the page
    // tables sequentially instead of at random.
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(before),
              out.begin() + static_cast<std::ptrdiff_t>(first_cold),
              [](const stack& a, const stack& b) { return a.lo < b.lo; });
    for (; n > 0; --n) {
      if (cold_.empty()) {
        if (guarded_count_ < guarded_budget_) {
          map_guarded();
        } else {
          map_slab();
        }
      }
      out.push_back(cold_.back());
      cold_.pop_back();
    }
  }
  // Cold stacks are not pre-committed (MADV_POPULATE_WRITE on their top
  // page): the fiber's first write faults the page in. Measured on a
  // virtualized 2-CPU machine, 100,000 fibers each on a fresh stack took
  // 1.8-2.6 s with one madvise per stack and 0.9-1.0 s with the faults alone.
}

void stack_pool::give(std::vector<stack>& in) {
  std::vector<stack> trim;
  {
    std::lock_guard lk(mu_);
    out_ -= in.size();
    // Keep as many warm stacks as were in use at the recent peak (at least
    // kPoolKeepCommitted): a program whose fiber count swings keeps its
    // stacks committed instead of trimming them and faulting them back in at
    // every swing; a peak older than kPeakMemory is forgotten, and then the
    // surplus is trimmed.
    const auto now = std::chrono::steady_clock::now();
    if (out_ + in.size() >= peak_ || now - peak_time_ > kPeakMemory) {
      peak_ = out_ + in.size();
      peak_time_ = now;
    }
    const std::size_t keep = std::max(kPoolKeepCommitted, peak_);
    for (const stack& s : in) {
      if (warm_.size() < keep) {
        warm_.push_back(s);
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
    while (j < trim.size() && !trim[j].guarded && !trim[j - 1].guarded &&
           trim[j - 1].top() == trim[j].lo) {
      ++j;
    }
    ::madvise(trim[i].lo, static_cast<std::size_t>(trim[j - 1].top() - trim[i].lo), MADV_DONTNEED);
    i = j;
  }
  for (stack& s : trim) s.canary_probed = false;  // the canary pages are gone
  std::lock_guard lk(mu_);
  cold_.insert(cold_.end(), trim.begin(), trim.end());
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
