// Conformance tests for goro::chan: Go's channel semantics (the behaviours
// Go's test/chan programs and runtime/chan_test.go check), without select.
#define BOOST_TEST_MODULE chan
#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;

BOOST_AUTO_TEST_CASE(nil_channel) {
  goro::chan<int> c;
  BOOST_TEST(!c);
  BOOST_TEST((c == goro::chan<int>()));
  BOOST_TEST(c.size() == 0u);
  BOOST_TEST(c.capacity() == 0u);
  BOOST_TEST(!c.try_send(1));
  BOOST_CHECK_THROW(c.close(), goro::channel_closed);
}

BOOST_AUTO_TEST_CASE(handles_share_identity) {
  auto a = goro::make_chan<int>(3);
  auto b = a;
  BOOST_TEST(static_cast<bool>(a));
  BOOST_TEST((a == b));
  BOOST_TEST(!(a == goro::make_chan<int>(3)));
  BOOST_TEST(a.try_send(1));
  BOOST_TEST(b.size() == 1u);
  BOOST_TEST(b.capacity() == 3u);
}

BOOST_AUTO_TEST_CASE(buffered_fifo_then_drain_after_close) {
  // No runtime needed for non-blocking use from a plain thread.
  auto c = goro::make_chan<int>(5);
  for (int i = 0; i < 5; ++i) BOOST_TEST(c.try_send(i));
  BOOST_TEST(!c.try_send(99));  // full
  c.close();
  BOOST_CHECK_THROW(c.send(1), goro::channel_closed);
  BOOST_CHECK_THROW(c.try_send(1), goro::channel_closed);
  BOOST_CHECK_THROW(c.close(), goro::channel_closed);
  for (int i = 0; i < 5; ++i) BOOST_TEST(*c.recv() == i);
  for (int i = 0; i < 3; ++i) BOOST_TEST(!c.recv().has_value());
}

BOOST_AUTO_TEST_CASE(move_only_and_no_default_ctor) {
  struct no_default {
    explicit no_default(int v) : v(v) {}
    int v;
  };
  auto c = goro::make_chan<std::unique_ptr<int>>(1);
  c.send(std::make_unique<int>(7));
  BOOST_TEST(**c.recv() == 7);
  auto d = goro::make_chan<no_default>(2);
  d.send(no_default(3));
  BOOST_TEST(d.recv()->v == 3);
  // Buffered elements are destroyed with the channel.
  auto token = std::make_shared<int>(1);
  {
    auto e = goro::make_chan<std::shared_ptr<int>>(4);
    e.send(token);
    e.send(token);
    BOOST_TEST(token.use_count() == 3);
  }
  BOOST_TEST(token.use_count() == 1);
}

BOOST_DATA_TEST_CASE(unbuffered_ping_pong, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto ping = goro::make_chan<int>(), pong = goro::make_chan<int>();
    goro::go([=] {
      for (auto& v : ping) pong.send(v + 1);
      pong.close();
    });
    long sum = 0;
    for (int i = 0; i < 10000; ++i) {
      ping.send(i);
      sum += *pong.recv();
    }
    ping.close();
    BOOST_TEST(!pong.recv().has_value());
    BOOST_TEST(sum == 10000L * 9999 / 2 + 10000);
  });
}

BOOST_DATA_TEST_CASE(close_wakes_receivers_and_senders, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto c = goro::make_chan<int>();
    std::atomic<int> got_closed{0}, threw{0};
    goro::wait_group wg;
    for (int i = 0; i < 10; ++i) {
      wg.add(2);
      goro::go([&, c] {
        if (!c.recv()) got_closed.fetch_add(1);
        wg.done();
      });
      goro::go([&, c] {
        try {
          c.send(1);  // may pair with a receiver before close
        } catch (const goro::channel_closed&) {
          threw.fetch_add(1);
        }
        wg.done();
      });
    }
    for (int i = 0; i < 100; ++i) goro::yield();
    c.close();
    wg.wait();
    // Every sender either paired with a receiver or threw; every receiver
    // either got a value or saw the close.
    BOOST_TEST(got_closed.load() == threw.load());
  });
}

