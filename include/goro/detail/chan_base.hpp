// goro/detail/chan_base.hpp — the type-erased core of goro::chan<T>.
//
// Algorithm: Go's runtime/chan.go. One lock per channel guards a ring buffer
// of `cap` slots and two FIFO queues of waiters (Go's sudogs): blocked
// receivers (recvq) and blocked senders (sendq). Invariants, under `mu_`:
//   * at least one of recvq, sendq is empty, except when a select waits on
//     both ends of one channel (it never pairs with itself);
//   * for a buffered channel: count_ > 0 implies recvq is empty, and
//     count_ < cap_ implies sendq is empty;
//   * for an unbuffered channel count_ == 0; a value passes directly from the
//     sender's stack to the receiver's storage, copied by whoever arrives
//     second, while the other is parked (so both addresses are stable).
// A waiter is linked only while its owner is parked (or about to be); the
// party that unlinks it fills in `success` and then, after unlocking, wakes
// it with parker::unpark() exactly once.
//
// The element type is erased behind elem_ops so that select (which locks
// several channels of different types in address order) can share this code.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "goro/detail/fast_mod.hpp"
#include "goro/detail/spinlock.hpp"

namespace goro {

// Thrown by send on a closed channel, close of a closed or nil channel, and by
// a sender blocked in send when the channel is closed (Go panics there).
class channel_closed : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {

class parker;

struct elem_ops {
  void (*construct)(void* raw, void* src);  // move-construct a T at raw from *src
  void (*destroy)(void* obj);               // destroy the T at obj
  void (*deliver)(void* dst, void* src);    // move *src into a receiver's dst
  std::size_t size;
  std::size_t align;  // alignof(T)
  bool nothrow_move;  // T's move constructor cannot throw
};

// Shared by the waiters of one blocked select: the first waker to CAS
// `winner` from -1 to its case index commits that case; the others skip.
struct select_state {
  std::atomic<int> winner{-1};
};

struct chan_waiter {
  parker* pk = nullptr;
  select_state* sel = nullptr;  // null: a plain send/recv
  int case_index = 0;           // with sel: which case this waiter is
  void* elem = nullptr;         // send: the T to move from; recv: the receiver's dst
  bool success = false;         // set by the waker: true = value passed, false = closed
  bool retry = false;           // set by the waker: not served, try the operation again
  bool linked = false;
  std::uint64_t slot = 0;       // while linked: its place in the waitq (see there)
  chan_waiter* next = nullptr;  // close(): OS-thread waiters to wake at the end
};

// A channel's FIFO of waiters, under the channel lock. Not a linked list
// through the records, which live on the waiters' stacks all over memory:
// an array of pointers, so that walking it (a close waking 100k selects)
// reads dense memory and can fetch the records ahead, and removing one (a
// select woken by another case) writes a null into the array instead of
// touching two other waiters' stacks. Slots are numbered from the start of
// time (`base_` is the number of v_[0]); a removed waiter leaves a null that
// pops skip, and the array is compacted when nulls outnumber live waiters.
struct waitq {
  std::atomic<int>* count = nullptr;  // the channel's waiter count (see chan_base)
  bool empty() const { return live_ == 0; }
  // noexcept: it runs with the channel lock held, where an exception (a
  // failed growth of the array) would leave the lock held and every later
  // operation on the channel spinning; out of memory ends the process here.
  void push(chan_waiter* w) noexcept;
  chan_waiter* pop();
  // Pops the first waiter that can still proceed: a plain one, or a select's
  // whose `winner` this call wins. Waiters of selects already committed
  // elsewhere are dropped (their owner finds them unlinked).
  chan_waiter* dequeue();
  void remove(chan_waiter* w);

 private:
  void unlinked();  // bookkeeping after one waiter left
  void compact();
  void drop_prefix();
  std::vector<chan_waiter*> v_;
  std::size_t head_ = 0;    // v_[0, head_) are all null
  std::size_t live_ = 0;    // non-null entries
  std::uint64_t base_ = 0;  // slot number of v_[0]
};

struct select_op;

class chan_base {
 public:
  chan_base(std::size_t cap, const elem_ops* ops, unsigned char* buf);
  chan_base(const chan_base&) = delete;
  chan_base& operator=(const chan_base&) = delete;

