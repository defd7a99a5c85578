// src/fiber/stack.hpp — fiber stacks: mmap'd, lazily committed, pooled.
//
// Layout of one stack (addresses grow to the right):
//
//   [guard page]? [canary 64 B | usable ........................ top)
//                  ^ lo                                          ^ lo + size
//
// Three kinds of stack, chosen when a stack is first mapped:
//  * slab with guard regions (Linux 6.13+, the default where available): a
//    large shared mapping of `kSlabStacks` stacks, each with a guard page
//    below it installed by MADV_GUARD_INSTALL. A guard region is a marker in
//    the page table, not a protection change: the slab stays one VMA (so
//    1M parked fibers fit in vm.max_map_count = 65530), the markers survive
//    MADV_DONTNEED, and one process_madvise() call installs a whole slab's
//    guards. Overflow faults at the first write into the guard; the SIGSEGV
//    handler (overflow.cpp) names the fiber. No canary, no per-switch check.
//  * guarded: its own mapping with a PROT_NONE page below `lo`, where the
//    kernel has no guard regions. Same fault-time report. Each costs the
//    process two VMAs, so at most `guarded_budget` exist (options).
//  * bare slab: a slab without guards (old kernels past the budget, or a
//    budget of 0). Overflow is caught in two places instead of at the
//    faulting write:
//      - at every context switch, if the stack pointer is inside the lowest
//        kRedZoneBytes (or outside the stack): free, touches no memory;
//      - when the fiber exits, if any of the lowest kCanaryBytes is non-zero.
//        Untouched anonymous memory reads as zero, so the canary costs no
//        write; it is not read at every switch because even reading an
//        untouched page maps it and adds a page of RSS per parked fiber.
//    Trade-off: an overflow can scribble on the stack below (another fiber's)
//    before a check sees it, and a fiber that overflowed, returned, and then
//    stays parked is only caught when it exits. The checks turn overflow into
//    an abort with `goro: stack overflow in fiber N` rather than silent
//    corruption later. Guarded stacks are handed out first, so programs with
//    fewer than `guarded_budget` live fibers never rely on this.
//    The canary costs a page fault per stack (the read maps the zero page)
//    the first time it is read; on a virtual machine with shadow paging a
//    fault costs ~15 us, which made it a third of the cost of 100k sleeping
//    fibers. Guard regions need no read at all.
//
// Memory is mapped MAP_NORESERVE (committed on first touch) and
// MADV_NOHUGEPAGE (a transparent huge page would commit 2 MiB per stack).
// The first canary check of a stack whose pages are fresh asks mincore()
// whether the bottom page exists instead of faulting it in to read zeros.
//
// Pooling: each P keeps a small cache (no lock, owner only); overflow and
// refill move batches to and from the global pool (mutex).
//
// The pool hands out free stacks in a fixed order, whatever order they came
// back in: the lowest index first, where indexes follow the slabs (highest
// stack of a slab first, see map_slab). Fibers spawned together so sit on
// neighbouring stacks run after run, and running them in turn walks
// neighbouring page table entries. (A LIFO list shuffled them a little more
// each time 100k fibers came and went: after ten such bursts a quarter of
// consecutive fibers had neighbouring stacks instead of nine in ten, and
// starting one cost 0.8-1.1 us of CPU instead of 0.5-0.6: page walks, dear
// on a virtual machine.)
//
// The pool keeps as many used ("warm") stacks as were in use at the recent
// peak (remembered for 2 to 4 s), and at least kPoolKeepCommitted; further
// returned stacks have their pages given back (MADV_DONTNEED, in
// address-sorted batches so neighbours coalesce into one call) and join the
// "cold" set with fresh ones, so a burst of fibers does not pin its RSS
// forever. Warm stacks are reused first. Cold stacks get their top page
// committed in one batched call when a P's cache takes them
// (process_madvise, Linux 6.13+; elsewhere the fiber's first write faults it
// in).
// All mappings are unmapped when the runtime shuts down.
//
// Alternatives rejected: segmented/copying stacks (Go's) need compiler
// support; one mapping per stack with a guard runs out of VMAs at ~32k.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace goro::detail {

struct stack {
  char* lo = nullptr;    // lowest usable byte (the canary starts here)
  std::size_t size = 0;  // usable bytes; the top is lo + size
  bool guarded = false;  // a page just below lo faults (PROT_NONE or a guard region)
  bool in_slab = false;  // carved from a slab: neighbours may coalesce in one madvise
  void* tsan = nullptr;  // TSan fiber of whoever runs here (TSan builds only)
  // The canary has been checked since the pages were last mapped or dropped
  // (see stack_overflowed). Slab stacks only.
  bool canary_probed = false;
  std::uint32_t index = 0;  // its place in the pool's order of preference (stack_pool)

  explicit operator bool() const { return lo != nullptr; }
  char* top() const { return lo + size; }
};