BOOST_DATA_TEST_CASE(blocked_receivers_served_fifo, bdata::make(std::vector<int>{1}), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto c = goro::make_chan<int>();
    auto order = goro::make_chan<int>(10);
    for (int i = 0; i < 10; ++i) {
      goro::go([=] { order.send(i * 100 + *c.recv()); });
      goro::yield();  // with one processor: receiver i parks before i+1 starts
    }
    for (int i = 0; i < 10; ++i) c.send(i);
    // Receiver i (the i-th to block) must have got value i, whatever order
    // the receivers then run in.
    std::vector<int> got;
    for (int i = 0; i < 10; ++i) got.push_back(*order.recv());
    std::sort(got.begin(), got.end());
    for (int i = 0; i < 10; ++i) BOOST_TEST(got[static_cast<std::size_t>(i)] == i * 101);
  });
}

namespace chan_test {
// 4 senders x 4 receivers on a channel of `cap` elements of T (made from an
// int by `make`, read back by `value`); every value is seen exactly once.
template <class T, class Make, class Value>
void check_exact_multiset(std::size_t cap, Make make, Value value) {
  auto c = goro::make_chan<T>(cap);
  BOOST_TEST(c.capacity() == cap);
  constexpr int kPer = 2000;
  std::vector<std::atomic<int>> seen(4 * kPer);
  goro::wait_group senders, receivers;
  senders.add(4);
  receivers.add(4);
  for (int s = 0; s < 4; ++s) {
    goro::go([&, s] {
      for (int i = 0; i < kPer; ++i) c.send(make(s * kPer + i));
      senders.done();
    });
  }
  for (int r = 0; r < 4; ++r) {
    goro::go([&] {
      for (auto& v : c) seen[static_cast<std::size_t>(value(v))].fetch_add(1);
      receivers.done();
    });
  }
  senders.wait();
  BOOST_TEST(c.size() <= cap);
  c.close();
  receivers.wait();
  int bad = 0;
  for (auto& n : seen) bad += n.load() != 1;
  BOOST_TEST(bad == 0, "cap " << cap);
}
}  // namespace chan_test

BOOST_DATA_TEST_CASE(capacities_exact_multiset, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    for (std::size_t cap : {0, 1, 2, 5, 10, 50}) {
      chan_test::check_exact_multiset<int>(
          cap, [](int v) { return v; }, [](int v) { return v; });
    }
  });
}

BOOST_DATA_TEST_CASE(multi_consumer_23_workers, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    constexpr int kWorkers = 23, kItems = 10000;
    auto q = goro::make_chan<int>();
    auto results = goro::make_chan<long>(kWorkers);
    std::atomic<int> count{0};
    for (int w = 0; w < kWorkers; ++w) {
      goro::go([&, q, results] {
        long sum = 0;
        for (auto& v : q) {
          sum += v;
          count.fetch_add(1);
        }
        results.send(sum);
      });
    }
    for (int i = 0; i < kItems; ++i) q.send(i);
    q.close();
    long total = 0;
    for (int w = 0; w < kWorkers; ++w) total += *results.recv();
    BOOST_TEST(count.load() == kItems);
    BOOST_TEST(total == static_cast<long>(kItems) * (kItems - 1) / 2);
  });
}

BOOST_DATA_TEST_CASE(prime_sieve, bdata::make(kProcs), procs) {
  // Go's classic concurrent prime sieve: a chain of filter fibers.
  std::vector<int> primes;
  goro::run({.maxprocs = procs}, [&] {
    auto ch = goro::make_chan<int>();
    goro::go([ch] {
      for (int i = 2;; ++i) ch.send(i);
    });
    for (int i = 0; i < 100; ++i) {
      int prime = *ch.recv();
      primes.push_back(prime);
      auto next = goro::make_chan<int>();
      goro::go([in = ch, out = next, prime] {
        for (;;) {
          int v = *in.recv();
          if (v % prime != 0) out.send(v);
        }
      });
      ch = next;
    }
  });  // the filters are still blocked: unwound at exit
  BOOST_TEST(primes.size() == 100u);
  BOOST_TEST(primes.front() == 2);
  BOOST_TEST(primes.back() == 541);
}

BOOST_DATA_TEST_CASE(os_threads_on_either_side, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto to_thread = goro::make_chan<int>(), from_thread = goro::make_chan<int>(3);
    std::thread t([=] {
      for (auto& v : to_thread) from_thread.send(v * 2);
      from_thread.close();
    });
    long sum = 0;
    goro::go([=] {
      for (int i = 0; i < 1000; ++i) to_thread.send(i);
      to_thread.close();
    });
    for (auto& v : from_thread) sum += v;
    t.join();
    BOOST_TEST(sum == 999L * 1000);
  });
}

