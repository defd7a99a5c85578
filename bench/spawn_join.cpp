// bench/spawn_join.cpp — spawn N fibers that each call wg.done(), then wait.
// Twin: bench/go/spawn_join (go func(){ wg.Done() }() N times, wg.Wait()).
#include <goro/goro.hpp>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 1'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double med = 0;
  goro::run([&] {
    med = bench::median_seconds("spawn_join", reps, [&] {
      auto t0 = bench::clock::now();
      goro::wait_group wg;
      for (long i = 0; i < n; ++i) {
        wg.add(1);
        goro::go([&wg] { wg.done(); });
      }
      wg.wait();
      return bench::seconds_since(t0);
    });
  });
  bench::report("spawn_join", med, "s");
}
