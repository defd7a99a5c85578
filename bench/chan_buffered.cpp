// bench/chan_buffered.cpp — throughput of buffered (cap 128) channels with 1
// producer/1 consumer and 4/4, and of an unbuffered channel with 4/4.
// Twin: bench/go/chan_buffered.
#include <goro/goro.hpp>

#include <cstdio>
#include <cstdlib>

#include "bench_util.hpp"

namespace {

constexpr std::size_t kCap = 128;

// `p` producers each send `per` values into a channel of capacity `cap`; `c`
// consumers range over it. Returns seconds; checks the count.
double run_once(int p, int c, long per, std::size_t cap) {
  auto t0 = bench::clock::now();
  auto ch = goro::make_chan<long>(cap);
  goro::wait_group producers, consumers;
  std::atomic<long> got{0};
  producers.add(p);
  consumers.add(c);
  for (int i = 0; i < p; ++i) {
    goro::go([&] {
      for (long k = 0; k < per; ++k) ch.send(k);
      producers.done();
    });
  }
  for (int i = 0; i < c; ++i) {
    goro::go([&] {
      long n = 0;
      for (auto& v : ch) {
        (void)v;
        ++n;
      }
      got.fetch_add(n);
      consumers.done();
    });
  }
  producers.wait();
  ch.close();
  consumers.wait();
  if (got.load() != p * per) {
    std::fprintf(stderr, "chan_buffered: lost messages\n");
    std::exit(1);
  }
  return bench::seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 10'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  const long only = bench::flag(argc, argv, "-only", 0);  // 1, 2, 3: just that one
  double a = 0, b = 0, c = 0;
  goro::run([&] {
    if (only == 0 || only == 1) {
      a = bench::median_seconds("chan_buffered_1p1c", reps,
                                [&] { return run_once(1, 1, n, kCap); });
    }
    if (only == 0 || only == 2) {
      b = bench::median_seconds("chan_buffered_4p4c", reps,
                                [&] { return run_once(4, 4, n / 4, kCap); });
    }
    if (only == 0 || only == 3) {
      c = bench::median_seconds("chan_unbuffered_4p4c", reps,
                                [&] { return run_once(4, 4, n / 10 / 4, 0); });
    }
  });
  if (a > 0) bench::report("chan_buffered_1p1c", a * 1e9 / static_cast<double>(n), "ns/op");
  if (b > 0)
    bench::report("chan_buffered_4p4c", b * 1e9 / static_cast<double>(4 * (n / 4)), "ns/op");
  if (c > 0)
    bench::report("chan_unbuffered_4p4c", c * 1e9 / static_cast<double>(4 * (n / 10 / 4)), "ns/op");
}