BOOST_DATA_TEST_CASE(void_channel, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    auto done = goro::make_chan<void>();
    goro::go([=] { done.send(); });
    BOOST_TEST(done.recv());
    done.close();
    BOOST_TEST(!done.recv());
    auto sem = goro::make_chan<void>(2);
    BOOST_TEST(sem.try_send());
    BOOST_TEST(sem.try_send());
    BOOST_TEST(!sem.try_send());
  });
}

BOOST_AUTO_TEST_CASE(nil_channel_blocks_until_unwound) {
  std::atomic<int> destroyed{0};
  struct guard {
    std::atomic<int>* n;
    ~guard() { n->fetch_add(1); }
  };
  goro::run({.maxprocs = 2}, [&] {
    goro::chan<int> nil;
    goro::wait_group started;
    started.add(2);
    goro::go([&, nil] {
      guard g{&destroyed};
      started.done();
      nil.send(1);
    });
    goro::go([&, nil] {
      guard g{&destroyed};
      started.done();
      (void)nil.recv();
    });
    started.wait();
  });
  BOOST_TEST(destroyed.load() == 2);
}

// Buffered channels of nothrow-movable types use a lock-free ring; check its
// edge: capacity 1, where "slot filled" and "slot free for the next lap" must
// not be confused.
BOOST_AUTO_TEST_CASE(capacity_one_ring) {
  auto c = goro::make_chan<int>(1);
  for (int lap = 0; lap < 5; ++lap) {
    BOOST_TEST(c.size() == 0u);
    BOOST_TEST(c.try_send(lap));
    BOOST_TEST(!c.try_send(99));  // full
    BOOST_TEST(c.size() == 1u);
    BOOST_TEST(*c.recv() == lap);
  }
  BOOST_TEST(goro::select(goro::on_recv(c), goro::on_default()) == 1u);
}

namespace chan_test {
// A move that may throw (it never does here): such channels keep the locked
// ring, so the same exact-multiset check runs on that path too.
struct throwing_move {
  int v = 0;
  explicit throwing_move(int x) : v(x) {}
  throwing_move(throwing_move&& o) noexcept(false) : v(o.v) {}
  throwing_move& operator=(throwing_move&& o) noexcept(false) {
    v = o.v;
    return *this;
  }
};
static_assert(!std::is_nothrow_move_constructible_v<throwing_move>);
}  // namespace chan_test
using chan_test::throwing_move;

BOOST_DATA_TEST_CASE(locked_ring_exact_multiset, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    for (std::size_t cap : {1, 3, 16}) {
      chan_test::check_exact_multiset<throwing_move>(
          cap, [](int v) { return throwing_move(v); }, [](const throwing_move& v) { return v.v; });
    }
  });
}

// A close racing with senders: every send either completes (and its value is
// received exactly once) or throws channel_closed; nothing is lost or
// received after the close has been observed by a drained receiver.
BOOST_DATA_TEST_CASE(close_racing_senders, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    for (int round = 0; round < 200; ++round) {
      for (std::size_t cap : {1, 4, 64}) {
        auto c = goro::make_chan<int>(cap);
        constexpr int kSenders = 4, kPer = 50;
        std::vector<std::atomic<int>> sent(kSenders * kPer), got(kSenders * kPer);
        goro::wait_group wg;
        wg.add(kSenders + 2);
        for (int s = 0; s < kSenders; ++s) {
          goro::go([&, s] {
            try {
              for (int i = 0; i < kPer; ++i) {
                c.send(s * kPer + i);
                sent[static_cast<std::size_t>(s * kPer + i)] = 1;
              }
            } catch (const goro::channel_closed&) {
            }
            wg.done();
          });
        }
        goro::go([&] {
          for (auto& v : c) got[static_cast<std::size_t>(v)].fetch_add(1);
          // Closed and drained: stays so.
          if (c.recv().has_value()) got[0].fetch_add(100);
          wg.done();
        });
        goro::go([&] {
          for (int i = 0; i < round % 7; ++i) goro::yield();
          c.close();
          wg.done();
        });
        wg.wait();
        int bad = 0;
        for (std::size_t i = 0; i < sent.size(); ++i) bad += sent[i].load() != got[i].load();
        BOOST_REQUIRE_MESSAGE(bad == 0, "round " << round << " cap " << cap);
      }
    }
  });
}

