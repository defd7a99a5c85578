// hello — goro's flagship example: a Go program's shape in C++.
//
// Spawns 100,000 fibers that each compute a small piece of a sum, joins them
// with a wait_group, and reports what the runtime did. The same program in Go:
//
//   var wg sync.WaitGroup
//   for i := 0; i < n; i++ { wg.Add(1); go func(i int) { part[i] = f(i); wg.Done() }(i) }
//   wg.Wait()
#include <goro/goro.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  constexpr int kFibers = 100'000;
  goro::run([] {
    std::vector<std::uint64_t> part(kFibers);
    goro::wait_group wg;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kFibers; ++i) {
      wg.add(1);
      goro::go([&part, &wg, i] {
        std::uint64_t x = static_cast<std::uint64_t>(i);
        goro::yield();  // let others run: fibers interleave on maxprocs threads
        part[static_cast<std::size_t>(i)] = x * x;
        wg.done();
      });
    }
    wg.wait();
    auto took = std::chrono::steady_clock::now() - start;
    std::uint64_t sum = 0;
    for (std::uint64_t v : part) sum += v;
    std::printf(
        "hello from goro: %d fibers on %d processors computed sum of squares = %llu in %.1f ms\n",
        kFibers, goro::maxprocs(), static_cast<unsigned long long>(sum),
        std::chrono::duration<double, std::milli>(took).count());
  });
  return 0;
}
