// bench/yield.cpp — two fibers each calling goro::yield() N times.
// Twin: bench/go/yield (two goroutines calling runtime.Gosched()).
// Reports ns per yield call, with maxprocs from $GOMAXPROCS (`yield`) and
// with one processor, where every yield is a real switch between the two
// (`yield_1p`).
#include <goro/goro.hpp>

#include "bench_util.hpp"

namespace {

double run_once(long n) {
  auto t0 = bench::clock::now();
  goro::wait_group wg;
  wg.add(2);
  auto loop = [&] {
    for (long i = 0; i < n; ++i) goro::yield();
    wg.done();
  };
  goro::go(loop);
  goro::go(loop);
  wg.wait();
  return bench::seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 2'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double med = 0, med1 = 0;
  goro::run([&] { med = bench::median_seconds("yield", reps, [&] { return run_once(n); }); });
  goro::run({.maxprocs = 1},
            [&] { med1 = bench::median_seconds("yield_1p", reps, [&] { return run_once(n); }); });
  bench::report("yield", med * 1e9 / static_cast<double>(2 * n), "ns/op");
  bench::report("yield_1p", med1 * 1e9 / static_cast<double>(2 * n), "ns/op");
}