// The ring keeps each value next to its sequence number, in cells padded to
// the element's alignment: elements of odd sizes and of alignments up to a
// cache line must each get an aligned slot of their own. Every byte of a
// payload is checked on arrival (a neighbour's write would show), and the
// move constructor counts the elements it built at misaligned addresses.
namespace chan_test {
std::atomic<int> misaligned{0};
template <std::size_t Size, std::size_t Align>
struct alignas(Align) payload {
  int v = 0;
  unsigned char fill[Size];
  explicit payload(int x) : v(x) {
    for (std::size_t i = 0; i < Size; ++i) fill[i] = static_cast<unsigned char>(x * 31 + i);
  }
  payload(payload&& o) noexcept : v(o.v) {
    std::copy(std::begin(o.fill), std::end(o.fill), fill);
    if (reinterpret_cast<std::uintptr_t>(this) % Align != 0) misaligned.fetch_add(1);
  }
  int checked() const {
    for (std::size_t i = 0; i < Size; ++i) {
      if (fill[i] != static_cast<unsigned char>(v * 31 + i)) return -1;
    }
    return v;
  }
};

template <std::size_t Size, std::size_t Align>
void check_payload_ring() {
  using T = payload<Size, Align>;
  static_assert(std::is_nothrow_move_constructible_v<T>);  // so it takes the ring
  for (std::size_t cap : {1, 3, 7, 64}) {
    check_exact_multiset<T>(
        cap, [](int v) { return T(v); }, [](const T& t) { return t.checked(); });
  }
}
}  // namespace chan_test

BOOST_DATA_TEST_CASE(ring_cells_of_any_size_and_alignment, bdata::make(kProcs), procs) {
  chan_test::misaligned = 0;
  goro::run({.maxprocs = procs}, [] {
    chan_test::check_payload_ring<1, 1>();
    chan_test::check_payload_ring<3, 4>();
    chan_test::check_payload_ring<13, 16>();
    chan_test::check_payload_ring<60, 32>();
    chan_test::check_payload_ring<100, 64>();
    chan_test::check_exact_multiset<std::string>(
        5, [](int v) { return std::string(40, 'x') + std::to_string(v); },
        [](const std::string& s) { return std::stoi(s.substr(40)); });
  });
  BOOST_TEST(chan_test::misaligned.load() == 0);
}

// The ring maps positions to slots with a multiply instead of a division:
// checked against `%` for divisors that are and are not powers of two, at
// small positions, around every power of two, and at random 64-bit ones.
BOOST_AUTO_TEST_CASE(ring_slot_mapping_matches_division) {
  std::uint64_t rng = 0x9e3779b97f4a7c15u;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  std::vector<std::uint64_t> divisors;
  for (std::uint64_t d = 1; d <= 1100; ++d) divisors.push_back(d);
  for (int b = 11; b < 64; ++b) {
    const std::uint64_t p = std::uint64_t{1} << b;
    divisors.insert(divisors.end(), {p - 1, p, p + 1});
  }
  for (int i = 0; i < 200; ++i) divisors.push_back(next() | 1);
  divisors.push_back(~std::uint64_t{0});
  long mismatches = 0;
  for (const std::uint64_t d : divisors) {
    const goro::detail::fast_mod m(d);
    auto check = [&](std::uint64_t n) {
      if (m.mod(n) != n % d || m.div(n) != n / d) ++mismatches;
    };
    for (std::uint64_t n = 0; n < 3000; ++n) check(n);
    for (int b = 1; b < 64; ++b) {
      const std::uint64_t p = std::uint64_t{1} << b;
      for (std::uint64_t k = 0; k < 3; ++k) {
        check(p - 1 - k);
        check(p + k);
      }
    }
    for (int i = 0; i < 2000; ++i) check(next());
    check(~std::uint64_t{0});
  }
  BOOST_TEST(mismatches == 0);
}