// Bytes at the bottom of a slab stack that must stay zero.
inline constexpr std::size_t kCanaryBytes = 64;
// A stack pointer this close to the bottom at a switch counts as overflow:
// the frames below it (a signal frame, the switch itself) would not fit.
inline constexpr std::size_t kRedZoneBytes = 1024;

// True if the stack looks overflowed. `sp` is an address in the current frame
// of the fiber that runs on `s`; `read_canary` also checks the canary (at
// fiber exit only, see above; it sets s.canary_probed). Guarded stacks need
// no check.
bool stack_overflowed(stack& s, const void* sp, bool read_canary);

class stack_pool {
 public:
  // guarded_budget: how many stacks get a guard page of their own mapping
  // where the kernel has no guard regions; 0 also turns guard regions off.
  // peak_memory: how long a peak of stacks in use keeps that many committed
  // (one to two such windows; see give()).
  // use_guard_regions: false keeps slabs bare even where the kernel has guard
  // regions (GORO_DEBUG=noguardregions: gdb's gcore cannot read them).
  stack_pool(std::size_t stack_size, long guarded_budget,
             std::chrono::milliseconds peak_memory = std::chrono::seconds(2),
             bool use_guard_regions = true);
  ~stack_pool();  // unmaps everything; no stack may be in use
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;

  std::size_t stack_size() const { return size_; }
  // Slabs get guard regions (MADV_GUARD_INSTALL): every stack is guarded.
  bool guard_regions() const { return guard_regions_; }

  // Moves up to `n` stacks into `out` (mapping new ones as needed). Throws
  // std::bad_alloc if the kernel refuses memory.
  void take(std::vector<stack>& out, std::size_t n);
  // Returns stacks to the pool; empties `in`.
  void give(std::vector<stack>& in);

 private:
  // A set of stack indexes; pop() takes the lowest. A bit per index, and a
  // bit per word of those saying it is not empty, so that pop() skips 4096
  // indexes per word it reads.
  class index_set {
   public:
    std::size_t size() const { return count_; }
    void insert(std::uint32_t i);
    std::uint32_t pop();  // the set must not be empty

   private:
    std::vector<std::uint64_t> bits_;
    std::vector<std::uint64_t> nonempty_;  // bit w: bits_[w] != 0
    std::size_t count_ = 0;
  };

  // Records a stack of a new mapping under the next index, as cold.
  void add_cold(const stack& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void map_slab() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void map_guarded() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void roll_window() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::size_t recent_peak() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::size_t size_;  // usable bytes per stack, page multiple
  const std::size_t page_;
  const std::size_t guarded_budget_;
  const bool guard_regions_;
  const std::chrono::milliseconds peak_memory_;
  const int pidfd_;             // this process, for process_madvise(); -1 if unavailable
  std::atomic<bool> populate_;  // take() commits top pages in one call (see there)
  std::mutex mu_;
  std::vector<stack> all_ ABSL_GUARDED_BY(mu_);  // every stack, by index, as last given back
  // Free and warm: the last ones given back (LIFO, so a P refilling its
  // cache right after another spilled gets stacks still in the cache), then
  // the rest in index order.
  std::vector<std::uint32_t> recent_ ABSL_GUARDED_BY(mu_);
  index_set warm_ ABSL_GUARDED_BY(mu_);
  index_set cold_ ABSL_GUARDED_BY(mu_);              // free, no committed pages
  std::vector<stack> to_trim_ ABSL_GUARDED_BY(mu_);  // free, pages to be dropped
  std::size_t out_ ABSL_GUARDED_BY(mu_) = 0;         // stacks taken, not given back
  // The most stacks out at once in the current window of peak_memory_, and
  // in the window before (see recent_peak()).
  std::size_t peak_now_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t peak_before_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point window_start_ ABSL_GUARDED_BY(mu_);
  struct mapping {
    void* addr;
    std::size_t len;
  };
  std::vector<mapping> mappings_ ABSL_GUARDED_BY(mu_);
  std::size_t guarded_count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Per-P cache in front of the pool; owned by one P, so unsynchronized.
class stack_cache {
 public:
  explicit stack_cache(stack_pool* pool) : pool_(pool) {}
  ~stack_cache() { flush(); }
  stack_cache(const stack_cache&) = delete;
  stack_cache& operator=(const stack_cache&) = delete;

  stack get();
  void put(stack s);
  void flush();  // everything back to the pool
  // The stack get() hands out next without going to the pool, or null.
  const stack* peek() const { return cache_.empty() ? nullptr : &cache_.back(); }

 private:
  static constexpr std::size_t kMax = 64;    // cached stacks per P
  static constexpr std::size_t kBatch = 32;  // moved per refill/spill
  stack_pool* pool_;
  std::vector<stack> cache_;
};

}  // namespace goro::detail
