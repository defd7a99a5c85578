// bench/parked.cpp — memory per parked fiber: RSS growth with 100,000 fibers
// blocked at once, divided by their number.
// Twin: bench/go/parked (goroutines blocked receiving on a channel).
#include <goro/goro.hpp>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 100'000);
  double kib_per_fiber = 0;
  goro::run([&] {
    goro::wait_group started, never;
    never.add(1);
    const long before = bench::rss_kib();
    started.add(n);
    for (long i = 0; i < n; ++i) {
      goro::go([&] {
        started.done();
        never.wait();
      });
    }
    started.wait();
    const long after = bench::rss_kib();
    kib_per_fiber = static_cast<double>(after - before) / static_cast<double>(n);
    std::printf("# rss before %ld KiB, after %ld KiB, fibers %lld\n", before, after,
                static_cast<long long>(goro::num_fibers()));
    never.done();
  });
  bench::report("parked_rss", kib_per_fiber, "KiB/fiber");
}