// close() wakes waiters in batches (the lock is dropped between them): with
// thousands parked, every receiver still sees the close exactly once, every
// parked sender throws, and none succeeds after the close began, on the
// lock-free ring, the locked buffer and an unbuffered channel alike.
namespace {
struct move_may_throw {
  int v = 0;
  explicit move_may_throw(int x) : v(x) {}
  move_may_throw(const move_may_throw&) = default;
  move_may_throw(move_may_throw&& o) noexcept(false) : v(o.v) {}
};

template <class T>
void close_many(int procs, std::size_t cap) {
  goro::run({.maxprocs = procs}, [cap] {
    constexpr int kWaiters = 1000;
    auto empty = goro::make_chan<T>(cap);
    auto full = goro::make_chan<T>(cap);
    for (std::size_t i = 0; i < cap; ++i) BOOST_TEST_REQUIRE(full.try_send(T(-1)));
    std::atomic<int> closed_seen{0}, values{0}, threw{0}, sent{0}, parked{0};
    goro::wait_group wg;
    wg.add(2 * kWaiters);
    for (int i = 0; i < kWaiters; ++i) {
      goro::go([&, empty] {
        parked.fetch_add(1);
        if (empty.recv().has_value()) {
          values.fetch_add(1);
        } else {
          closed_seen.fetch_add(1);
        }
        wg.done();
      });
      goro::go([&, full, i] {
        parked.fetch_add(1);
        try {
          full.send(T(i));
          sent.fetch_add(1);
        } catch (const goro::channel_closed&) {
          threw.fetch_add(1);
        }
        wg.done();
      });
    }
    while (parked.load() < 2 * kWaiters) goro::sleep_for(std::chrono::milliseconds(1));
    goro::sleep_for(std::chrono::milliseconds(20));  // let the last ones park
    empty.close();
    full.close();
    wg.wait();
    BOOST_TEST(closed_seen.load() == kWaiters);
    BOOST_TEST(values.load() == 0);
    BOOST_TEST(threw.load() == kWaiters);
    BOOST_TEST(sent.load() == 0);
    // What was buffered before the close drains, then the close shows.
    std::size_t drained = 0;
    while (auto v = full.recv()) {
      if constexpr (std::is_same_v<T, int>) {
        BOOST_TEST(*v == -1);
      } else {
        BOOST_TEST(v->v == -1);
      }
      ++drained;
    }
    BOOST_TEST(drained == cap);
  });
}
}  // namespace

BOOST_DATA_TEST_CASE(close_wakes_thousands_in_batches, bdata::make(kProcs), procs) {
  close_many<int>(procs, 0);
  close_many<int>(procs, 4);             // lock-free ring
  close_many<move_may_throw>(procs, 4);  // locked buffer
}

