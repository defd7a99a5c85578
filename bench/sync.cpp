// bench/sync.cpp — goro's sync primitives. Twin: bench/go/sync.
//
//   mutex_contended    64 fibers increment one counter under a goro::mutex,
//                      2M increments in all (ns per increment)
//   mutex_uncontended  lock/unlock of a mutex nobody else touches (ns/pair)
//   rwmutex_read       64 fibers lock_shared/unlock_shared one shared_mutex,
//                      2M pairs in all (ns per pair)
//   wg_fanout_100k     start 100,000 fibers that each call done() on one
//                      wait_group, then wait() (ms)
//   sem_pool_1m        a worker pool bounded by goro::semaphore(8): 1M tiny
//                      tasks, each acquire(ctx, 1) then a fiber that works
//                      and releases (ms)
#include <goro/goro.hpp>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "bench_util.hpp"

namespace {

double mutex_contended(int workers, long total) {
  goro::mutex mu;
  long counter = 0;
  goro::wait_group wg;
  wg.add(workers);
  const long per = total / workers;
  auto t0 = bench::clock::now();
  for (int w = 0; w < workers; ++w) {
    goro::go([&] {
      for (long i = 0; i < per; ++i) {
        std::lock_guard lk(mu);
        ++counter;
      }
      wg.done();
    });
  }
  wg.wait();
  const double s = bench::seconds_since(t0);
  if (counter != per * workers) {
    std::fprintf(stderr, "sync: lost increments\n");
    std::exit(1);
  }
  return s;
}

// Kept out of line, as the Go twin's.
[[gnu::noinline]] void lock_unlock(goro::mutex& mu, long& x) {
  mu.lock();
  ++x;
  mu.unlock();
}

double mutex_uncontended(long n) {
  goro::mutex mu;
  long x = 0;
  auto t0 = bench::clock::now();
  for (long i = 0; i < n; ++i) lock_unlock(mu, x);
  const double s = bench::seconds_since(t0);
  if (x != n) std::exit(1);
  return s;
}

double rwmutex_read(int workers, long total) {
  goro::shared_mutex mu;
  long shared = 42;
  goro::wait_group wg;
  wg.add(workers);
  const long per = total / workers;
  std::vector<long> sums(static_cast<std::size_t>(workers) * 8);
  auto t0 = bench::clock::now();
  for (int w = 0; w < workers; ++w) {
    goro::go([&, w] {
      long s = 0;
      for (long i = 0; i < per; ++i) {
        std::shared_lock lk(mu);
        s += shared;
      }
      sums[static_cast<std::size_t>(w) * 8] = s;
      wg.done();
    });
  }
  wg.wait();
  const double s = bench::seconds_since(t0);
  for (int w = 0; w < workers; ++w) {
    if (sums[static_cast<std::size_t>(w) * 8] != 42 * per) std::exit(1);
  }
  return s;
}

double wg_fanout(long n) {
  goro::wait_group wg;
  auto t0 = bench::clock::now();
  wg.add(n);
  for (long i = 0; i < n; ++i) goro::go([&wg] { wg.done(); });
  wg.wait();
  return bench::seconds_since(t0);
}

double sem_pool(long tasks, long limit) {
  const goro::context ctx = goro::context::background();
  goro::semaphore sem(limit);
  long done = 0;
  goro::mutex mu;
  auto t0 = bench::clock::now();
  for (long i = 0; i < tasks; ++i) {
    if (!sem.acquire(ctx, 1).ok()) std::exit(1);
    goro::go([&] {
      {
        std::lock_guard lk(mu);
        ++done;
      }
      sem.release(1);
    });
  }
  if (!sem.acquire(ctx, limit).ok()) std::exit(1);
  const double s = bench::seconds_since(t0);
  if (done != tasks) {
    std::fprintf(stderr, "sync: lost tasks\n");
    std::exit(1);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const long total = bench::flag(argc, argv, "-n", 2'000'000);
  const long unc = bench::flag(argc, argv, "-uncontended", 20'000'000);
  const long fan = bench::flag(argc, argv, "-fanout", 100'000);
  const long tasks = bench::flag(argc, argv, "-tasks", 1'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  const long only = bench::flag(argc, argv, "-only", 0);  // 1..5: just that one
  double r[5] = {};
  goro::run([&] {
    if (only == 0 || only == 1) {
      r[0] = bench::median_seconds("mutex_contended", reps,
                                   [&] { return mutex_contended(64, total); });
    }
    if (only == 0 || only == 2) {
      r[1] =
          bench::median_seconds("mutex_uncontended", reps, [&] { return mutex_uncontended(unc); });
    }
    if (only == 0 || only == 3) {
      r[2] = bench::median_seconds("rwmutex_read", reps, [&] { return rwmutex_read(64, total); });
    }
    if (only == 0 || only == 4) {
      r[3] = bench::median_seconds("wg_fanout_100k", reps, [&] { return wg_fanout(fan); });
    }
    if (only == 0 || only == 5) {
      r[4] = bench::median_seconds("sem_pool_1m", reps, [&] { return sem_pool(tasks, 8); });
    }
  });
  const double ops = static_cast<double>(total / 64 * 64);
  if (r[0] > 0) bench::report("mutex_contended", r[0] * 1e9 / ops, "ns/op");
  if (r[1] > 0) bench::report("mutex_uncontended", r[1] * 1e9 / static_cast<double>(unc), "ns/op");
  if (r[2] > 0) bench::report("rwmutex_read", r[2] * 1e9 / ops, "ns/op");
  if (r[3] > 0) bench::report("wg_fanout_100k", r[3] * 1e3, "ms");
  if (r[4] > 0) bench::report("sem_pool_1m", r[4] * 1e3, "ms");
}
