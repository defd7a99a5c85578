// worker_pool — a fixed pool of worker fibers draining a jobs channel and
// reporting on a results channel (Go by Example: "Worker Pools").
#include <goro/goro.hpp>

#include <cstdio>

int main() {
  constexpr int kWorkers = 8, kJobs = 1000;
  long sum = 0;
  goro::run([&sum] {
    auto jobs = goro::make_chan<int>(100);
    auto results = goro::make_chan<long>(100);
    for (int w = 0; w < kWorkers; ++w) {
      goro::go([=] {
        for (auto& j : jobs) results.send(static_cast<long>(j) * 2);
      });
    }
    goro::go([=] {
      for (int j = 1; j <= kJobs; ++j) jobs.send(j);
      jobs.close();
    });
    for (int i = 0; i < kJobs; ++i) sum += *results.recv();
    std::printf("worker_pool: %d jobs on %d workers, sum of results = %ld (expected %ld)\n", kJobs,
                kWorkers, sum, static_cast<long>(kJobs) * (kJobs + 1));
  });
  return sum == static_cast<long>(kJobs) * (kJobs + 1) ? 0 : 1;
}