// Power series over request/reply channels (the idea of Go's
// test/chan/powser1.go, written anew): every series is a fiber that computes
// its next coefficient only when asked (a request on `req`, the answer on
// `dat`), so series can be defined in terms of themselves. Checked: ones,
// sums, products, the integral, exp(x) as the fixed point E = 1 + ∫E (a
// feedback loop through a splitter that serves two consumers with a select),
// and E·E = exp(2x), with exact rational coefficients.
namespace powser {

struct rat {
  long long n = 0, d = 1;
};
rat make(long long n, long long d) {
  if (d < 0) n = -n, d = -d;
  const long long g = std::gcd(n < 0 ? -n : n, d);
  return g == 0 ? rat{0, 1} : rat{n / g, d / g};
}
rat operator+(rat a, rat b) {
  const long long l = std::lcm(a.d, b.d);  // keeps 1/k! sums within 64 bits
  return make(a.n * (l / a.d) + b.n * (l / b.d), l);
}
rat operator*(rat a, rat b) { return make(a.n * b.n, a.d * b.d); }
bool operator==(rat a, rat b) { return a.n == b.n && a.d == b.d; }
std::ostream& operator<<(std::ostream& os, rat r) { return os << r.n << '/' << r.d; }

struct series {
  goro::chan<void> req = goro::make_chan<void>();
  goro::chan<rat> dat = goro::make_chan<rat>();
  rat next() const {
    req.send();
    return *dat.recv();
  }
};

// Runs `step(k)` for the k-th coefficient each time one is asked for.
template <class F>
series produce(F step) {
  series s;
  goro::go([s, step]() mutable {
    for (long long k = 0;; ++k) {
      if (!s.req.recv()) return;
      s.dat.send(step(k));
    }
  });
  return s;
}

series ones() {
  return produce([](long long) { return rat{1, 1}; });
}
series add(series f, series g) {
  return produce([f, g](long long) { return f.next() + g.next(); });
}
series mul(series f, series g) {
  auto fs = std::make_shared<std::vector<rat>>(), gs = std::make_shared<std::vector<rat>>();
  return produce([f, g, fs, gs](long long k) {
    fs->push_back(f.next());
    gs->push_back(g.next());
    rat sum;
    for (long long i = 0; i <= k; ++i) sum = sum + (*fs)[i] * (*gs)[k - i];
    return sum;
  });
}
// c + ∫f: coefficient 0 is c (asked before f is), then f[k-1]/k.
series integ(rat c, series f) {
  return produce([c, f](long long k) { return k == 0 ? c : f.next() * make(1, k); });
}
// Copies `in` to two consumers that ask independently: whatever one has
// taken and the other not yet is kept for the other. It must keep serving
// both while it waits for `in` (in a feedback loop, `in` itself asks one of
// them), so it is one select over whatever it may do next, with nil
// channels for the cases that do not apply (Go's idiom).
void split(series in, series a, series b) {
  goro::go([in, a, b] {
    std::deque<rat> for_a, for_b;
    bool pend_a = false, pend_b = false, waiting = false;
    for (;;) {
      if (pend_a && !for_a.empty()) {
        a.dat.send(for_a.front());
        for_a.pop_front();
        pend_a = false;
        continue;
      }
      if (pend_b && !for_b.empty()) {
        b.dat.send(for_b.front());
        for_b.pop_front();
        pend_b = false;
        continue;
      }
      const bool need = (pend_a && for_a.empty()) || (pend_b && for_b.empty());
      const goro::chan<void> areq = pend_a ? goro::chan<void>() : a.req;
      const goro::chan<void> breq = pend_b ? goro::chan<void>() : b.req;
      const goro::chan<void> ask = need && !waiting ? in.req : goro::chan<void>();
      const goro::chan<rat> answer = waiting ? in.dat : goro::chan<rat>();
      goro::select(goro::on_recv(areq, [&](bool) { pend_a = true; }),
                   goro::on_recv(breq, [&](bool) { pend_b = true; }),
                   goro::on_send(ask, [&] { waiting = true; }),
                   goro::on_recv(answer, [&](std::optional<rat> v) {
                     waiting = false;
                     for_a.push_back(*v);
                     for_b.push_back(*v);
                   }));
    }
  });
}

std::vector<rat> take(const series& s, int n) {
  std::vector<rat> out;
  for (int i = 0; i < n; ++i) out.push_back(s.next());
  return out;
}

}  // namespace powser

BOOST_DATA_TEST_CASE(power_series, bdata::make(kProcs), procs) {
  using namespace powser;
  goro::run({.maxprocs = procs}, [] {
    constexpr int kTerms = 14;
    for (rat r : take(ones(), 5)) BOOST_TEST((r == rat{1, 1}));
    for (rat r : take(add(ones(), ones()), 5)) BOOST_TEST((r == rat{2, 1}));
    // 1/(1-x)^2 = sum (k+1) x^k.
    auto sq = take(mul(ones(), ones()), kTerms);
    for (int k = 0; k < kTerms; ++k) BOOST_TEST((sq[k] == rat{k + 1, 1}));
    // ∫ 1/(1-x) = -log(1-x) = sum x^k / k.
    auto lg = take(integ(rat{0, 1}, ones()), kTerms);
    for (int k = 1; k < kTerms; ++k) BOOST_TEST((lg[k] == make(1, k)));
    // E = 1 + ∫E, through a splitter feeding E back into its own integral.
    series e_out, e_back;
    series e = integ(rat{1, 1}, e_back);
    split(e, e_out, e_back);
    auto ex = take(e_out, kTerms);
    long long fact = 1;
    for (int k = 0; k < kTerms; ++k) {
      if (k > 0) fact *= k;
      BOOST_TEST((ex[k] == make(1, fact)));
    }
    // exp(x)·exp(x) = exp(2x) = sum 2^k/k!, from two more fixed points.
    series a_out, a_back, b_out, b_back;
    split(integ(rat{1, 1}, a_back), a_out, a_back);
    split(integ(rat{1, 1}, b_back), b_out, b_back);
    auto e2 = take(mul(a_out, b_out), kTerms);
    fact = 1;
    for (int k = 0; k < kTerms; ++k) {
      if (k > 0) fact *= k;
      BOOST_TEST((e2[k] == make(1LL << k, fact)));
    }
  });
}