  // Moves *src into the channel. Blocks while it cannot (unless !block, then
  // returns false). Throws channel_closed if closed before or while blocked.
  bool send(void* src, bool block);
  // Receives into dst (via ops->deliver). Returns 1 on a value, 0 if closed
  // and drained, -1 if !block and nothing is ready.
  int recv(void* dst, bool block);
  void close();
  std::size_t size() const;
  std::size_t capacity() const { return cap_; }

  // Go's lock-free "would block" checks (chan.go's empty()/full() before a
  // non-blocking operation takes the lock), inline for a select with one
  // case and a default: true only if the operation certainly cannot
  // proceed now (nothing to take / no room, nobody parked on the other side,
  // observed before "not closed", which cannot be undone). False means
  // "try it": send/recv decide under the lock. Buffered channels without
  // the ring need the lock to know, so they always say "try".
  bool recv_would_block() const noexcept {
    if (cap_ != 0 && !(lockfree_ && ring_empty())) return false;
    return waiters_.load(std::memory_order_acquire) == 0 &&
           !closed_flag_.load(std::memory_order_acquire);
  }
  bool send_would_block() const noexcept {
    if (cap_ != 0 && !(lockfree_ && ring_full())) return false;
    return waiters_.load(std::memory_order_acquire) == 0 &&
           !closed_flag_.load(std::memory_order_acquire);
  }

  // Bytes of the storage block a channel of `cap` elements needs: the
  // slots, or for the lock-free ring its cells (see below).
  static std::size_t storage_bytes(std::size_t cap, const elem_ops* ops) {
    return cap * (uses_ring(cap, ops) ? cell_stride(ops) : ops->size);
  }

 protected:
  ~chan_base();  // the owner destroys buffered elements (drain())
  // Prepares the storage block (from the derived constructor).
  void init_storage();
  // Destroys the elements still buffered (from the derived destructor).
  void drain();
  unsigned char* buffer() const { return buf_; }

 private:
  void* slot(std::size_t i) const { return buf_ + i * ops_->size; }

  // ---- the lock-free ring (buffered channels of nothrow-movable T) ----
  // Vyukov's bounded MPMC queue: cell i is a sequence number followed by a
  // slot; a sender claims position p (tail_) when seq(p % cap) == 2p,
  // constructs, then publishes 2p + 1; a receiver claims p (head_) when
  // seq(p % cap) == 2p + 1, moves out, then frees the slot for the next lap
  // with 2(p + cap). (Doubled so that "filled at p" and "free for p + 1"
  // differ even when cap is 1.) The number and the value share a cache
  // line, as in Vyukov's cells: an operation moves that line and its
  // position counter's between cores, where separate arrays of numbers and
  // values moved three lines (see HACKING.md, "The lock-free ring").
  // close() sets kClosedBit in tail_ under the lock, so a send either
  // claimed its slot before the close or fails: send and close stay
  // linearizable.
  enum class push_result { pushed, full, closed };
  push_result ring_push(void* src);
  bool ring_pop(void* dst);  // dst null: destroy the element
  // No slot claimed and unconsumed (true at some instant). Head first:
  // tail only grows and never passes below head, so equal values mean the
  // ring was empty at the moment head was read or later. seq_cst: the
  // waiter's side of the Dekker (recheck_pop). Inline for the would-block
  // checks above.
  bool ring_empty() const noexcept {
    const std::uint64_t h = head_.load(std::memory_order_seq_cst);
    const std::uint64_t t = tail_.load(std::memory_order_seq_cst) & ~kClosedBit;
    return h == t;
  }
  // Every slot claimed (true at some instant). Tail first: then head can
  // only have moved on, so a count of cap (or more) means the ring was full
  // at the moment head was read.
  bool ring_full() const noexcept {
    const std::uint64_t t = tail_.load(std::memory_order_seq_cst) & ~kClosedBit;
    const std::uint64_t h = head_.load(std::memory_order_seq_cst);
    return h <= t && t - h >= cap_;
  }
  // A parked-to-be waiter's recheck, with its waiter linked, mu_ held and a
  // fence after the link: false only if the ring was empty (full) by the
  // claim counters, so every fast operation that the recheck misses sees
  // the waiter. Waits out a slot claimed but not yet filled (emptied).
  bool recheck_pop(void* dst);
  bool recheck_push(void* src);

