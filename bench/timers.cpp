// bench/timers.cpp — timers and cancellation at scale. Twin: bench/go/timers.
//
//   sleepers_100k      100,000 fibers each sleep 50 ms; wall time until all
//                      have woken (ideal: 50 ms).
//   cancel_broadcast   100,000 fibers blocked in a two-case select on one
//                      context's done(); time from cancel() until all saw it.
//   timer_churn        create a 1 h timer and stop it, 1M times (ns/op).
#include <goro/goro.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "bench_util.hpp"

using namespace std::chrono_literals;

namespace {

double sleepers(long n) {
  goro::wait_group wg;
  wg.add(n);
  auto t0 = bench::clock::now();
  for (long i = 0; i < n; ++i) {
    goro::go([&wg] {
      goro::sleep_for(50ms);
      wg.done();
    });
  }
  wg.wait();
  return bench::seconds_since(t0);
}

double cancel_broadcast(long n) {
  auto [ctx, cancel] = goro::with_cancel(goro::context::background());
  auto never = goro::make_chan<int>();
  goro::wait_group wg;
  std::atomic<long> started{0};
  wg.add(n);
  for (long i = 0; i < n; ++i) {
    goro::go([&, done = ctx.done()] {
      started.fetch_add(1, std::memory_order_relaxed);
      goro::select(goro::on_recv(done), goro::on_recv(never));
      wg.done();
    });
  }
  while (started.load() < n) goro::sleep_for(1ms);
  goro::sleep_for(20ms);  // let the last ones park
  auto t0 = bench::clock::now();
  cancel();
  const double in_cancel = bench::seconds_since(t0);
  wg.wait();
  std::printf("# cancel() itself took %.3f ms\n", in_cancel * 1e3);
  return bench::seconds_since(t0);
}

double churn(long n) {
  auto t0 = bench::clock::now();
  long prevented = 0;
  for (long i = 0; i < n; ++i) {
    goro::timer t(1h);
    prevented += t.stop() ? 1 : 0;
  }
  if (prevented != n) {
    std::fprintf(stderr, "timers: stop() failed to prevent a fire\n");
    std::exit(1);
  }
  return bench::seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 100'000);
  const long churn_n = bench::flag(argc, argv, "-churn", 1'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  const long only = bench::flag(argc, argv, "-only", 0);  // 1, 2, 3: just that one
  double a = 0, b = 0, c = 0;
  goro::run([&] {
    if (only == 0 || only == 1) {
      a = bench::median_seconds("sleepers_100k", reps, [&] { return sleepers(n); });
    }
    if (only == 0 || only == 2) {
      b = bench::median_seconds("cancel_broadcast", reps, [&] { return cancel_broadcast(n); });
    }
    if (only == 0 || only == 3) {
      c = bench::median_seconds("timer_churn", reps, [&] { return churn(churn_n); });
    }
  });
  if (a > 0) bench::report("sleepers_100k", a * 1e3, "ms");
  if (b > 0) bench::report("cancel_broadcast", b * 1e3, "ms");
  if (c > 0) bench::report("timer_churn", c * 1e9 / static_cast<double>(churn_n), "ns/op");
}