  // With mu_ held, after this thread put a value in the ring: a parked
  // receiver (if any) gets the ring's head, or is told to retry. Returns the
  // waiter to unpark, or null.
  chan_waiter* serve_receiver_locked();
  // With mu_ held, after this thread took a value out: the first parked
  // sender's value moves into the ring (Go's hand-over), or it is told to
  // retry. Returns the waiter to unpark, or null.
  chan_waiter* serve_sender_locked();
  // After a lock-free send (`pushed`) or receive: if anyone is parked on
  // the other side, serve them (Dekker with the waiter's push-then-recheck;
  // see chan.cpp).
  void after_fast_op(bool pushed);
  // Releases mu_, then unparks `wake` if any (the end of every operation
  // that served a parked waiter).
  void unlock_and_wake(chan_waiter* wake);

  static constexpr std::uint64_t kClosedBit = std::uint64_t{1} << 63;
  static bool uses_ring(std::size_t cap, const elem_ops* ops) {
    return cap > 0 && ops->nothrow_move;
  }
  // A cell: the sequence number, then the value at value_offset(), padded
  // to the alignment of both.
  static std::size_t value_offset(const elem_ops* ops) {
    return std::max(sizeof(std::atomic<std::uint64_t>), ops->align);
  }
  static std::size_t cell_stride(const elem_ops* ops) {
    const std::size_t a = std::max(alignof(std::atomic<std::uint64_t>), ops->align);
    return (value_offset(ops) + ops->size + a - 1) / a * a;
  }
  std::atomic<std::uint64_t>& cell_seq(std::size_t i) const {
    return *reinterpret_cast<std::atomic<std::uint64_t>*>(buf_ + i * cell_stride_);
  }
  void* cell_slot(std::size_t i) const { return buf_ + i * cell_stride_ + value_offset_; }

  const std::size_t cap_;
  const elem_ops* const ops_;
  unsigned char* const buf_;        // cap_ slots of ops_->size bytes, or cap_ cells
  const bool lockfree_;             // buffered and T nothrow-movable: use the ring
  const std::size_t cell_stride_;   // lockfree_: bytes per cell
  const std::size_t value_offset_;  // lockfree_: the value's offset in its cell
  const fast_mod ring_mod_;         // position % cap_ without a division

  mutable spinlock mu_;  // the channel lock (a leaf: held only briefly)
  // Waiters linked in recvq_ + sendq_ (changed under mu_, read lock-free by
  // the fast paths: while it is non-zero every operation takes the lock, so
  // parked waiters are served in FIFO order as in Go).
  std::atomic<int> waiters_{0};
  std::size_t count_ = 0;  // !lockfree_: buffered elements
  std::size_t recvx_ = 0;  // !lockfree_: next slot to receive from
  std::size_t sendx_ = 0;  // !lockfree_: next slot to send into
  bool closed_ = false;
  std::atomic<bool> closed_flag_{false};  // closed_, readable without the lock
  waitq recvq_;
  waitq sendq_;

  // head_, tail_ and the locked part sit on separate cache lines, so a
  // sender and a receiver on two threads do not invalidate each other's
  // line on every operation. Padding rather than alignas: an over-aligned
  // object would need an aligned allocation, which is slow in glibc.
  char pad0_[64];
  std::atomic<std::uint64_t> head_{0};  // lockfree_: next position to receive
  char pad1_[64];
  std::atomic<std::uint64_t> tail_{0};  // lockfree_: next position to send
  char pad2_[64];

  friend std::size_t select_impl(select_op*, std::size_t, bool);
  // The non-blocking halves of send/recv, with mu_ held. Return false if the
  // operation cannot proceed now; on success they unlock nothing and return
  // the waiter to unpark (or null). A send on a closed channel throws.
  bool try_send_locked(void* src, chan_waiter** wake);
  bool try_recv_locked(void* dst, bool* ok, chan_waiter** wake);
};

// Blocks the caller forever (a nil channel operation); at shutdown the fiber
// is unwound from here.
[[noreturn]] void block_forever(const char* reason);

// One case of a select, type-erased. `c` null: a nil channel (never ready).
// No default member initializers: select() fills every field in prepare(),
// and zeroing the array first showed up as a third of a non-blocking select.
struct select_op {
  chan_base* c;
  bool is_send;
  void* elem;  // send: the T to move from; recv: std::optional<T>*
  bool ok;     // out: recv got a value (false: closed)
};

// Go's selectgo: commits exactly one ready case, chosen uniformly at random
// among the ready ones, and returns its index; with none ready returns n if
// `has_default`, else blocks until one is. Throws channel_closed if the
// chosen case is a send on a closed channel. With no non-nil case and no
// default it blocks forever.
std::size_t select_impl(select_op* ops, std::size_t n, bool has_default);

}  // namespace detail
}  // namespace goro
